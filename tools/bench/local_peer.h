// A benchmark peer process on this host: the CLI re-executes itself
// (/proc/self/exe) as the follower and the two meet on a loopback OOB channel.
//
// ChildProcess owns the child: its destructor terminates a child still
// running (SIGTERM, then SIGKILL after a grace period) and reaps it, so no
// exit path leaks a process; the child also dies with its parent
// (PR_SET_PDEATHSIG). Not thread-safe.
#ifndef TOKENRAIL_TOOLS_BENCH_LOCAL_PEER_H_
#define TOKENRAIL_TOOLS_BENCH_LOCAL_PEER_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "transport/oob.h"

namespace tokenrail {
namespace bench {

class ChildProcess {
 public:
  // Starts argv[0] with `argv`; fails (with the exec error) if it cannot run.
  static absl::StatusOr<ChildProcess> Spawn(const std::vector<std::string>& argv);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) = delete;
  ChildProcess(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // The exit code once it exited (128 + N for a signal N), nullopt while it
  // runs. Never blocks.
  std::optional<int> TryWait();
  // Waits for the exit; DeadlineExceeded if it is still running at `deadline`.
  absl::StatusOr<int> Wait(absl::Time deadline);

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// The path of the running executable (readlink /proc/self/exe).
absl::StatusOr<std::string> SelfExecutable();

// Accepts the child's OOB connection; fails early with the child's exit code
// if it dies first, or at `deadline`.
absl::StatusOr<transport::OobChannel> AcceptFromChild(transport::OobListener& listener,
                                                      ChildProcess& child, absl::Time deadline);

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_LOCAL_PEER_H_
