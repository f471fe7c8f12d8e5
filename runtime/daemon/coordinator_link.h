// The daemon's link to the coordinator: JobService lookups (the job's spec
// before joining), membership through coordinator::MemberClient (Join, the
// heartbeat stream, Barrier, ReportFailure, Leave), and a watcher thread that
// turns what the heartbeat stream learns into callbacks: the job ended
// (failed, cancelled, coordinator lost) or the coordinator asked for a drain.
// It also hands the latest node counters to the beats.
//
// Thread safety: every method may be called from any thread.
#ifndef TOKENRAIL_RUNTIME_DAEMON_COORDINATOR_LINK_H_
#define TOKENRAIL_RUNTIME_DAEMON_COORDINATOR_LINK_H_

#include <grpcpp/channel.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/options.h"
#include "proto/tokenrail/v1/coordinator.grpc.pb.h"
#include "proto/tokenrail/v1/job.grpc.pb.h"
#include "scheduler/coordinator/member_client.h"

namespace tokenrail {
namespace runtime {

struct WatchCallbacks {
  // Counters for the next beats.
  std::function<v1::NodeStats()> stats;
  // Once: the job failed or was cancelled, or the coordinator was lost.
  // `status` names what happened (Unavailable); `last` is the coordinator's
  // newest answer (its failure field names the node/rank when known).
  std::function<void(const absl::Status& status, const v1::HeartbeatResponse& last)> on_end;
  // Once: the coordinator asked this node to drain.
  std::function<void()> on_drain;
};

class CoordinatorLink {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorLink>> Create(const std::string& target,
                                                                 const rpc::ClientOptions& options);
  ~CoordinatorLink();  // StopWatching(); the member's stream closes (no Leave)

  const std::string& target() const { return target_; }

  // Waits until the coordinator answers and the job exists (NOT_FOUND is
  // retried: the launcher may create the job after starting the daemons).
  absl::StatusOr<v1::Job> WaitForJob(const std::string& job_id, absl::Time deadline);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id, absl::Time deadline);

  // Joins (MemberClient::Join) and starts heartbeats.
  absl::Status Join(coordinator::MemberOptions options);
  const v1::JoinResponse& join_response() const { return member_->join_response(); }
  // True once Join succeeded (set by the thread that calls Join).
  bool joined() const { return member_ != nullptr; }
  absl::StatusOr<v1::Topology> GetTopology(absl::Time deadline);

  void StartWatching(WatchCallbacks callbacks);
  void StopWatching();

  // Allgather among the nodes (payloads by participant), in one call
  // bounded by `deadline`. The coordinator fails it when the job fails;
  // CancelPendingCalls() ends it when this daemon gives up.
  absl::StatusOr<std::vector<std::string>> Barrier(const std::string& name, int participant,
                                                   int participants, const std::string& payload,
                                                   absl::Time deadline);
  // Cancels every Barrier in flight and refuses later ones (Cancelled).
  void CancelPendingCalls();
  absl::Status ReportFailure(const v1::FailureInfo& failure);
  absl::Status Leave(bool clean, const std::string& reason);

 private:
  CoordinatorLink(std::string target, std::shared_ptr<grpc::Channel> channel);
  void WatchLoop();

  const std::string target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
  std::unique_ptr<coordinator::MemberClient> member_;
  std::string job_id_;

  WatchCallbacks watch_;
  absl::Mutex mu_;
  bool stop_watching_ ABSL_GUARDED_BY(mu_) = false;
  bool calls_cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
  std::thread watcher_;
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_DAEMON_COORDINATOR_LINK_H_
