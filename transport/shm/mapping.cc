#include "transport/shm/mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

constexpr int kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

absl::StatusOr<Mapping> MapShared(int fd, size_t size, absl::string_view what) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    return StatusFromErrno(errno, absl::StrCat("shm: mmap of ", what, " (", size, " bytes)"));
  }
  return Mapping(p, size);
}

}  // namespace

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    Reset();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void Mapping::Reset() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

absl::StatusOr<SharedFile> CreateSharedFile(const char* name, size_t size) {
  if (size == 0) return absl::InvalidArgumentError("shm: cannot create an empty shared file");
  SharedFile file;
  file.fd.Reset(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!file.fd.valid()) return StatusFromErrno(errno, absl::StrCat("shm: memfd_create ", name));
  if (::ftruncate(file.fd.get(), static_cast<off_t>(size)) != 0) {
    return StatusFromErrno(errno, absl::StrCat("shm: ftruncate ", name, " to ", size, " bytes"));
  }
  if (::fcntl(file.fd.get(), F_ADD_SEALS, kRequiredSeals) != 0) {
    return StatusFromErrno(errno, absl::StrCat("shm: sealing ", name));
  }
  auto map = MapShared(file.fd.get(), size, name);
  if (!map.ok()) return map.status();
  file.map = *std::move(map);
  return file;
}

absl::StatusOr<Mapping> MapPeerFile(int fd, std::optional<size_t> expected_size,
                                    absl::string_view what) {
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) return StatusFromErrno(errno, absl::StrCat("shm: seals of ", what));
  if ((seals & F_SEAL_SHRINK) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("shm: ", what,
                                                   " is not sealed against shrinking (seals 0x",
                                                   absl::Hex(seals), "); refusing to map it"));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) return StatusFromErrno(errno, absl::StrCat("shm: fstat ", what));
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0 || (expected_size.has_value() && size != *expected_size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shm: ", what, " has ", size, " bytes, expected ",
        expected_size.has_value() ? absl::StrCat(*expected_size) : std::string("more than 0")));
  }
  return MapShared(fd, size, what);
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
