// Adapter between grpc::Status and absl::Status (same canonical codes).
#ifndef TOKENRAIL_COMMON_GRPC_STATUS_H_
#define TOKENRAIL_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tokenrail {

// "<context>: <grpc message>", code carried over.
absl::Status StatusFromGrpc(const grpc::Status& status, absl::string_view context);

// For service handlers returning an absl::Status to a gRPC client.
grpc::Status GrpcFromStatus(const absl::Status& status);

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_GRPC_STATUS_H_
