// The launcher's calls into the control plane: JobService on the
// coordinator (create the job, follow its state) and NodeService on a daemon,
// plus the daemons' ready files.
//
// Thread safety: a ControlClient may be shared between threads (gRPC stubs
// are thread-safe). Every call blocks until its deadline at most.
#ifndef TOKENRAIL_TOOLS_LAUNCH_CONTROL_CLIENT_H_
#define TOKENRAIL_TOOLS_LAUNCH_CONTROL_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/rpc/options.h"
#include "proto/tokenrail/v1/job.grpc.pb.h"
#include "proto/tokenrail/v1/node.grpc.pb.h"

namespace tokenrail {
namespace launch {

class ControlClient {
 public:
  static absl::StatusOr<std::unique_ptr<ControlClient>> Create(const std::string& coordinator,
                                                               const rpc::ClientOptions& options);

  const std::string& coordinator() const { return coordinator_; }

  absl::StatusOr<v1::Job> CreateJob(const v1::JobSpec& spec, const std::string& job_id,
                                    absl::Time deadline);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id, absl::Time deadline);
  // NodeService.GetNodeStatus of the daemon at `node_address`.
  absl::StatusOr<v1::NodeStatus> GetNodeStatus(const std::string& node_address,
                                               absl::Time deadline);

 private:
  ControlClient(std::string coordinator, rpc::ClientOptions options,
                std::shared_ptr<grpc::Channel> channel);
  std::string coordinator_;
  rpc::ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
};

// What a daemon's --ready_file says once it serves.
struct DaemonReady {
  int node_port = 0;
  int coordinator_port = 0;  // 0 unless the daemon hosts the coordinator
  std::string socket;
};

// Parses "key=value" lines (node_port, coordinator_port, socket; unknown keys
// are ignored for forward compatibility). InvalidArgument naming the bad line
// or the missing node_port/socket.
absl::StatusOr<DaemonReady> ParseReadyFile(absl::string_view text);
// Reads and parses `path`; NotFound while the daemon has not written it.
absl::StatusOr<DaemonReady> ReadReadyFile(const std::string& path);

// "FAILED (node 1, rank 3: heartbeat timeout after 3000 ms)" and the like.
std::string DescribeJobState(const v1::Job& job);

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_CONTROL_CLIENT_H_
