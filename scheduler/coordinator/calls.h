// The coordinator's long-lived and parked RPCs on gRPC's callback API, and
// the Effects that connect them to job state.
//
// Why the callback API: a Barrier with 64 waiting callers, one heartbeat
// stream per daemon and any number of WatchJob streams are all *waiting*, not
// working. On the sync API each would pin a server thread; here each is a
// reactor object and a waiting call costs no thread. Handlers never block:
// they update job state under the job's mutex and return.
//
// Locking rule: job state changes under Job::mu_ and records what must
// happen to calls and streams in an Effects; the caller runs the Effects after
// releasing the lock. gRPC operations (Finish, StartWrite) are therefore never
// issued while a job mutex is held, so a reaction that gRPC runs inline can
// take that mutex without deadlock. Stream objects have their own mutex,
// which may be held while calling into a Job (order: stream -> job), never the
// other way round.
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_CALLS_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_CALLS_H_

#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/tokenrail/v1/coordinator.pb.h"
#include "proto/tokenrail/v1/job.pb.h"

namespace tokenrail {
namespace coordinator {

class Job;
class JobRegistry;
class HeartbeatStream;
class WatchStream;

// A unary call (Barrier, GetTopology with wait_for_all) that its job answers
// later. Created by the handler, handed to the Job, finished exactly once
// through Effects. The fields below belong to the Job and are guarded by its
// mutex: `parked` is true while the job holds the call in a wait list and is
// cleared by whoever takes it out to answer it, which makes answering
// exactly-once between release, failure, expiry, shutdown and cancellation.
class ParkedCall final : public grpc::ServerUnaryReactor {
 public:
  explicit ParkedCall(std::shared_ptr<Job> job) : job_(std::move(job)) {}

  // The client cancelled or its deadline passed: leave the wait list.
  void OnCancel() override;
  void OnDone() override { delete this; }

  bool parked = false;
  int64_t give_up_ns = 0;  // monotonic; the coordinator's own bound
  // The client's deadline: a barrier never counts a participant whose call
  // already expired (its cancellation may still be on the way).
  absl::Time deadline = absl::InfiniteFuture();
  std::string barrier_name;  // for Barrier calls
  int participant = -1;      // for Barrier calls; -1 for GetTopology

 private:
  std::shared_ptr<Job> job_;
};

// What to do once the job mutex is released. Run() performs and clears it;
// the destructor runs anything left, so `Effects fx;` declared before taking a
// lock always acts after it is released.
struct HeartbeatPush {
  std::shared_ptr<HeartbeatStream> stream;
  v1::HeartbeatResponse response;
  uint64_t version = 0;
};

struct Effects {
  Effects() = default;
  Effects(const Effects&) = delete;
  Effects& operator=(const Effects&) = delete;
  ~Effects() { Run(); }

  void Run();

  std::vector<std::pair<ParkedCall*, grpc::Status>> finish;
  std::vector<HeartbeatPush> pushes;
  std::vector<std::pair<std::shared_ptr<HeartbeatStream>, grpc::Status>> end_streams;
  std::vector<std::shared_ptr<WatchStream>> wake;
  std::vector<std::pair<std::shared_ptr<WatchStream>, grpc::Status>> end_watches;
};

// One daemon's Heartbeat stream. The first beat names the job and session;
// each beat is answered with the job's state, and job events (failure,
// cancellation) are pushed as soon as they happen. Responses are snapshots:
// when the daemon reads slowly, unsent ones coalesce into the newest, and a
// snapshot older than one already queued is never sent after it.
// A stream that ends before the member left (client closed it, connection
// broke, an invalid beat) makes the member DEAD and fails the job.
class HeartbeatStream final
    : public grpc::ServerBidiReactor<v1::HeartbeatRequest, v1::HeartbeatResponse>,
      public std::enable_shared_from_this<HeartbeatStream> {
 public:
  // Creates the reactor (kept alive by itself until OnDone) and starts reading.
  static HeartbeatStream* Start(JobRegistry* registry);

  explicit HeartbeatStream(JobRegistry* registry) : registry_(registry) {}

  // Sends `response` (job state version `version`) when the stream is free.
  void Push(const v1::HeartbeatResponse& response, uint64_t version);
  // Finishes with `status` once the write in flight completed. Idempotent.
  void End(const grpc::Status& status);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  // Binds the stream to the job and session of the first beat.
  grpc::Status Bind();

  JobRegistry* const registry_;
  // Read path only (one read outstanding at a time).
  v1::HeartbeatRequest request_;
  std::shared_ptr<Job> job_;
  int node_ = -1;
  std::string session_;

  absl::Mutex mu_;
  v1::HeartbeatResponse latest_ ABSL_GUARDED_BY(mu_);
  uint64_t latest_version_ ABSL_GUARDED_BY(mu_) = 0;
  bool unsent_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  v1::HeartbeatResponse in_flight_;  // owned by the write in flight
  bool end_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<HeartbeatStream> self_;  // set by Start, dropped in OnDone
};

// One WatchJob stream: the job's event history from a sequence number, then
// live events, then OK once the job ended and its final state was sent.
class WatchStream final : public grpc::ServerWriteReactor<v1::JobEvent>,
                          public std::enable_shared_from_this<WatchStream> {
 public:
  static WatchStream* Start(std::shared_ptr<Job> job, int64_t from_sequence);

  WatchStream(std::shared_ptr<Job> job, int64_t from_sequence)
      : job_(std::move(job)), next_sequence_(from_sequence) {}

  // New events or the end of the job: send what is due.
  void Pump();
  // Finishes with `status` once the write in flight completed. Idempotent.
  void End(const grpc::Status& status);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  const std::shared_ptr<Job> job_;
  absl::Mutex mu_;
  int64_t next_sequence_ ABSL_GUARDED_BY(mu_);
  v1::JobEvent event_;  // owned by the write in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool end_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<WatchStream> self_;
};

}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_CALLS_H_
