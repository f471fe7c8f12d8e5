// Client channels to tokenrail services: TLS or plaintext from ClientOptions,
// the bearer token attached to every call, large responses accepted.
//
//   TR_ASSIGN_OR_RETURN(auto channel, rpc::CreateChannel("10.0.0.1:7000", options));
//   auto stub = tokenrail::v1::JobService::NewStub(channel);
//
// Channels connect lazily; a server that cannot be reached shows up as
// UNAVAILABLE on the first call (DescribeCallError turns it into a sentence).
// Thread safety: a channel is shared freely between threads.
#ifndef TOKENRAIL_COMMON_RPC_CLIENT_H_
#define TOKENRAIL_COMMON_RPC_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/rpc/options.h"

namespace tokenrail {
namespace rpc {

// InvalidArgument for an empty target, a bad token, or inconsistent TLS
// options; the file's status (naming it) when a PEM file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(absl::string_view target,
                                                             const ClientOptions& options);

// The absl::Status for a failed call, phrased for an operator:
//   UNAVAILABLE while the channel is not connected ->
//       "cannot reach <what> at <target>: <gRPC message>"
//   UNAUTHENTICATED -> "<what> refused the token: <gRPC message>"
//   anything else   -> "<what> at <target>: <gRPC message>"
// The code is kept. `channel` may be null (then UNAVAILABLE is taken as
// unreachable).
absl::Status DescribeCallError(const grpc::Status& status, absl::string_view what,
                               absl::string_view target, grpc::Channel* channel);

}  // namespace rpc
}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_RPC_CLIENT_H_
