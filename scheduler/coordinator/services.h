// gRPC glue: tokenrail.v1.Coordinator (daemons) and tokenrail.v1.JobService
// (schedulers, tokenrailctl, the launcher) over one JobRegistry, on the
// callback API (see calls.h for why). Handlers validate, look the job up and
// delegate to Job; none blocks.
//
// Ownership: both borrow the registry, which must outlive the server they are
// registered on.
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_SERVICES_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_SERVICES_H_

#include "proto/tokenrail/v1/coordinator.grpc.pb.h"
#include "proto/tokenrail/v1/job.grpc.pb.h"
#include "scheduler/coordinator/registry.h"

namespace tokenrail {
namespace coordinator {

// Barrier is a raw method: its response is serialized once per round and
// shared by all participants (see barrier.h).
class CoordinatorService final
    : public v1::Coordinator::WithRawCallbackMethod_Barrier<v1::Coordinator::CallbackService> {
 public:
  explicit CoordinatorService(JobRegistry* registry) : registry_(registry) {}

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const v1::JoinRequest* request,
                                 v1::JoinResponse* response) override;
  grpc::ServerBidiReactor<v1::HeartbeatRequest, v1::HeartbeatResponse>* Heartbeat(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* GetTopology(grpc::CallbackServerContext* ctx,
                                        const v1::GetTopologyRequest* request,
                                        v1::Topology* response) override;
  grpc::ServerUnaryReactor* Barrier(grpc::CallbackServerContext* ctx,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ReportFailure(grpc::CallbackServerContext* ctx,
                                          const v1::ReportFailureRequest* request,
                                          v1::ReportFailureResponse* response) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx, const v1::LeaveRequest* request,
                                  v1::LeaveResponse* response) override;

 private:
  JobRegistry* const registry_;
};

class JobServiceImpl final : public v1::JobService::CallbackService {
 public:
  explicit JobServiceImpl(JobRegistry* registry) : registry_(registry) {}

  grpc::ServerUnaryReactor* CreateJob(grpc::CallbackServerContext* ctx,
                                      const v1::CreateJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* ctx,
                                                   const v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const v1::GetStatsRequest* request,
                                     v1::JobStats* response) override;

 private:
  JobRegistry* const registry_;
};

}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_SERVICES_H_
