// One job as the coordinator sees it: spec, state machine, membership,
// topology, barriers, failure detection, stats and the event log.
//
// States: PENDING -> RUNNING (every node joined) -> SUCCEEDED (every node left
// cleanly); PENDING/RUNNING -> FAILED (a member died: heartbeat timeout, its
// stream broke without Leave, Leave(clean=false); or ReportFailure) or
// CANCELLED (CancelJob). An ended job answers every waiting and later Barrier
// and topology wait with UNAVAILABLE naming the failure, pushes its final
// state to every member's heartbeat stream, and ends WatchJob streams after
// the final state event.
//
// Thread safety: every method is thread-safe (one mutex per job). Methods
// never block and never call into gRPC; what must happen to calls and streams
// is appended to the caller's Effects, run after the mutex is released.
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_JOB_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_JOB_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "proto/tokenrail/v1/common.pb.h"
#include "proto/tokenrail/v1/coordinator.pb.h"
#include "proto/tokenrail/v1/job.pb.h"
#include "scheduler/coordinator/barrier.h"
#include "scheduler/coordinator/calls.h"
#include "scheduler/coordinator/options.h"

namespace tokenrail {
namespace coordinator {

// Monotonic clock for timeouts (immune to wall-clock steps).
int64_t MonotonicNanos();
// Wall clock for the *_unix_ms fields of the protos.
int64_t UnixMillis();

class Job : public std::enable_shared_from_this<Job> {
 public:
  // `spec` passed ValidateJobSpec.
  Job(std::string id, const v1::JobSpec& spec, const CoordinatorOptions& options);

  const std::string& id() const { return id_; }
  const v1::JobSpec& spec() const { return spec_; }
  int64_t create_unix_ms() const { return create_unix_ms_; }

  bool Ended() const;
  v1::Job ToProto() const;
  v1::JobStats Stats() const;

  // JobService.CancelJob: FAILED_PRECONDITION when already ended.
  absl::Status Cancel(absl::string_view reason, Effects* fx);

  // Coordinator.Join (request passed ValidateJoinFields): node_id in range,
  // local_ranks matching, not a member already, job not ended.
  absl::StatusOr<v1::JoinResponse> Join(const v1::JoinRequest& request, Effects* fx);

  // Coordinator.GetTopology: answers `call` now, or parks it until every node
  // joined (wait_for_all) or the job ended.
  void GetTopology(bool wait_for_all, ParkedCall* call, v1::Topology* response, int64_t give_up_ns,
                   Effects* fx);

  // Coordinator.Barrier (request passed ValidateBarrierFields; its payload is
  // taken). `response` receives the serialized BarrierResponse.
  void Barrier(v1::BarrierRequest& request, ParkedCall* call, grpc::ByteBuffer* response,
               int64_t give_up_ns, Effects* fx);

  absl::Status ReportFailure(const v1::ReportFailureRequest& request, Effects* fx);
  absl::Status Leave(const v1::LeaveRequest& request, Effects* fx);

  // Heartbeat streams. Attach binds a stream to the member owning
  // `session_id` and returns its node id.
  absl::StatusOr<int> AttachStream(absl::string_view session_id,
                                   std::shared_ptr<HeartbeatStream> stream);
  // Records a beat and fills the answer; `version` orders state snapshots.
  // INVALID_ARGUMENT for bad stats (the stream then ends).
  absl::Status Beat(int node, const v1::HeartbeatRequest& request, v1::HeartbeatResponse* response,
                    uint64_t* version, Effects* fx);
  // The stream ended (`why`): the member is DEAD unless it left or the job
  // ended. Ignored for a stream that is no longer the member's.
  void StreamEnded(int node, const HeartbeatStream* stream, absl::string_view why, Effects* fx);
  void DetachStream(int node, const HeartbeatStream* stream);

  // WatchJob: the next event at or after *sequence (moving it on), kWait
  // after registering `watcher` for a wake-up, or kEnd (with the status to
  // finish with) once the job ended and everything was sent.
  enum class WatchStep { kEvent, kWait, kEnd };
  WatchStep NextEvent(int64_t* sequence, v1::JobEvent* event,
                      const std::shared_ptr<WatchStream>& watcher, grpc::Status* end_status);
  void RemoveWatcher(const WatchStream* watcher);

  // A parked call was cancelled by its client.
  void Withdraw(ParkedCall* call, Effects* fx);

  // Heartbeat timeouts and waits past the coordinator's bound.
  void Tick(int64_t now_ns, Effects* fx);

  // The coordinator is stopping: every call and stream ends with UNAVAILABLE.
  void Shutdown(Effects* fx);

 private:
  struct Member {
    v1::NodeMembership::State state = v1::NodeMembership::STATE_UNSPECIFIED;
    std::string session_id;
    v1::NodeInfo info;  // as published in the topology
    int64_t last_beat_ns = 0;
    int64_t last_beat_unix_ms = 0;
    bool has_stats = false;
    v1::NodeStats stats;
    std::shared_ptr<HeartbeatStream> stream;
  };

  bool EndedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TopologyCompleteLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Topology TopologyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::NodeMembership MembershipLocked(int node) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::HeartbeatResponse HeartbeatLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string DescribeNodeLocked(int node) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The status for calls of an ended job: UNAVAILABLE naming the failure or
  // cancellation, FAILED_PRECONDITION after success.
  grpc::Status EndStatusLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Member of `session_id`: NOT_FOUND for an unknown session,
  // FAILED_PRECONDITION for one that left or died.
  absl::StatusOr<int> LiveMemberLocked(absl::string_view session_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  v1::JobEvent* AddEventLocked(Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetStateLocked(v1::JobState state, Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetMemberStateLocked(int node, v1::NodeMembership::State state, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushStateLocked(Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the job FAILED with `failure` (first failure wins).
  void FailLocked(v1::FailureInfo failure, Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a move to an end state: answer waiters, push, wake watchers.
  void EndLocked(Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AnswerTopologyWaitersLocked(const grpc::Status& status, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string id_;
  const v1::JobSpec spec_;
  const CoordinatorOptions options_;
  const int64_t create_unix_ms_;

  mutable absl::Mutex mu_;
  v1::JobState state_ ABSL_GUARDED_BY(mu_) = v1::JOB_PENDING;
  bool has_failure_ ABSL_GUARDED_BY(mu_) = false;
  v1::FailureInfo failure_ ABSL_GUARDED_BY(mu_);  // failure or cancellation reason
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 1;     // bumps on every state change
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Member> members_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> sessions_ ABSL_GUARDED_BY(mu_);
  int joined_ ABSL_GUARDED_BY(mu_) = 0;  // ever joined
  int left_clean_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t progress_step_ ABSL_GUARDED_BY(mu_) = 0;

  struct TopologyWaiter {
    ParkedCall* call;
    v1::Topology* response;
  };
  std::vector<TopologyWaiter> topology_waiters_ ABSL_GUARDED_BY(mu_);
  BarrierTable barriers_ ABSL_GUARDED_BY(mu_);

  std::deque<v1::JobEvent> events_ ABSL_GUARDED_BY(mu_);
  int64_t first_sequence_ ABSL_GUARDED_BY(mu_) = 0;  // of events_.front()
  int64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<WatchStream>> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_JOB_H_
