// `tokenrail-bench info`: what transports this binary has and what they can
// do on this host (like `ucx_info -d`): every registered backend, whether its
// probe succeeds (or why not: "verbs: Unavailable: no RDMA device"), its
// capabilities and devices, and its params with their help text.
//
// Thread safety: reads the registry; no shared state of its own.
#ifndef TOKENRAIL_TOOLS_BENCH_INFO_H_
#define TOKENRAIL_TOOLS_BENCH_INFO_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transport/transport.h"

namespace tokenrail {
namespace bench {

struct BackendInfo {
  std::string name;
  std::string description;
  absl::Status probe;            // OK, or why the backend cannot run here
  transport::Capabilities caps;  // meaningful when probe is OK
  std::vector<std::pair<std::string, std::string>> params_help;
};

// Probes the backends named in `filter` ("" = all, "shm,ucx", "^verbs", as
// for the registry) with `options`. InvalidArgument for unknown names.
absl::StatusOr<std::vector<BackendInfo>> CollectBackendInfo(
    absl::string_view filter, const transport::TransportOptions& options);

// Human-readable report of all backends, ending in '\n'.
std::string FormatInfoText(const std::vector<BackendInfo>& backends);

// One JSON object (one line, no newline) per backend:
// {"backend","description","available","status","intra_node","inter_node",
//  "gpu_memory","native_rma","bandwidth_gbytes","latency_us","max_put_size",
//  "max_message_size","devices":[...],"params":[{"key","help"},...]}
std::string FormatInfoJson(const BackendInfo& backend);

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_INFO_H_
