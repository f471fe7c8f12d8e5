#include "tools/launch/control_client.h"

#include <grpcpp/client_context.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/errno_status.h"
#include "common/rpc/client.h"
#include "common/status.h"

namespace tokenrail {
namespace launch {
namespace {

void SetDeadline(grpc::ClientContext* ctx, absl::Time deadline) {
  ctx->set_deadline(absl::ToChronoTime(deadline));
}

}  // namespace

ControlClient::ControlClient(std::string coordinator, rpc::ClientOptions options,
                             std::shared_ptr<grpc::Channel> channel)
    : coordinator_(std::move(coordinator)),
      options_(std::move(options)),
      channel_(std::move(channel)),
      jobs_(v1::JobService::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<ControlClient>> ControlClient::Create(
    const std::string& coordinator, const rpc::ClientOptions& options) {
  TR_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                      rpc::CreateChannel(coordinator, options));
  return std::unique_ptr<ControlClient>(new ControlClient(coordinator, options, channel));
}

absl::StatusOr<v1::Job> ControlClient::CreateJob(const v1::JobSpec& spec, const std::string& job_id,
                                                 absl::Time deadline) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, deadline);
  // The coordinator was just started: wait for it to accept connections
  // rather than failing on the first attempt.
  ctx.set_wait_for_ready(true);
  v1::CreateJobRequest request;
  *request.mutable_spec() = spec;
  request.set_job_id(job_id);
  v1::Job job;
  const grpc::Status s = jobs_->CreateJob(&ctx, request, &job);
  if (!s.ok()) {
    return rpc::DescribeCallError(s, "coordinator (CreateJob)", coordinator_, channel_.get());
  }
  return job;
}

absl::StatusOr<v1::Job> ControlClient::GetJob(const std::string& job_id, absl::Time deadline) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, deadline);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  const grpc::Status s = jobs_->GetJob(&ctx, request, &job);
  if (!s.ok())
    return rpc::DescribeCallError(s, "coordinator (GetJob)", coordinator_, channel_.get());
  return job;
}

absl::StatusOr<v1::NodeStatus> ControlClient::GetNodeStatus(const std::string& node_address,
                                                            absl::Time deadline) {
  TR_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                      rpc::CreateChannel(node_address, options_));
  auto stub = v1::NodeService::NewStub(channel);
  grpc::ClientContext ctx;
  SetDeadline(&ctx, deadline);
  v1::NodeStatus status;
  const grpc::Status s = stub->GetNodeStatus(&ctx, v1::GetNodeStatusRequest(), &status);
  if (!s.ok())
    return rpc::DescribeCallError(s, "daemon (GetNodeStatus)", node_address, channel.get());
  return status;
}

absl::StatusOr<DaemonReady> ParseReadyFile(absl::string_view text) {
  DaemonReady ready;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    line = absl::StripAsciiWhitespace(line);
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("ready file: line '", line, "' is not key=value"));
    }
    const absl::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "node_port" || key == "coordinator_port") {
      int port = 0;
      if (!absl::SimpleAtoi(value, &port) || port < 1 || port > 65535) {
        return absl::InvalidArgumentError(absl::StrCat("ready file: bad ", key, " '", value, "'"));
      }
      (key == "node_port" ? ready.node_port : ready.coordinator_port) = port;
    } else if (key == "socket") {
      ready.socket = std::string(value);
    }
  }
  if (ready.node_port == 0 || ready.socket.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ready file lacks node_port or socket: '", text, "'"));
  }
  return ready;
}

absl::StatusOr<DaemonReady> ReadReadyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("ready file ", path, " not written yet"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<DaemonReady> ready = ParseReadyFile(text.str());
  if (!ready.ok()) return Annotate(ready.status(), path);
  return ready;
}

std::string DescribeJobState(const v1::Job& job) {
  std::string out = v1::JobState_Name(job.state());
  if (job.has_failure()) {
    const v1::FailureInfo& f = job.failure();
    absl::StrAppend(&out, " (");
    if (f.node_id() >= 0) absl::StrAppend(&out, "node ", f.node_id());
    if (f.global_rank() >= 0)
      absl::StrAppend(&out, f.node_id() >= 0 ? ", " : "", "rank ", f.global_rank());
    absl::StrAppend(&out, f.node_id() >= 0 || f.global_rank() >= 0 ? ": " : "", f.reason(), ")");
  }
  return out;
}

}  // namespace launch
}  // namespace tokenrail
