// RAII owners for the shared memory of the shm backend: mmap'd ranges and
// sealed memfd files.
//
// Every memfd this backend creates is sealed against shrinking and growing
// before its fd leaves the process, and every fd received from a peer is
// checked for that seal before it is mapped: a peer can then never truncate a
// file under our mapping, which would turn our next access into SIGBUS.
#ifndef TOKENRAIL_TRANSPORT_SHM_MAPPING_H_
#define TOKENRAIL_TRANSPORT_SHM_MAPPING_H_

#include <cstddef>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fd.h"

namespace tokenrail {
namespace transport {
namespace shm {

// Owns [data, data + size) from mmap; unmaps on destruction. Move-only.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* data, size_t size) : data_(data), size_(size) {}
  Mapping(Mapping&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { Reset(); }

  char* data() const { return static_cast<char*>(data_); }
  size_t size() const { return size_; }
  bool valid() const { return data_ != nullptr; }
  void Reset();

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// A memfd and its shared read-write mapping. The mapping is declared last so
// it is unmapped before the fd closes (reverse order of creation).
struct SharedFile {
  UniqueFd fd;
  Mapping map;
};

// Creates a memfd of exactly `size` (> 0) bytes named `name` (shown in
// /proc/<pid>/maps), seals its size and maps it MAP_SHARED read-write.
absl::StatusOr<SharedFile> CreateSharedFile(const char* name, size_t size);

// Maps a memfd received from a peer, MAP_SHARED read-write. Checks that it is
// sealed against shrinking and, when `expected_size` is given, that its size
// matches it exactly. `what` names the file in errors ("peer region 7").
// The mapping stays valid after `fd` is closed.
absl::StatusOr<Mapping> MapPeerFile(int fd, std::optional<size_t> expected_size,
                                    absl::string_view what);

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_SHM_MAPPING_H_
