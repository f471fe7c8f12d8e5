// The launcher's guardian: a small process forked at start-up that outlives
// the launcher only to clean up after it. The launcher tells it, over a pipe,
// each process group, directory and network namespace it creates. When the
// launcher exits normally it dismisses the janitor after its own cleanup; if
// the launcher dies (even by SIGKILL) the pipe closes without a dismissal and
// the janitor kills the registered process groups (reaching grandchildren
// that PR_SET_PDEATHSIG does not), waits briefly for them to go, deletes the
// namespaces and removes the directories, then exits.
//
// The janitor runs in its own session (terminal signals do not reach it) and
// ignores SIGINT/SIGTERM/SIGHUP, so only the pipe decides when it acts.
//
// Thread safety: one thread. Start() must run before the process creates any
// thread (the janitor is a fork without exec).
#ifndef TOKENRAIL_TOOLS_LAUNCH_JANITOR_H_
#define TOKENRAIL_TOOLS_LAUNCH_JANITOR_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fd.h"

namespace tokenrail {
namespace launch {

class Janitor {
 public:
  static absl::StatusOr<std::unique_ptr<Janitor>> Start();
  // Without Dismiss(): the janitor cleans up what was registered; this waits
  // for it, so the cleanup is done when the destructor returns.
  ~Janitor();
  Janitor(const Janitor&) = delete;
  Janitor& operator=(const Janitor&) = delete;

  // Register before creating (a namespace or directory that does not exist at
  // cleanup time is skipped). Failures to reach the janitor are logged once:
  // the run goes on, only crash cleanup is weakened.
  void WatchProcessGroup(pid_t pgid);
  void WatchDirectory(const std::string& path);
  void WatchNamespace(const std::string& name);

  // The launcher cleaned up itself: the janitor exits doing nothing.
  void Dismiss();

  pid_t pid() const { return pid_; }

 private:
  Janitor(pid_t pid, UniqueFd pipe) : pid_(pid), pipe_(std::move(pipe)) {}
  void Send(absl::string_view line);
  void Reap();
  pid_t pid_;
  UniqueFd pipe_;
  bool warned_ = false;
};

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_JANITOR_H_
