// The launcher's private working directory: created 0700 under a temp root,
// holding the run's bearer token (0600), the daemons' ready files and their
// unix sockets. Removed recursively on destruction (and by the janitor if the
// launcher dies).
//
// Thread safety: not thread-safe; one owner.
#ifndef TOKENRAIL_TOOLS_LAUNCH_RUN_DIR_H_
#define TOKENRAIL_TOOLS_LAUNCH_RUN_DIR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace launch {

class RunDir {
 public:
  // Creates "<parent>/tokenrail-launch-XXXXXX" with mode 0700. `parent`
  // empty means /tmp. InvalidArgument when the path leaves no room for the
  // unix socket names inside it (sun_path is 108 bytes).
  static absl::StatusOr<std::unique_ptr<RunDir>> Create(absl::string_view parent);
  ~RunDir();  // Remove(); errors are logged
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(absl::string_view name) const;

  // Writes a fresh random token (64 hex characters) to "token", mode 0600,
  // and returns it.
  absl::StatusOr<std::string> WriteToken();
  std::string token_path() const { return File("token"); }

  // Removes the directory tree; idempotent.
  absl::Status Remove();

 private:
  explicit RunDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
  bool removed_ = false;
};

// Removes `path` and everything below it (not following symlinks). NotFound
// is not an error.
absl::Status RemoveTree(const std::string& path);

// `bytes` cryptographically random bytes (getrandom), as lowercase hex.
absl::StatusOr<std::string> RandomHex(size_t bytes);

// Writes `data` to `path` atomically (temp file + rename) with `mode`.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view data, int mode);

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_RUN_DIR_H_
