// Fixtures for coordinator tests: a real CoordinatorServer on 127.0.0.1:0
// with a bearer token and short heartbeat timeouts, stubs that send the token,
// and simulated daemons (MemberClient).
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_TEST_UTIL_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_TEST_UTIL_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/tokenrail/v1/coordinator.grpc.pb.h"
#include "proto/tokenrail/v1/job.grpc.pb.h"
#include "scheduler/coordinator/coordinator.h"
#include "scheduler/coordinator/member_client.h"

namespace tokenrail {
namespace coordinator {
namespace testing {

inline constexpr char kTestToken[] = "test-token-0123456789";

// A spec that passes validation: experts = 2 * world, top_k 2, M = nodes.
v1::JobSpec Spec(int nodes, int ranks_per_node);

// Short timeouts so failure tests run fast.
CoordinatorOptions FastOptions();

class TestCoordinator {
 public:
  // Starts on 127.0.0.1:0 with kTestToken; aborts the test on failure.
  explicit TestCoordinator(const CoordinatorOptions& options = FastOptions());
  ~TestCoordinator();

  const std::string& address() const { return server_->address(); }
  CoordinatorServer& server() { return *server_; }

  // A channel sending `token` (kTestToken by default; "" = none).
  std::shared_ptr<grpc::Channel> Channel(const std::string& token = kTestToken) const;
  v1::JobService::Stub& jobs() { return *jobs_; }
  v1::Coordinator::Stub& coordinator() { return *coordinator_; }

  absl::StatusOr<v1::Job> CreateJob(const v1::JobSpec& spec, const std::string& job_id = "");
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  // A simulated daemon joined to `job_id` as `node` (ranks per node from the
  // spec the caller passes).
  absl::StatusOr<std::unique_ptr<MemberClient>> Join(const std::string& job_id, int node,
                                                     int local_ranks);
  // Polls GetJob until the job is in `state` or `timeout` passes.
  absl::StatusOr<v1::Job> WaitForState(const std::string& job_id, v1::JobState state,
                                       absl::Duration timeout = absl::Seconds(10));

 private:
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
};

// A ClientContext with a deadline `timeout` from now.
std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::Seconds(10));

}  // namespace testing
}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_TEST_UTIL_H_
