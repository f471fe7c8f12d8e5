// Child processes of the launcher: fork/exec with the isolation a launched
// cluster needs, and a synchronous runner for helper commands (`ip`).
//
// Every spawned child
//   - gets its own process group (so teardown signals reach its own children
//     too, and a terminal's Ctrl-C reaches only the launcher, which decides);
//   - gets PR_SET_PDEATHSIG, so it dies when the launcher dies, even by
//     SIGKILL. The kernel ties that signal to the *thread* that forked, so
//     spawn only from a thread that lives as long as the children (the
//     launcher forks from its main thread);
//   - starts with an empty signal mask and default dispositions, whatever the
//     launcher blocked for its signalfd;
//   - optionally enters a named network namespace first (setns), with its own
//     mount namespace and a fresh /sys, as `ip netns exec` does, so tools that
//     enumerate /sys/class/net (UCX's TCP transport) see that namespace's
//     interfaces;
//   - inherits no launcher descriptor except stdin (/dev/null unless given)
//     and the stdout/stderr pipes (every launcher fd is O_CLOEXEC).
// Exec failures (program missing, setns refused) come back from Spawn as a
// Status through a close-on-exec pipe, never as a mysterious exit code.
//
// Thread safety: a Subprocess is used by one thread.
#ifndef TOKENRAIL_TOOLS_LAUNCH_SUBPROCESS_H_
#define TOKENRAIL_TOOLS_LAUNCH_SUBPROCESS_H_

#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fd.h"

namespace tokenrail {
namespace launch {

struct SpawnOptions {
  // argv[0] is the program: a path (with '/') or a name looked up in the PATH
  // of `env` (falling back to the launcher's PATH).
  std::vector<std::string> argv;
  // The complete environment, "NAME=value" entries.
  std::vector<std::string> env;
  // When set, the child joins the network namespace at this path
  // (/run/netns/NAME) before exec.
  std::string netns_path;
  // stdout and stderr go to pipes read by the launcher (else inherited).
  bool capture_output = true;
  // stdin: this fd (dup'ed by the child), or /dev/null when -1.
  int stdin_fd = -1;
  bool own_process_group = true;
  // Delivered to the child when the launcher (its forking thread) dies; 0: none.
  int parent_death_signal = SIGKILL;
};

class Subprocess {
 public:
  static absl::StatusOr<std::unique_ptr<Subprocess>> Spawn(const SpawnOptions& options);

  // Kills the process group if the child was never reaped, then reaps it.
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  // Read ends (non-blocking, close-on-exec) of the child's stdout/stderr;
  // invalid when not captured. The caller may close them (Reset) at EOF.
  UniqueFd& stdout_fd() { return stdout_; }
  UniqueFd& stderr_fd() { return stderr_; }

  // Sends `sig` to the child's process group (to the child alone when it has
  // none). The group outlives the child while its own children live, so this
  // still reaches them after the child was reaped.
  void Signal(int sig);

  // Non-blocking reap. True once the child exited; wait_status() is then valid.
  bool Poll();
  // Blocks (sleeping) until the child exits or `deadline`; true if it exited.
  bool WaitUntil(absl::Time deadline);
  bool exited() const { return exited_; }
  int wait_status() const { return wait_status_; }
  // True when the child exited with status 0.
  bool succeeded() const;

 private:
  Subprocess(pid_t pid, bool own_group) : pid_(pid), own_group_(own_group) {}
  pid_t pid_;
  bool own_group_;
  bool exited_ = false;
  int wait_status_ = 0;
  UniqueFd stdout_;
  UniqueFd stderr_;
};

// "exited with status 3", "killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int wait_status);

// Resolves `program` to an executable path: as given when it contains '/',
// else the first match in `path_list` (colon-separated). NotFound naming the
// program and the searched PATH.
absl::StatusOr<std::string> ResolveProgram(absl::string_view program, absl::string_view path_list);

// Runs a helper command to completion and returns its combined stdout and
// stderr. `input` is written to its stdin. A non-zero exit is Internal with
// the command line and its output; DeadlineExceeded (after killing it) when it
// runs past `deadline`. For short administrative commands (`ip`).
absl::StatusOr<std::string> RunCommand(const std::vector<std::string>& argv,
                                       absl::string_view input, absl::Time deadline);

// The launcher's own environment as "NAME=value" entries.
std::vector<std::string> CurrentEnvironment();

// Returns `env` with NAME set to `value` (replacing an existing NAME=).
void SetEnv(std::vector<std::string>* env, absl::string_view name, absl::string_view value);
// The value of NAME in `env`, or empty.
std::string GetEnv(const std::vector<std::string>& env, absl::string_view name);

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_SUBPROCESS_H_
