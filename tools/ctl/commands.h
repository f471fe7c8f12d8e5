// The tokenrailctl commands (internal to //tools/ctl). Each prints its
// result to env.out and returns OK, or the error RunCtl prints (exit 1).
#ifndef TOKENRAIL_TOOLS_CTL_COMMANDS_H_
#define TOKENRAIL_TOOLS_CTL_COMMANDS_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "proto/tokenrail/v1/coordinator.grpc.pb.h"
#include "proto/tokenrail/v1/job.grpc.pb.h"
#include "tools/ctl/ctl.h"

namespace tokenrail {
namespace ctl {
namespace internal {

struct Env {
  const CtlOptions& options;
  std::ostream& out;
  std::shared_ptr<grpc::Channel> channel;  // to the coordinator
  std::unique_ptr<v1::JobService::Stub> jobs;
  std::unique_ptr<v1::Coordinator::Stub> coordinator;

  // A context with options.timeout as its deadline.
  std::unique_ptr<grpc::ClientContext> Context() const;
  // A failed coordinator call, phrased for the operator.
  absl::Status CallError(const grpc::Status& status) const;
};

absl::Status Status(Env& env);
absl::Status Jobs(Env& env);
absl::Status Topology(Env& env, const std::string& job_id);
absl::Status Watch(Env& env, const std::string& job_id);
absl::Status Stats(Env& env, const std::string& job_id);
absl::Status Drain(Env& env, int node_id);

}  // namespace internal
}  // namespace ctl
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_CTL_COMMANDS_H_
