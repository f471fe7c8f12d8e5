#include "common/rpc/server.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/rpc/credentials.h"
#include "common/status.h"

namespace tokenrail {
namespace rpc {
namespace {

// Both switches are process-wide and must be set before the first server is
// built; neither is thread-safe, hence once.
void EnableHealthAndReflection() {
  static std::once_flag once;
  std::call_once(once, [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  });
}

}  // namespace

absl::Status ParseHostPort(absl::string_view text, std::string* host, int* port) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", text, "' is not HOST:PORT (e.g. 127.0.0.1:0)"));
  }
  absl::string_view h = text.substr(0, colon);
  if (h.front() == '[') {
    if (h.size() < 3 || h.back() != ']') {
      return absl::InvalidArgumentError(
          absl::StrCat("address '", text, "': an IPv6 host must be written [ADDR]:PORT"));
    }
  } else if (h.find(':') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", text, "': write an IPv6 host as [ADDR]:PORT"));
  }
  int p = -1;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &p) || p < 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address '", text, "': port '", text.substr(colon + 1), "' is not a number in 0..65535"));
  }
  if (host != nullptr) *host = std::string(h);
  if (port != nullptr) *port = p;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      const std::vector<grpc::Service*>& services,
                                                      grpc::CallbackGenericService* generic) {
  std::string host;
  int requested_port = 0;
  TR_RETURN_IF_ERROR(ParseHostPort(options.listen_address, &host, &requested_port));
  if (options.max_receive_message_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_receive_message_bytes=", options.max_receive_message_bytes, " must be positive"));
  }
  TR_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds,
                      MakeServerCredentials(options));
  const bool tls = !options.tls_cert_file.empty();

  EnableHealthAndReflection();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(options.listen_address, creds, &bound_port);
  // gRPC sets SO_REUSEPORT by default: a second server on a busy port would
  // silently share (and split) its traffic instead of failing to bind.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // Responses are bounded by what each service builds, not by a blanket cap.
  builder.SetMaxSendMessageSize(-1);
  for (grpc::Service* service : services) {
    if (service == nullptr) return absl::InvalidArgumentError("null service");
    builder.RegisterService(service);
  }
  if (generic != nullptr) builder.RegisterCallbackGenericService(generic);

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    if (server != nullptr) server->Shutdown();
    return absl::UnavailableError(absl::StrCat(
        options.name, ": cannot listen on ", options.listen_address,
        tls ? " with TLS (address in use or not local, or the TLS key does not match the "
              "certificate)"
            : " (address in use, not a local address, or permission denied)"));
  }
  if (grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService()) {
    health->SetServingStatus(true);
  }
  std::string address = absl::StrCat(host, ":", bound_port);
  TR_LOG(INFO, "rpc") << options.name << ": serving on " << address
                      << (tls ? " (TLS" : " (plaintext")
                      << (options.auth_token.empty() ? ", no auth token)" : ", bearer token)");
  return std::unique_ptr<Server>(
      new Server(std::move(server), bound_port, std::move(address), tls, options.name));
}

Server::Server(std::unique_ptr<grpc::Server> server, int port, std::string address, bool tls,
               std::string name)
    : server_(std::move(server)),
      port_(port),
      address_(std::move(address)),
      tls_(tls),
      name_(std::move(name)) {}

Server::~Server() { Shutdown(absl::Seconds(1)); }

void Server::Shutdown(absl::Duration grace) {
  // Held throughout, so a concurrent caller returns only once shut down.
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->Shutdown();
  }
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(std::max(grace, absl::ZeroDuration())));
  server_->Wait();
  TR_VLOG(1, "rpc") << name_ << ": stopped serving on " << address_;
}

}  // namespace rpc
}  // namespace tokenrail
