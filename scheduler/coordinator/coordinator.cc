#include "scheduler/coordinator/coordinator.h"

#include <algorithm>
#include <utility>

#include "common/logging.h"
#include "common/status.h"

namespace tokenrail {
namespace coordinator {

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(
    const CoordinatorOptions& options) {
  TR_RETURN_IF_ERROR(options.Validate());
  return std::unique_ptr<Coordinator>(new Coordinator(options));
}

Coordinator::Coordinator(const CoordinatorOptions& options)
    : registry_(options),
      coordinator_service_(&registry_),
      job_service_(&registry_),
      tick_(std::clamp(options.heartbeat_timeout / 10, absl::Milliseconds(5),
                       absl::Milliseconds(100))) {
  monitor_ = std::thread([this] { MonitorLoop(); });
}

Coordinator::~Coordinator() { Shutdown(); }

void Coordinator::MonitorLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), tick_)) return;
    }
    Effects fx;
    registry_.Tick(&fx);
  }
}

void Coordinator::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (monitor_.joinable()) monitor_.join();
  Effects fx;
  registry_.Shutdown(&fx);
  fx.Run();
  TR_VLOG(1, "coordinator") << "coordinator shut down";
}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options, const rpc::ServerOptions& server_options) {
  TR_ASSIGN_OR_RETURN(std::unique_ptr<Coordinator> coordinator, Coordinator::Create(options));
  rpc::ServerOptions named = server_options;
  if (named.name == "rpc") named.name = "coordinator";
  TR_ASSIGN_OR_RETURN(std::unique_ptr<rpc::Server> server,
                      rpc::Server::Start(named, coordinator->services()));
  return std::unique_ptr<CoordinatorServer>(
      new CoordinatorServer(std::move(coordinator), std::move(server)));
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

void CoordinatorServer::Shutdown() {
  coordinator_->Shutdown();
  server_->Shutdown();
}

}  // namespace coordinator
}  // namespace tokenrail
