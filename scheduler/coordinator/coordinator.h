// The tokenrail coordinator: jobs, membership, topology, barriers, heartbeat
// failure detection, events and stats, served as tokenrail.v1.Coordinator
// (daemons) and tokenrail.v1.JobService (schedulers, tokenrailctl).
//
// Standalone or hosted on its own port (what tokenraild --host_coordinator
// does):
//   TR_ASSIGN_OR_RETURN(auto server, CoordinatorServer::Start(options, rpc_options));
//   ... server->port() ...
//   server->Shutdown();
// Hosted on a server the caller owns:
//   TR_ASSIGN_OR_RETURN(auto coordinator, Coordinator::Create(options));
//   rpc::Server::Start(rpc_options, coordinator->services());
//   ... coordinator->Shutdown(); then shut the server down; then destroy the
//   coordinator (its services must outlive the server).
//
// Thread safety: everything is thread-safe. Blocking: only Shutdown() (joins
// the monitor thread; with CoordinatorServer also the server's shutdown).
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_COORDINATOR_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_COORDINATOR_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/options.h"
#include "common/rpc/server.h"
#include "scheduler/coordinator/options.h"
#include "scheduler/coordinator/registry.h"
#include "scheduler/coordinator/services.h"

namespace grpc {
class Service;
}  // namespace grpc

namespace tokenrail {
namespace coordinator {

class Coordinator {
 public:
  // InvalidArgument when `options` fail Validate(). Starts the monitor thread
  // that detects missed heartbeats (it ticks every heartbeat_timeout/10,
  // between 5 and 100 ms).
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(const CoordinatorOptions& options);

  ~Coordinator();  // Shutdown()
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Coordinator and JobService, to register on a server.
  std::vector<grpc::Service*> services() { return {&coordinator_service_, &job_service_}; }

  // Ends every waiting call and stream with UNAVAILABLE ("coordinator is
  // shutting down"), refuses new calls, stops the monitor. Idempotent.
  void Shutdown();

  JobRegistry& registry() { return registry_; }
  const CoordinatorOptions& options() const { return registry_.options(); }

 private:
  explicit Coordinator(const CoordinatorOptions& options);
  void MonitorLoop();

  JobRegistry registry_;
  CoordinatorService coordinator_service_;
  JobServiceImpl job_service_;
  const absl::Duration tick_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread monitor_;
};

// A Coordinator on its own rpc::Server (health, reflection, token, TLS).
class CoordinatorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const CoordinatorOptions& options, const rpc::ServerOptions& server_options);

  ~CoordinatorServer();  // Shutdown()

  int port() const { return server_->port(); }
  const std::string& address() const { return server_->address(); }
  Coordinator& coordinator() { return *coordinator_; }

  // Coordinator first (waiting calls end at once, with a reason), then the
  // server. Idempotent.
  void Shutdown();

 private:
  CoordinatorServer(std::unique_ptr<Coordinator> coordinator, std::unique_ptr<rpc::Server> server)
      : coordinator_(std::move(coordinator)), server_(std::move(server)) {}

  // Destroyed in reverse: the server stops before the services it serves go.
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<rpc::Server> server_;
};

}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_COORDINATOR_H_
