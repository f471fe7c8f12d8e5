// NodeService (node.proto) of one tokenraild: status and drain.
// Thread safety: gRPC calls the handlers concurrently; Daemon is thread-safe.
#ifndef TOKENRAIL_RUNTIME_DAEMON_NODE_SERVICE_H_
#define TOKENRAIL_RUNTIME_DAEMON_NODE_SERVICE_H_

#include "proto/tokenrail/v1/node.grpc.pb.h"

namespace tokenrail {
namespace runtime {

class Daemon;

class NodeServiceImpl final : public v1::NodeService::Service {
 public:
  explicit NodeServiceImpl(Daemon* daemon) : daemon_(daemon) {}

  grpc::Status GetNodeStatus(grpc::ServerContext* ctx, const v1::GetNodeStatusRequest* req,
                             v1::NodeStatus* resp) override;
  // Starts the drain and answers at once with the work in flight; the
  // daemon leaves the job and exits when the drain is over.
  grpc::Status Drain(grpc::ServerContext* ctx, const v1::DrainRequest* req,
                     v1::DrainResponse* resp) override;

 private:
  Daemon* const daemon_;
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_DAEMON_NODE_SERVICE_H_
