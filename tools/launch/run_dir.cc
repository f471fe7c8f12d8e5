#include "tools/launch/run_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/fd.h"
#include "common/logging.h"
#include "common/status.h"
#include "tools/launch/output.h"

namespace tokenrail {
namespace launch {
namespace {

// Longest file name the launcher puts in the run dir ("n255.sock.lock"
// with headroom), and the kernel's unix socket path limit.
constexpr size_t kLongestName = 24;
constexpr size_t kSunPathMax = 107;

}  // namespace

absl::StatusOr<std::string> RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    const ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return StatusFromErrno(errno, "getrandom");
    got += n;
  }
  return absl::BytesToHexString(raw);
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view data, int mode) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd.valid()) return StatusFromErrno(errno, absl::StrCat("create ", tmp));
  // The umask may have narrowed the mode; set exactly what was asked.
  if (::fchmod(fd.get(), mode) != 0) return StatusFromErrno(errno, absl::StrCat("chmod ", tmp));
  if (!WriteAll(fd.get(), data)) return StatusFromErrno(errno, absl::StrCat("write ", tmp));
  if (::fsync(fd.get()) != 0) return StatusFromErrno(errno, absl::StrCat("fsync ", tmp));
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return StatusFromErrno(err, absl::StrCat("rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RunDir>> RunDir::Create(absl::string_view parent) {
  std::string base = parent.empty() ? "/tmp" : std::string(parent);
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::string templ = absl::StrCat(base, "/tokenrail-launch-XXXXXX");
  if (templ.size() + 1 + kLongestName > kSunPathMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("run directory parent '", base, "' is too long (", base.size(),
                     " bytes): unix socket paths inside it would exceed ", kSunPathMax,
                     " bytes; choose a shorter --run_dir_parent"));
  }
  if (::mkdtemp(templ.data()) == nullptr) {
    return StatusFromErrno(errno, absl::StrCat("mkdtemp ", templ));
  }
  // mkdtemp creates 0700 already; be explicit against odd umasks.
  if (::chmod(templ.c_str(), 0700) != 0) {
    const absl::Status s = StatusFromErrno(errno, absl::StrCat("chmod ", templ));
    ::rmdir(templ.c_str());
    return s;
  }
  return std::unique_ptr<RunDir>(new RunDir(std::move(templ)));
}

RunDir::~RunDir() {
  const absl::Status s = Remove();
  if (!s.ok()) TR_LOG(WARNING, "launch") << "removing run directory: " << s;
}

std::string RunDir::File(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

absl::StatusOr<std::string> RunDir::WriteToken() {
  TR_ASSIGN_OR_RETURN(std::string token, RandomHex(32));
  TR_RETURN_IF_ERROR(WriteFileAtomically(token_path(), token, 0600));
  return token;
}

absl::Status RunDir::Remove() {
  if (removed_) return absl::OkStatus();
  TR_RETURN_IF_ERROR(RemoveTree(path_));
  removed_ = true;
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return StatusFromErrno(errno, absl::StrCat("stat ", path));
  }
  if (S_ISDIR(st.st_mode)) {
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return StatusFromErrno(errno, absl::StrCat("opendir ", path));
    std::vector<std::string> entries;
    while (dirent* e = ::readdir(dir)) {
      const absl::string_view name = e->d_name;
      if (name != "." && name != "..") entries.emplace_back(name);
    }
    ::closedir(dir);
    for (const std::string& name : entries) {
      TR_RETURN_IF_ERROR(RemoveTree(absl::StrCat(path, "/", name)));
    }
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) {
      return StatusFromErrno(errno, absl::StrCat("rmdir ", path));
    }
    return absl::OkStatus();
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return StatusFromErrno(errno, absl::StrCat("unlink ", path));
  }
  return absl::OkStatus();
}

}  // namespace launch
}  // namespace tokenrail
