#include "common/rpc/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_interceptor.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rpc/auth.h"
#include "common/rpc/credentials.h"
#include "common/status.h"

namespace tokenrail {
namespace rpc {
namespace {

// Adds "authorization: Bearer <token>" to the initial metadata of each call.
// An interceptor rather than call credentials: gRPC refuses to send call
// credentials over plaintext channels, and plaintext + token is a supported
// configuration (loopback, private networks).
class BearerTokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string* value) : value_(value) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace(kAuthorizationKey, *value_);
    }
    methods->Proceed();
  }

 private:
  const std::string* value_;  // owned by the factory, which outlives calls
};

class BearerTokenInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(absl::string_view token) : value_(BearerValue(token)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerTokenInterceptor(&value_);
  }

 private:
  const std::string value_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(absl::string_view target,
                                                             const ClientOptions& options) {
  if (target.empty()) return absl::InvalidArgumentError("empty server address");
  if (!options.auth_token.empty()) TR_RETURN_IF_ERROR(ValidateToken(options.auth_token));
  TR_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                      MakeChannelCredentials(options));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  args.SetMaxSendMessageSize(-1);
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  // Reconnect quickly after a coordinator restart or a brief outage (the
  // default backoff grows to two minutes).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  if (options.dedicated_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options.auth_token.empty()) {
    interceptors.push_back(std::make_unique<BearerTokenInterceptorFactory>(options.auth_token));
  }
  std::shared_ptr<grpc::Channel> channel = grpc::experimental::CreateCustomChannelWithInterceptors(
      std::string(target), creds, args, std::move(interceptors));
  if (channel == nullptr) {
    return absl::InternalError(absl::StrCat("gRPC could not create a channel to ", target));
  }
  return channel;
}

absl::Status DescribeCallError(const grpc::Status& status, absl::string_view what,
                               absl::string_view target, grpc::Channel* channel) {
  if (status.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  const bool connected =
      channel != nullptr && channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
  if ((status.error_code() == grpc::StatusCode::UNAVAILABLE ||
       status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) &&
      !connected) {
    return absl::Status(
        code, absl::StrCat("cannot reach ", what, " at ", target, ": ", status.error_message()));
  }
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    return absl::Status(code, absl::StrCat(what, " refused the token: ", status.error_message()));
  }
  return absl::Status(code, absl::StrCat(what, " at ", target, ": ", status.error_message()));
}

}  // namespace rpc
}  // namespace tokenrail
