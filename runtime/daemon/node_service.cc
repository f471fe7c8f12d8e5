#include "runtime/daemon/node_service.h"

#include "absl/strings/str_cat.h"
#include "runtime/daemon/daemon.h"

namespace tokenrail {
namespace runtime {
namespace {
// Bounds a drain's wait for in-flight work (the DrainRequest default is 10 s).
constexpr int64_t kMaxDrainTimeoutMs = 10 * 60 * 1000;
constexpr int64_t kDefaultDrainTimeoutMs = 10'000;
constexpr size_t kMaxReasonBytes = 1024;
}  // namespace

grpc::Status NodeServiceImpl::GetNodeStatus(grpc::ServerContext*, const v1::GetNodeStatusRequest*,
                                            v1::NodeStatus* resp) {
  *resp = daemon_->Status();
  return grpc::Status::OK;
}

grpc::Status NodeServiceImpl::Drain(grpc::ServerContext*, const v1::DrainRequest* req,
                                    v1::DrainResponse* resp) {
  if (req->timeout_ms() < 0 || req->timeout_ms() > kMaxDrainTimeoutMs) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("timeout_ms ", req->timeout_ms(), " is outside 0..", kMaxDrainTimeoutMs));
  }
  if (req->reason().size() > kMaxReasonBytes) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("reason has ", req->reason().size(), " bytes, more than ", kMaxReasonBytes));
  }
  const int64_t ms = req->timeout_ms() == 0 ? kDefaultDrainTimeoutMs : req->timeout_ms();
  const std::string reason =
      req->reason().empty() ? std::string("NodeService.Drain") : req->reason();
  resp->set_in_flight(daemon_->RequestDrain(reason, absl::Milliseconds(ms)));
  return grpc::Status::OK;
}

}  // namespace runtime
}  // namespace tokenrail
