// The member side of the Coordinator protocol: join, keep the heartbeat
// stream alive on a thread, follow the job's state, barrier, report failures,
// leave. tokenraild's coordinator client can be this; the barrier benchmark
// and the tests use it to simulate daemons.
//
// Heartbeats: one stream per member, a beat every heartbeat_interval_ms (from
// JoinResponse) carrying the latest stats/progress; the coordinator answers
// each beat with the job state and pushes failures and cancellation at once.
// When nothing arrived from the coordinator for heartbeat_timeout_ms, or the
// stream breaks, the member treats the coordinator as lost.
//
// Leaving: Leave() first, then the stream is closed; the coordinator treats a
// stream that closes while still a member as a dead node.
//
// Thread safety: all methods are thread-safe; Barrier/GetTopology block up to
// their deadline (any number of threads may wait in them at once).
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_MEMBER_CLIENT_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_MEMBER_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/tokenrail/v1/coordinator.grpc.pb.h"

namespace tokenrail {
namespace coordinator {

struct MemberOptions {
  std::string job_id;
  int node_id = 0;
  std::string hostname;
  int local_ranks = 1;
  std::vector<v1::TransportEndpoint> endpoints;
  std::vector<v1::MemoryKey> memory_keys;
  std::string node_service_address;
  // Deadline of the short RPCs (Join, ReportFailure, Leave).
  absl::Duration rpc_timeout = absl::Seconds(10);
  // The coordinator's HOST:PORT, for error messages.
  std::string coordinator_address;
};

class MemberClient {
 public:
  // Joins, opens the heartbeat stream and waits (up to rpc_timeout) for the
  // coordinator's first answer on it, so that from then on a crash of this
  // member is seen as a broken stream. The coordinator's status (with
  // DescribeCallError's phrasing) when it refuses either.
  static absl::StatusOr<std::unique_ptr<MemberClient>> Join(std::shared_ptr<grpc::Channel> channel,
                                                            const MemberOptions& options);

  // Closes the heartbeat stream (a member that did not Leave() is then
  // declared dead by the coordinator) and joins the threads.
  ~MemberClient();
  MemberClient(const MemberClient&) = delete;
  MemberClient& operator=(const MemberClient&) = delete;

  const v1::JoinResponse& join_response() const { return join_; }
  const std::string& session_id() const { return join_.session_id(); }
  int node_id() const { return options_.node_id; }

  absl::StatusOr<v1::Topology> GetTopology(bool wait_for_all, absl::Time deadline);
  absl::StatusOr<v1::BarrierResponse> Barrier(const std::string& name, int participant,
                                              int participants, const std::string& payload,
                                              absl::Time deadline);
  absl::Status ReportFailure(const v1::FailureInfo& failure);
  // Leave(clean): the coordinator records it, then the stream closes cleanly.
  absl::Status Leave(bool clean, const std::string& reason);

  // Sent with the next beats.
  void SetStats(const v1::NodeStats& stats, int64_t progress_step);

  // OK while the job is PENDING or RUNNING and the coordinator is alive;
  // otherwise Unavailable naming the failure, cancellation or lost
  // coordinator (FailedPrecondition after SUCCEEDED).
  absl::Status job_status() const;
  // The newest state the coordinator sent.
  v1::HeartbeatResponse last_heartbeat() const;
  // Blocks until job_status() is not OK or `deadline`; returns job_status().
  absl::Status WaitForJobEnd(absl::Time deadline) const;

  // Fault injection for tests and benchmarks: stop beating but keep the
  // stream open (a hung daemon), or break the stream without leaving (a
  // crashed one).
  void PauseHeartbeats();
  void BreakStream();

 private:
  MemberClient(std::shared_ptr<grpc::Channel> channel, const MemberOptions& options,
               v1::JoinResponse join);
  // Starts the stream threads and waits for the first answer.
  absl::Status StartHeartbeats();
  // The writer beats until stopped or the stream ends, then finishes the
  // stream (it is the only thread that may call Finish once Read failed).
  void WriterLoop();
  void ReaderLoop();
  absl::Status CallError(const grpc::Status& status) const;
  absl::Status JobStatusLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::Coordinator::Stub> stub_;
  const MemberOptions options_;
  const v1::JoinResponse join_;

  grpc::ClientContext stream_ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::HeartbeatRequest, v1::HeartbeatResponse>> stream_;
  std::thread writer_;
  std::thread reader_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool left_ ABSL_GUARDED_BY(mu_) = false;
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;  // first heartbeat answer arrived
  bool stream_finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status stream_status_ ABSL_GUARDED_BY(mu_);  // as the stream finished
  v1::NodeStats stats_ ABSL_GUARDED_BY(mu_);
  bool has_stats_ ABSL_GUARDED_BY(mu_) = false;
  int64_t progress_step_ ABSL_GUARDED_BY(mu_) = 0;
  v1::HeartbeatResponse last_ ABSL_GUARDED_BY(mu_);
  absl::Time last_heard_ ABSL_GUARDED_BY(mu_);
  absl::Status stream_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_MEMBER_CLIENT_H_
