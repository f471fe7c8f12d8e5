#include "runtime/daemon/coordinator_link.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/rpc/client.h"
#include "common/status.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr char kLog[] = "daemon";
// How often the watcher refreshes the beats' counters at most.
constexpr absl::Duration kWatchSlice = absl::Milliseconds(100);

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorLink>> CoordinatorLink::Create(
    const std::string& target, const rpc::ClientOptions& options) {
  TR_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, rpc::CreateChannel(target, options));
  return std::unique_ptr<CoordinatorLink>(new CoordinatorLink(target, std::move(channel)));
}

CoordinatorLink::CoordinatorLink(std::string target, std::shared_ptr<grpc::Channel> channel)
    : target_(std::move(target)),
      channel_(std::move(channel)),
      jobs_(v1::JobService::NewStub(channel_)),
      coordinator_(v1::Coordinator::NewStub(channel_)) {}

CoordinatorLink::~CoordinatorLink() {
  StopWatching();
  member_.reset();
}

absl::StatusOr<v1::Job> CoordinatorLink::GetJob(const std::string& job_id, absl::Time deadline) {
  v1::GetJobRequest req;
  req.set_job_id(job_id);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(deadline));
  v1::Job job;
  grpc::Status s = jobs_->GetJob(&ctx, req, &job);
  if (!s.ok()) return rpc::DescribeCallError(s, "coordinator", target_, channel_.get());
  return job;
}

absl::StatusOr<v1::Job> CoordinatorLink::WaitForJob(const std::string& job_id,
                                                    absl::Time deadline) {
  v1::GetJobRequest req;
  req.set_job_id(job_id);
  grpc::Status last;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    ctx.set_wait_for_ready(true);  // the coordinator may still be starting
    v1::Job job;
    last = jobs_->GetJob(&ctx, req, &job);
    if (last.ok()) return job;
    if (last.error_code() != grpc::StatusCode::NOT_FOUND) break;
    if (absl::Now() + absl::Milliseconds(100) > deadline) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return Annotate(rpc::DescribeCallError(last, "coordinator", target_, channel_.get()),
                  absl::StrCat("waiting for job '", job_id, "'"));
}

absl::Status CoordinatorLink::Join(coordinator::MemberOptions options) {
  options.coordinator_address = target_;
  job_id_ = options.job_id;
  TR_ASSIGN_OR_RETURN(member_, coordinator::MemberClient::Join(channel_, options));
  return absl::OkStatus();
}

absl::StatusOr<v1::Topology> CoordinatorLink::GetTopology(absl::Time deadline) {
  return member_->GetTopology(true, deadline);
}

void CoordinatorLink::StartWatching(WatchCallbacks callbacks) {
  watch_ = std::move(callbacks);
  watcher_ = std::thread([this] { WatchLoop(); });
}

void CoordinatorLink::StopWatching() {
  {
    absl::MutexLock lock(&mu_);
    stop_watching_ = true;
  }
  if (watcher_.joinable()) watcher_.join();
}

void CoordinatorLink::WatchLoop() {
  const int64_t interval_ms = member_->join_response().heartbeat_interval_ms();
  const absl::Duration slice =
      std::min(kWatchSlice, absl::Milliseconds(interval_ms > 0 ? interval_ms : 500));
  bool drain_reported = false;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_watching_) return;
    }
    if (watch_.stats) member_->SetStats(watch_.stats(), 0);
    const absl::Status s = member_->WaitForJobEnd(absl::Now() + slice);
    const v1::HeartbeatResponse last = member_->last_heartbeat();
    if (last.drain() && !drain_reported) {
      drain_reported = true;
      if (watch_.on_drain) watch_.on_drain();
    }
    if (s.ok()) continue;
    // FailedPrecondition: the job succeeded or this node left; nothing to do.
    if (s.code() != absl::StatusCode::kFailedPrecondition && watch_.on_end) watch_.on_end(s, last);
    return;
  }
}

absl::StatusOr<std::vector<std::string>> CoordinatorLink::Barrier(const std::string& name,
                                                                  int participant, int participants,
                                                                  const std::string& payload,
                                                                  absl::Time deadline) {
  // One call for the whole wait: re-entering after a client-side timeout
  // could race with the round's release and leave this node a round behind.
  // CancelPendingCalls() ends it early.
  v1::BarrierRequest req;
  req.set_job_id(job_id_);
  req.set_session_id(member_->session_id());
  req.set_name(name);
  req.set_participant(participant);
  req.set_participants(participants);
  req.set_payload(payload);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(deadline));
  {
    absl::MutexLock lock(&mu_);
    if (calls_cancelled_) return absl::CancelledError(absl::StrCat("barrier ", name, " aborted"));
    calls_.insert(&ctx);
  }
  v1::BarrierResponse resp;
  const grpc::Status s = coordinator_->Barrier(&ctx, req, &resp);
  {
    absl::MutexLock lock(&mu_);
    calls_.erase(&ctx);
  }
  if (!s.ok()) {
    return Annotate(rpc::DescribeCallError(s, "coordinator", target_, channel_.get()),
                    absl::StrCat("barrier ", name));
  }
  if (resp.payloads_size() != participants) {
    return absl::InternalError(absl::StrCat("barrier ", name, ": the coordinator returned ",
                                            resp.payloads_size(), " payloads for ", participants,
                                            " participants"));
  }
  return std::vector<std::string>(resp.payloads().begin(), resp.payloads().end());
}

void CoordinatorLink::CancelPendingCalls() {
  absl::MutexLock lock(&mu_);
  calls_cancelled_ = true;
  for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
}

absl::Status CoordinatorLink::ReportFailure(const v1::FailureInfo& failure) {
  return member_->ReportFailure(failure);
}

absl::Status CoordinatorLink::Leave(bool clean, const std::string& reason) {
  return member_->Leave(clean, reason);
}

}  // namespace runtime
}  // namespace tokenrail
