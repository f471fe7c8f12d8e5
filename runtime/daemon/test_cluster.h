// Test fixture: a real coordinator (in process, port 0, bearer token), a job,
// and N in-process tokenraild instances joined to it over loopback (UCX over
// TCP between them), plus helpers to run ranks as threads or as processes
// (the test_rank program).
#ifndef TOKENRAIL_RUNTIME_DAEMON_TEST_CLUSTER_H_
#define TOKENRAIL_RUNTIME_DAEMON_TEST_CLUSTER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/client/client.h"
#include "runtime/daemon/daemon.h"
#include "scheduler/coordinator/test_util.h"

namespace tokenrail {
namespace runtime {
namespace testing {

struct ClusterConfig {
  int nodes = 1;
  int ranks_per_node = 1;
  uint64_t arena_bytes = 16 << 20;
  bool exit_when_done = false;
  // Coordinator failure detection (short, so fault tests run fast, but
  // above scheduling noise on a 2-core machine).
  absl::Duration heartbeat_interval = absl::Milliseconds(100);
  absl::Duration heartbeat_timeout = absl::Milliseconds(1500);
};

class TestCluster {
 public:
  explicit TestCluster(ClusterConfig config);
  ~TestCluster();

  // Creates the job and starts every daemon (concurrently: each waits for
  // the others to join and connect).
  absl::Status Start();

  const std::string& job_id() const { return job_id_; }
  const ClusterConfig& config() const { return config_; }
  coordinator::testing::TestCoordinator& coordinator() { return *coordinator_; }
  Daemon& daemon(int node) { return *daemons_[static_cast<size_t>(node)]; }
  DaemonOptions DaemonOptionsFor(int node) const;
  std::string SocketPath(int node) const;
  AttachOptions Attach(int node, int local_rank) const;
  // tokenraild flags for `node` (token file in a private directory; the
  // ready file is <dir>/ready). `extra` flags are appended.
  std::vector<std::string> DaemonArgs(int node, const std::vector<std::string>& extra = {}) const;
  std::string ReadyFile(int node) const;

  // Starts the test_rank program (path in $TR_TEST_RANK) as local rank
  // `local_rank` of `node`, with `args`. Its stdout is readable at
  // *stdout_fd (owned by the caller).
  absl::StatusOr<pid_t> SpawnRank(int node, int local_rank, const std::vector<std::string>& args,
                                  int* stdout_fd) const;

 private:
  const ClusterConfig config_;
  const std::string job_id_;
  std::unique_ptr<coordinator::testing::TestCoordinator> coordinator_;
  std::vector<std::unique_ptr<Daemon>> daemons_;
};

// tokenraild as a real process (path in $TR_TOKENRAILD), killed on
// destruction if still running.
class DaemonProcess {
 public:
  ~DaemonProcess();
  // `args` are the flags (argv[1..]).
  absl::Status Start(const std::vector<std::string>& args);
  // Waits for `ready_file`; returns its contents. Fails if the process exits.
  absl::StatusOr<std::string> WaitReady(const std::string& ready_file, absl::Duration timeout);
  void Kill();
  void Signal(int sig);
  // The raw wait status, or -1 on timeout (then killed).
  int Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// The value of "key=" in a ready file's text, or -1.
int ReadyValue(const std::string& text, const std::string& key);

// Reads `fd` until a line equal to `line` arrives (true) or EOF/timeout.
bool WaitForLine(int fd, const std::string& line, absl::Duration timeout);
// waitpid with a timeout (SIGKILL on expiry); the raw wait status, or -1.
int WaitExit(pid_t pid, absl::Duration timeout);

}  // namespace testing
}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_DAEMON_TEST_CLUSTER_H_
