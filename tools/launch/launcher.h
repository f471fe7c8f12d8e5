// tokenrail-launch: runs a job's daemons and ranks and supervises them.
//
// Local mode (the default) puts a whole cluster on this machine: N daemons
// (node 0's also hosts the coordinator) and N x R rank processes, optionally
// one network namespace per node (--netns). Cluster mode (Slurm or
// torchrun-style variables, see cluster_env.h) runs one node's share: that
// node's daemon and its ranks (or a single rank per launcher instance).
//
// Sequence: a private run directory (0700) with a fresh token (0600) ->
// node 0's daemon with --host_coordinator -> its ready file gives the
// coordinator port -> JobService.CreateJob -> the other daemons, each ready
// file awaited -> the ranks, with TOKENRAIL_SOCKET / TOKENRAIL_LOCAL_RANK /
// TOKENRAIL_NODE_ID / TOKENRAIL_JOB_ID (and RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE). Every output line is prefixed "[n<node>/r<rank>] " or
// "[n<node>/d] ".
//
// The first failure (a process exiting non-zero or by a signal, a daemon
// exiting while ranks run, --timeout, or SIGINT/SIGTERM to the launcher) is
// reported by name ("rank 3 (node 1) killed by signal 9 (Killed)"); the other
// ranks get `failure_grace` to observe the failure and exit on their own
// (they learn of it from the runtime), then everything left gets SIGTERM and,
// after `kill_grace`, SIGKILL. On success the daemons are stopped with SIGTERM
// (they drain and leave), node 0's last since it hosts the coordinator.
// Nothing outlives the run: children have PR_SET_PDEATHSIG and their own
// process groups, and a janitor process cleans up processes, directory and
// namespaces even if the launcher itself is SIGKILLed.
//
// Thread safety: Run() once, on the main thread (PR_SET_PDEATHSIG is tied to
// the forking thread), before the process starts other threads.
#ifndef TOKENRAIL_TOOLS_LAUNCH_LAUNCHER_H_
#define TOKENRAIL_TOOLS_LAUNCH_LAUNCHER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/rpc/options.h"
#include "tools/launch/cluster_env.h"
#include "tools/launch/output.h"

namespace tokenrail {
namespace launch {

// Exit codes of tokenrail-launch.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;     // a process failed, or the set-up did
inline constexpr int kExitUsage = 2;      // bad flags
inline constexpr int kExitTimeout = 124;  // --timeout, as timeout(1)
// Interrupted by signal N: 128 + N, as shells report it.

struct LaunchOptions {
  // Shape and this instance's share of it (local mode: everything).
  ClusterPlacement placement;
  // One network namespace per node (local mode only; needs root).
  bool netns = false;

  // Job spec; 0 picks the default noted.
  std::string job_name;  // default: the command's base name
  int experts = 0;       // default: world size
  int top_k = 1;
  int max_nodes_per_token = 0;  // default: nodes

  // Daemons.
  std::string daemon_path;        // the tokenraild binary
  std::string transports;         // --transports for tokenraild; empty: its default
  std::string transport_params;   // --transport_params; --netns adds tls=tcp unless tls is set
  uint64_t arena_bytes = 0;       // 0: tokenraild's default
  int heartbeat_interval_ms = 0;  // 0: tokenraild's default
  int heartbeat_timeout_ms = 0;   // 0: tokenraild's default
  std::vector<std::string> daemon_flags;  // extra flags for every tokenraild
  // Where daemons bind their services; empty: 127.0.0.1 locally, the node's
  // address with --netns, 0.0.0.0 in cluster mode.
  std::string bind_host;
  // Cluster mode: where node 0's hosted coordinator binds (default
  // 0.0.0.0:<coordinator port>).
  std::string coordinator_listen;

  // Auth: the token file every daemon and the launcher use. Empty in local
  // mode: a fresh token is generated in the run directory. Cluster mode
  // needs one on a shared filesystem, unless no_auth.
  std::string auth_token_file;
  bool no_auth = false;
  // TLS and token for the launcher's own RPCs (token filled from the file).
  rpc::ClientOptions client;

  // Lifetime.
  absl::Duration timeout = absl::ZeroDuration();  // whole run; 0: none
  absl::Duration startup_timeout = absl::Seconds(60);
  absl::Duration failure_grace = absl::Seconds(10);
  absl::Duration kill_grace = absl::Seconds(5);
  absl::Duration stop_timeout = absl::Seconds(20);  // daemons' drain on success
  std::string run_dir_parent;                       // default /tmp
  bool verbose = false;                             // announce every process with its pid

  std::vector<std::string> command;
};

// Checks option consistency (counts, cluster vs --netns, the command).
// InvalidArgument naming the flag.
absl::Status ValidateOptions(const LaunchOptions& options);

// The path of program `name`, built by Bazel at `runfiles_path` (relative to
// the workspace, e.g. "runtime/daemon/tokenraild"), looked for in this
// executable's Bazel runfiles (bazel run, tests, binaries that list it as
// data), next to this executable (an installed bin/), the bazel-bin layout
// ($RUNFILES_DIR and $TEST_SRCDIR too), then PATH. Empty when not found.
std::string FindProgram(absl::string_view name, absl::string_view runfiles_path);

// tokenraild's path when none is given: FindProgram of the daemon.
std::string FindTokenraild();

class Launcher {
 public:
  Launcher(LaunchOptions options, OutputSink* sink);
  ~Launcher();
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;

  // Runs the job to its end and cleans up; returns the exit code.
  int Run();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_LAUNCHER_H_
