// A tokenrail gRPC server: the given services plus standard health checking
// (grpc.health.v1.Health, reports SERVING until Shutdown) and server
// reflection, on one listening port, with the bearer-token check and TLS of
// ServerOptions (see options.h and credentials.h) and a 4 MiB request limit.
//
//   TR_ASSIGN_OR_RETURN(std::unique_ptr<rpc::Server> server,
//                       rpc::Server::Start(options, {&coordinator, &jobs}));
//   LOG << "serving on port " << server->port();
//
// Ownership: services are borrowed and must outlive the Server (destroy the
// Server, or call Shutdown(), first). Thread safety: port()/address() from any
// thread; Shutdown() is idempotent and thread-safe. Blocking: Shutdown() waits
// up to `grace` for calls in flight, then cancels the rest and returns once
// every handler finished.
#ifndef TOKENRAIL_COMMON_RPC_SERVER_H_
#define TOKENRAIL_COMMON_RPC_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/options.h"

namespace grpc {
class Service;
class CallbackGenericService;
}  // namespace grpc

namespace tokenrail {
namespace rpc {

class Server {
 public:
  // Binds options.listen_address and starts serving. InvalidArgument for a
  // malformed address or bad TLS/token options (naming the file or field);
  // Unavailable when the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services,
      grpc::CallbackGenericService* generic = nullptr);

  ~Server();  // Shutdown(absl::Seconds(1)).
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (the chosen one when listen_address had port 0).
  int port() const { return port_; }
  // "HOST:PORT" with the bound port, for clients and ready files.
  const std::string& address() const { return address_; }
  bool tls() const { return tls_; }

  // Health turns NOT_SERVING, new calls are refused, calls in flight get
  // `grace` to finish and are then cancelled.
  void Shutdown(absl::Duration grace = absl::Seconds(1));

  grpc::Server* grpc_server() const { return server_.get(); }

 private:
  Server(std::unique_ptr<grpc::Server> server, int port, std::string address, bool tls,
         std::string name);

  std::unique_ptr<grpc::Server> server_;
  const int port_;
  const std::string address_;
  const bool tls_;
  const std::string name_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

// Splits "HOST:PORT" / "[V6]:PORT". InvalidArgument naming `text` otherwise.
absl::Status ParseHostPort(absl::string_view text, std::string* host, int* port);

}  // namespace rpc
}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_RPC_SERVER_H_
