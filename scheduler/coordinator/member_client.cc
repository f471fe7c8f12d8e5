#include "scheduler/coordinator/member_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/rpc/client.h"
#include "common/status.h"

namespace tokenrail {
namespace coordinator {
namespace {

std::chrono::system_clock::time_point ToChrono(absl::Time t) { return absl::ToChronoTime(t); }

// Blocking call through the callback API: gRPC's own threads drive the call
// and the caller sleeps on a futex. (The sync API makes every blocked caller
// a poller of gRPC's event loop, which with dozens of waiting callers costs
// milliseconds of thread hand-offs per release.)
template <typename Request, typename Response, typename Method>
grpc::Status CallAndWait(Method method, grpc::ClientContext* ctx, const Request& request,
                         Response* response) {
  absl::Notification done;
  grpc::Status status;
  method(ctx, &request, response, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return status;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MemberClient>> MemberClient::Join(
    std::shared_ptr<grpc::Channel> channel, const MemberOptions& options) {
  auto stub = v1::Coordinator::NewStub(channel);
  v1::JoinRequest request;
  request.set_job_id(options.job_id);
  request.set_node_id(options.node_id);
  request.set_hostname(options.hostname);
  request.set_local_ranks(options.local_ranks);
  for (const v1::TransportEndpoint& e : options.endpoints) *request.add_endpoints() = e;
  for (const v1::MemoryKey& k : options.memory_keys) *request.add_memory_keys() = k;
  request.set_node_service_address(options.node_service_address);
  grpc::ClientContext ctx;
  ctx.set_deadline(ToChrono(absl::Now() + options.rpc_timeout));
  v1::JoinResponse response;
  grpc::Status s = stub->Join(&ctx, request, &response);
  if (!s.ok()) {
    return Annotate(
        rpc::DescribeCallError(s, "coordinator", options.coordinator_address, channel.get()),
        absl::StrCat("node ", options.node_id, " joining job ", options.job_id));
  }
  std::unique_ptr<MemberClient> member(
      new MemberClient(std::move(channel), options, std::move(response)));
  TR_RETURN_IF_ERROR(member->StartHeartbeats());
  return member;
}

MemberClient::MemberClient(std::shared_ptr<grpc::Channel> channel, const MemberOptions& options,
                           v1::JoinResponse join)
    : channel_(std::move(channel)),
      stub_(v1::Coordinator::NewStub(channel_)),
      options_(options),
      join_(std::move(join)) {
  absl::MutexLock lock(&mu_);
  last_.set_state(v1::JOB_PENDING);
  last_heard_ = absl::Now();
}

MemberClient::~MemberClient() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (writer_.joinable()) writer_.join();
  if (reader_.joinable()) reader_.join();
}

absl::Status MemberClient::StartHeartbeats() {
  stream_ = stub_->Heartbeat(&stream_ctx_);
  reader_ = std::thread([this] { ReaderLoop(); });
  writer_ = std::thread([this] { WriterLoop(); });
  absl::MutexLock lock(&mu_);
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return answered_ || reader_done_; };
  mu_.AwaitWithTimeout(absl::Condition(&settled), options_.rpc_timeout);
  if (answered_) return absl::OkStatus();
  // Refused, broken or silent: stop the threads (the destructor joins them)
  // and report what the stream said.
  const bool timed_out = !reader_done_;
  stop_ = true;
  stream_ctx_.TryCancel();
  mu_.Await(absl::Condition(&stream_finished_));
  const std::string context = absl::StrCat("node ", options_.node_id, " joined job ",
                                           options_.job_id, " but its heartbeat stream failed");
  if (timed_out || stream_status_.ok()) {
    return absl::UnavailableError(
        absl::StrCat(context, ": no answer within ", absl::FormatDuration(options_.rpc_timeout)));
  }
  return Annotate(CallError(stream_status_), context);
}

void MemberClient::WriterLoop() {
  const absl::Duration interval = absl::Milliseconds(join_.heartbeat_interval_ms());
  bool write_failed = false;
  while (true) {
    v1::HeartbeatRequest beat;
    bool send = false;
    {
      absl::MutexLock lock(&mu_);
      if (stop_ || reader_done_) break;
      if (!paused_) {
        send = true;
        beat.set_job_id(options_.job_id);
        beat.set_session_id(join_.session_id());
        if (has_stats_) *beat.mutable_stats() = stats_;
        beat.set_progress_step(progress_step_);
      }
    }
    if (send && !stream_->Write(beat)) {
      write_failed = true;  // the stream broke; the reader sees it too
      break;
    }
    absl::MutexLock lock(&mu_);
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || reader_done_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&wake), interval)) break;
  }
  if (!write_failed) (void)stream_->WritesDone();
  // The coordinator answers a half-close by finishing the stream; bound the
  // wait in case it is unresponsive.
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&reader_done_), options_.rpc_timeout)) {
      stream_ctx_.TryCancel();
    }
    mu_.Await(absl::Condition(&reader_done_));
  }
  const grpc::Status status = stream_->Finish();
  absl::MutexLock lock(&mu_);
  stream_status_ = status;
  stream_finished_ = true;
  if (!stop_ && !left_) {
    stream_error_ = Annotate(
        rpc::DescribeCallError(status, "coordinator", options_.coordinator_address, channel_.get()),
        "heartbeat stream ended");
    if (stream_error_.ok()) {
      stream_error_ = absl::UnavailableError("heartbeat stream ended: the coordinator closed it");
    }
    TR_LOG(WARNING, "coordinator") << "node " << options_.node_id << ": " << stream_error_;
  }
}

void MemberClient::ReaderLoop() {
  v1::HeartbeatResponse response;
  while (stream_->Read(&response)) {
    absl::MutexLock lock(&mu_);
    last_ = response;
    last_heard_ = absl::Now();
    answered_ = true;
  }
  absl::MutexLock lock(&mu_);
  reader_done_ = true;
}

absl::Status MemberClient::CallError(const grpc::Status& status) const {
  return rpc::DescribeCallError(status, "coordinator", options_.coordinator_address,
                                channel_.get());
}

absl::StatusOr<v1::Topology> MemberClient::GetTopology(bool wait_for_all, absl::Time deadline) {
  v1::GetTopologyRequest request;
  request.set_job_id(options_.job_id);
  request.set_wait_for_all(wait_for_all);
  grpc::ClientContext ctx;
  ctx.set_deadline(ToChrono(deadline));
  v1::Topology topology;
  grpc::Status s = CallAndWait([this](auto... args) { stub_->async()->GetTopology(args...); }, &ctx,
                               request, &topology);
  if (!s.ok()) return CallError(s);
  return topology;
}

absl::StatusOr<v1::BarrierResponse> MemberClient::Barrier(const std::string& name, int participant,
                                                          int participants,
                                                          const std::string& payload,
                                                          absl::Time deadline) {
  v1::BarrierRequest request;
  request.set_job_id(options_.job_id);
  request.set_session_id(join_.session_id());
  request.set_name(name);
  request.set_participant(participant);
  request.set_participants(participants);
  request.set_payload(payload);
  grpc::ClientContext ctx;
  ctx.set_deadline(ToChrono(deadline));
  v1::BarrierResponse response;
  grpc::Status s = CallAndWait([this](auto... args) { stub_->async()->Barrier(args...); }, &ctx,
                               request, &response);
  if (!s.ok()) return CallError(s);
  return response;
}

absl::Status MemberClient::ReportFailure(const v1::FailureInfo& failure) {
  v1::ReportFailureRequest request;
  request.set_job_id(options_.job_id);
  request.set_session_id(join_.session_id());
  *request.mutable_failure() = failure;
  grpc::ClientContext ctx;
  ctx.set_deadline(ToChrono(absl::Now() + options_.rpc_timeout));
  v1::ReportFailureResponse response;
  grpc::Status s = stub_->ReportFailure(&ctx, request, &response);
  return s.ok() ? absl::OkStatus() : CallError(s);
}

absl::Status MemberClient::Leave(bool clean, const std::string& reason) {
  v1::LeaveRequest request;
  request.set_job_id(options_.job_id);
  request.set_session_id(join_.session_id());
  request.set_clean(clean);
  request.set_reason(reason);
  grpc::ClientContext ctx;
  ctx.set_deadline(ToChrono(absl::Now() + options_.rpc_timeout));
  v1::LeaveResponse response;
  grpc::Status s = stub_->Leave(&ctx, request, &response);
  if (!s.ok()) return CallError(s);
  {
    absl::MutexLock lock(&mu_);
    left_ = true;
    stop_ = true;  // the stream closes now that the coordinator recorded the Leave
  }
  if (writer_.joinable()) writer_.join();
  if (reader_.joinable()) reader_.join();
  return absl::OkStatus();
}

void MemberClient::SetStats(const v1::NodeStats& stats, int64_t progress_step) {
  absl::MutexLock lock(&mu_);
  stats_ = stats;
  has_stats_ = true;
  progress_step_ = progress_step;
}

absl::Status MemberClient::JobStatusLocked() const {
  const v1::FailureInfo& f = last_.failure();
  switch (last_.state()) {
    case v1::JOB_FAILED: {
      std::string where;
      if (f.global_rank() >= 0) {
        where = absl::StrCat("rank ", f.global_rank(), " on node ", f.node_id(), ": ");
      } else if (f.node_id() >= 0) {
        where = absl::StrCat("node ", f.node_id(), ": ");
      }
      return absl::UnavailableError(
          absl::StrCat("job ", options_.job_id, " failed: ", where, f.reason()));
    }
    case v1::JOB_CANCELLED:
      return absl::UnavailableError(absl::StrCat("job ", options_.job_id, " was ", f.reason()));
    case v1::JOB_SUCCEEDED:
      return absl::FailedPreconditionError(absl::StrCat("job ", options_.job_id, " succeeded"));
    default:
      break;
  }
  if (left_)
    return absl::FailedPreconditionError(
        absl::StrCat("node ", options_.node_id, " left job ", options_.job_id));
  if (!stream_error_.ok()) return stream_error_;
  const absl::Duration silent = absl::Now() - last_heard_;
  if (silent > absl::Milliseconds(join_.heartbeat_timeout_ms())) {
    return absl::UnavailableError(
        absl::StrCat("lost the coordinator at ", options_.coordinator_address,
                     ": nothing heard for ", absl::ToInt64Milliseconds(silent),
                     " ms (heartbeat timeout ", join_.heartbeat_timeout_ms(), " ms)"));
  }
  return absl::OkStatus();
}

absl::Status MemberClient::job_status() const {
  absl::MutexLock lock(&mu_);
  return JobStatusLocked();
}

v1::HeartbeatResponse MemberClient::last_heartbeat() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

absl::Status MemberClient::WaitForJobEnd(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !JobStatusLocked().ok(); };
  // The silence rule depends on time, not only on state changes: re-check
  // periodically.
  while (!ended() && absl::Now() < deadline) {
    mu_.AwaitWithDeadline(absl::Condition(&ended),
                          std::min(deadline, absl::Now() + absl::Milliseconds(50)));
  }
  return JobStatusLocked();
}

void MemberClient::PauseHeartbeats() {
  absl::MutexLock lock(&mu_);
  paused_ = true;
}

void MemberClient::BreakStream() { stream_ctx_.TryCancel(); }

}  // namespace coordinator
}  // namespace tokenrail
