#include "scheduler/coordinator/services.h"

#include <grpcpp/support/proto_buffer_reader.h>

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "scheduler/coordinator/calls.h"
#include "scheduler/coordinator/validation.h"

namespace tokenrail {
namespace coordinator {
namespace {

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(GrpcFromStatus(status));
  return reactor;
}

absl::Time ClientDeadline(const grpc::CallbackServerContext* ctx) {
  const auto deadline = ctx->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

// A server stream refused before it produced anything.
class RefusedWatch final : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  explicit RefusedWatch(const absl::Status& status) { Finish(GrpcFromStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

// ---------------------------------------------------------------------------
// Coordinator

grpc::ServerUnaryReactor* CoordinatorService::Join(grpc::CallbackServerContext* ctx,
                                                   const v1::JoinRequest* request,
                                                   v1::JoinResponse* response) {
  absl::Status status = [&]() -> absl::Status {
    TR_RETURN_IF_ERROR(ValidateJoinFields(*request));
    TR_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, registry_->Find(request->job_id()));
    Effects fx;
    TR_ASSIGN_OR_RETURN(*response, job->Join(*request, &fx));
    return absl::OkStatus();
  }();
  return Answer(ctx, status);
}

grpc::ServerBidiReactor<v1::HeartbeatRequest, v1::HeartbeatResponse>* CoordinatorService::Heartbeat(
    grpc::CallbackServerContext* /*ctx*/) {
  return HeartbeatStream::Start(registry_);
}

grpc::ServerUnaryReactor* CoordinatorService::GetTopology(grpc::CallbackServerContext* ctx,
                                                          const v1::GetTopologyRequest* request,
                                                          v1::Topology* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = registry_->Find(request->job_id());
  if (!job.ok()) return Answer(ctx, job.status());
  auto* call = new ParkedCall(*job);
  Effects fx;
  (*job)->GetTopology(request->wait_for_all(), call, response, registry_->GiveUpTime(), &fx);
  fx.Run();
  return call;
}

grpc::ServerUnaryReactor* CoordinatorService::Barrier(grpc::CallbackServerContext* ctx,
                                                      const grpc::ByteBuffer* raw_request,
                                                      grpc::ByteBuffer* response) {
  v1::BarrierRequest request;
  {
    // The reader only reads; the const_cast is its API's, not a mutation.
    grpc::ProtoBufferReader reader(const_cast<grpc::ByteBuffer*>(raw_request));
    if (!request.ParseFromZeroCopyStream(&reader)) {
      return Answer(ctx, absl::InvalidArgumentError("malformed BarrierRequest"));
    }
  }
  absl::Status valid = ValidateBarrierFields(request);
  if (!valid.ok()) return Answer(ctx, valid);
  absl::StatusOr<std::shared_ptr<Job>> job = registry_->Find(request.job_id());
  if (!job.ok()) return Answer(ctx, job.status());
  auto* call = new ParkedCall(*job);
  call->deadline = ClientDeadline(ctx);
  Effects fx;
  (*job)->Barrier(request, call, response, registry_->GiveUpTime(), &fx);
  fx.Run();
  return call;
}

grpc::ServerUnaryReactor* CoordinatorService::ReportFailure(
    grpc::CallbackServerContext* ctx, const v1::ReportFailureRequest* request,
    v1::ReportFailureResponse* /*response*/) {
  absl::Status status = [&]() -> absl::Status {
    TR_RETURN_IF_ERROR(ValidateJobId(request->job_id()));
    TR_RETURN_IF_ERROR(ValidateSessionId(request->session_id()));
    if (!request->has_failure()) return absl::InvalidArgumentError("failure is required");
    TR_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, registry_->Find(request->job_id()));
    Effects fx;
    return job->ReportFailure(*request, &fx);
  }();
  return Answer(ctx, status);
}

grpc::ServerUnaryReactor* CoordinatorService::Leave(grpc::CallbackServerContext* ctx,
                                                    const v1::LeaveRequest* request,
                                                    v1::LeaveResponse* /*response*/) {
  absl::Status status = [&]() -> absl::Status {
    TR_RETURN_IF_ERROR(ValidateJobId(request->job_id()));
    TR_RETURN_IF_ERROR(ValidateSessionId(request->session_id()));
    TR_RETURN_IF_ERROR(ValidateReason(request->reason(), "reason"));
    TR_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, registry_->Find(request->job_id()));
    Effects fx;
    return job->Leave(*request, &fx);
  }();
  return Answer(ctx, status);
}

// ---------------------------------------------------------------------------
// JobService

grpc::ServerUnaryReactor* JobServiceImpl::CreateJob(grpc::CallbackServerContext* ctx,
                                                    const v1::CreateJobRequest* request,
                                                    v1::Job* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = registry_->Create(*request);
  if (job.ok()) *response = (*job)->ToProto();
  return Answer(ctx, job.status());
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJob(grpc::CallbackServerContext* ctx,
                                                 const v1::GetJobRequest* request,
                                                 v1::Job* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = registry_->Find(request->job_id());
  if (job.ok()) *response = (*job)->ToProto();
  return Answer(ctx, job.status());
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(grpc::CallbackServerContext* ctx,
                                                   const v1::ListJobsRequest* /*request*/,
                                                   v1::ListJobsResponse* response) {
  absl::Status serving = registry_->CheckServing();
  if (serving.ok()) {
    for (const std::shared_ptr<Job>& job : registry_->List())
      *response->add_jobs() = job->ToProto();
  }
  return Answer(ctx, serving);
}

grpc::ServerWriteReactor<v1::JobEvent>* JobServiceImpl::WatchJob(
    grpc::CallbackServerContext* /*ctx*/, const v1::WatchJobRequest* request) {
  if (request->from_sequence() < 0) {
    return new RefusedWatch(absl::InvalidArgumentError(
        absl::StrCat("from_sequence=", request->from_sequence(), " must be >= 0")));
  }
  absl::StatusOr<std::shared_ptr<Job>> job = registry_->Find(request->job_id());
  if (!job.ok()) return new RefusedWatch(job.status());
  return WatchStream::Start(std::move(*job), request->from_sequence());
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelJob(grpc::CallbackServerContext* ctx,
                                                    const v1::CancelJobRequest* request,
                                                    v1::Job* response) {
  absl::Status status = [&]() -> absl::Status {
    TR_RETURN_IF_ERROR(ValidateReason(request->reason(), "reason"));
    TR_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, registry_->Find(request->job_id()));
    {
      Effects fx;
      TR_RETURN_IF_ERROR(job->Cancel(request->reason(), &fx));
    }
    *response = job->ToProto();
    return absl::OkStatus();
  }();
  return Answer(ctx, status);
}

grpc::ServerUnaryReactor* JobServiceImpl::GetStats(grpc::CallbackServerContext* ctx,
                                                   const v1::GetStatsRequest* request,
                                                   v1::JobStats* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = registry_->Find(request->job_id());
  if (job.ok()) *response = (*job)->Stats();
  return Answer(ctx, job.status());
}

}  // namespace coordinator
}  // namespace tokenrail
