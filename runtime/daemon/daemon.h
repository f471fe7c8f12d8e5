// tokenraild: one per node. Owns the node's arena, the inter-node transport
// to the peer daemons, the proxy thread, the rank socket and the NodeService,
// and is the node's member of the job at the coordinator.
//
// Start() (blocking) runs the start-up in order:
//   1. wait for the job to exist at the coordinator (its spec gives the
//      node count and ranks per node, which size the arena);
//   2. create the arena; with more than one node, create the inter-node
//      context (--transports, --transport_params) and register the arena;
//   3. start the NodeService; Join with the transport address, the arena's
//      remote key and the NodeService address; start heartbeats;
//   4. wait for every node to join (GetTopology), Connect() to every peer
//      in node-id order and unpack their arena keys;
//   5. start the proxy and the collectives, listen on the rank socket.
// Then the daemon is SERVING until it finishes, which Wait() reports:
//   - Drain (SIGTERM in tokenraild, NodeService.Drain, a coordinator push):
//     refuse new ranks, let in-flight proxy work finish (bounded), Leave
//     (clean when no rank is attached and the job has not failed), stop: OK.
//   - exit_when_done: once every local rank attached and then detached (or
//     the job failed and no rank is attached): a shutdown barrier among the
//     daemons, Leave, stop: OK, or the job's failure.
// Failures (a local rank died, a peer daemon is unreachable, the coordinator
// pushed a failure or vanished) are written into the arena, which every
// waiting rank sees at once, and reported to the coordinator when detected
// here. The daemon keeps serving status (FAILED) until drained.
//
// Thread safety: every public method may be called from any thread.
#ifndef TOKENRAIL_RUNTIME_DAEMON_DAEMON_H_
#define TOKENRAIL_RUNTIME_DAEMON_DAEMON_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/server.h"
#include "proto/tokenrail/v1/node.grpc.pb.h"
#include "runtime/arena/arena.h"
#include "runtime/daemon/collectives.h"
#include "runtime/daemon/coordinator_link.h"
#include "runtime/daemon/fabric.h"
#include "runtime/daemon/options.h"
#include "runtime/daemon/proxy.h"
#include "runtime/daemon/rank_server.h"

namespace tokenrail {
namespace runtime {

class NodeServiceImpl;

class Daemon {
 public:
  explicit Daemon(DaemonOptions options);
  ~Daemon();  // stops everything (without Leave if never finished)
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs the start-up (see above); returns once the rank socket listens.
  // A drain requested meanwhile aborts it with Cancelled. On failure the
  // daemon leaves the job (if it joined), stops, and Wait() returns the
  // same error.
  absl::Status Start();
  // Blocks until the daemon finished (see above) and returns how.
  absl::Status Wait();
  // Starts a drain (idempotent). Returns the proxy commands in flight now.
  uint64_t RequestDrain(const std::string& reason, absl::Duration timeout);

  // Valid after Start().
  int node_port() const;
  const std::string& socket_path() const { return socket_path_; }
  int node_id() const { return options_.node_id; }
  v1::NodeStatus Status() const;
  v1::NodeStats Stats() const;

 private:
  enum class State { kStarting, kServing, kDraining, kFailed, kFinished };

  // Start-up steps (daemon.cc).
  absl::Status StartSteps();
  absl::Status CheckDrainRequested();
  absl::Status JoinJob();
  absl::Status ConnectPeers();
  absl::Status StartServing();
  WelcomeInfo MakeWelcome(int r) const;

  // Rank events (from the rank server thread).
  absl::StatusOr<WelcomeInfo> OnAttach(int r, pid_t pid);
  void OnDetached(int r, pid_t pid);
  void OnRankLost(int r, pid_t pid, const std::string& why);
  void OnJobEnd(const absl::Status& status, const v1::HeartbeatResponse& last);
  void OnPeerFailed(int node_id, const absl::Status& status);

  // Failure and shutdown (daemon_control.cc).
  // Publishes `status` in the arena (first failure wins); when `report` is
  // set, tells the coordinator `info` (on the control thread).
  void Fail(const absl::Status& status, const v1::FailureInfo& info, bool report);
  void Post(std::function<void()> task);
  void ControlLoop();
  void MaybeDone();
  void Drain(const std::string& reason, absl::Duration timeout);
  void FinishWhenDone();
  // Leave the job and stop every component; sets the result.
  void LeaveAndStop(bool clean, const std::string& reason, absl::Status result);
  void StopComponents();
  v1::FailureInfo MakeFailure(int global_rank, const std::string& reason) const;
  static v1::FailureInfo FailureAt(int node_id, int global_rank, const std::string& reason);

  const DaemonOptions options_;
  const std::string socket_path_;
  std::string hostname_;

  // Set during Start(), read-only afterwards.
  v1::JobSpec spec_;
  std::vector<PeerSpec> peer_specs_;

  // Components, in construction order (destroyed in reverse).
  std::unique_ptr<CoordinatorLink> coordinator_;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<Fabric> fabric_;
  std::unique_ptr<NodeServiceImpl> node_service_;
  std::unique_ptr<rpc::Server> node_server_;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<Collectives> collectives_;
  std::unique_ptr<RankServer> rank_server_;

  std::atomic<bool> leaving_{false};  // the coordinator link may end now

  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kStarting;
  std::vector<bool> ever_attached_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> attached_ ABSL_GUARDED_BY(mu_);
  bool drain_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::string drain_reason_ ABSL_GUARDED_BY(mu_);
  absl::Duration drain_timeout_ ABSL_GUARDED_BY(mu_);
  bool done_requested_ ABSL_GUARDED_BY(mu_) = false;
  // Every component exists (set at the end of StartServing).
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  // A drain or the exit_when_done shutdown is running (only one ever runs).
  bool shutdown_started_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_control_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status result_ ABSL_GUARDED_BY(mu_);
  v1::FailureInfo failure_ ABSL_GUARDED_BY(mu_);
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  std::thread control_;
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_DAEMON_DAEMON_H_
