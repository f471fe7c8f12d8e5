#include "scheduler/coordinator/test_util.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/rpc/client.h"
#include "gtest/gtest.h"

namespace tokenrail {
namespace coordinator {
namespace testing {

v1::JobSpec Spec(int nodes, int ranks_per_node) {
  v1::JobSpec spec;
  spec.set_name(absl::StrCat("test ", nodes, "x", ranks_per_node));
  spec.set_nodes(nodes);
  spec.set_ranks_per_node(ranks_per_node);
  spec.set_experts(2 * nodes * ranks_per_node);
  spec.set_top_k(2);
  spec.set_max_nodes_per_token(nodes);
  return spec;
}

CoordinatorOptions FastOptions() {
  CoordinatorOptions o;
  // Short enough for fast failure tests, long enough that a loaded CI
  // machine does not starve a healthy member into a timeout.
  o.heartbeat_interval = absl::Milliseconds(50);
  o.heartbeat_timeout = absl::Milliseconds(1000);
  return o;
}

TestCoordinator::TestCoordinator(const CoordinatorOptions& options) {
  rpc::ServerOptions server_options;
  server_options.auth_token = kTestToken;
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(options, server_options);
  if (!server.ok()) {
    ADD_FAILURE() << server.status();
    std::abort();
  }
  server_ = std::move(*server);
  jobs_ = v1::JobService::NewStub(Channel());
  coordinator_ = v1::Coordinator::NewStub(Channel());
}

TestCoordinator::~TestCoordinator() { server_->Shutdown(); }

std::shared_ptr<grpc::Channel> TestCoordinator::Channel(const std::string& token) const {
  rpc::ClientOptions options;
  options.auth_token = token;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ch = rpc::CreateChannel(address(), options);
  if (!ch.ok()) {
    ADD_FAILURE() << ch.status();
    std::abort();
  }
  return *ch;
}

absl::StatusOr<v1::Job> TestCoordinator::CreateJob(const v1::JobSpec& spec,
                                                   const std::string& job_id) {
  v1::CreateJobRequest request;
  *request.mutable_spec() = spec;
  request.set_job_id(job_id);
  v1::Job job;
  grpc::Status s = jobs_->CreateJob(Context().get(), request, &job);
  if (!s.ok()) return StatusFromGrpc(s, "CreateJob");
  return job;
}

absl::StatusOr<v1::Job> TestCoordinator::GetJob(const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  grpc::Status s = jobs_->GetJob(Context().get(), request, &job);
  if (!s.ok()) return StatusFromGrpc(s, "GetJob");
  return job;
}

absl::StatusOr<std::unique_ptr<MemberClient>> TestCoordinator::Join(const std::string& job_id,
                                                                    int node, int local_ranks) {
  MemberOptions options;
  options.job_id = job_id;
  options.node_id = node;
  options.hostname = absl::StrCat("host", node);
  options.local_ranks = local_ranks;
  v1::TransportEndpoint endpoint;
  endpoint.set_backend("ucx");
  endpoint.set_address(absl::StrCat("ucx-address-of-node-", node));
  options.endpoints.push_back(endpoint);
  v1::MemoryKey key;
  key.set_name("arena");
  key.set_backend("ucx");
  key.set_key(absl::StrCat("rkey-", node));
  key.set_size(1 << 20);
  options.memory_keys.push_back(key);
  options.node_service_address = absl::StrCat("127.0.0.1:", 40000 + node);
  options.coordinator_address = address();
  return MemberClient::Join(Channel(), options);
}

absl::StatusOr<v1::Job> TestCoordinator::WaitForState(const std::string& job_id, v1::JobState state,
                                                      absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<v1::Job> job = GetJob(job_id);
    if (!job.ok() || job->state() == state) return job;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("job ", job_id, " is in state ",
                                                      v1::JobState_Name(job->state()),
                                                      ", waited for ", v1::JobState_Name(state)));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

}  // namespace testing
}  // namespace coordinator
}  // namespace tokenrail
