#include "common/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace tokenrail {

absl::Status StatusFromGrpc(const grpc::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  // Both enums use the canonical gRPC code numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(context, ": ", status.error_message()));
}

grpc::Status GrpcFromStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace tokenrail
