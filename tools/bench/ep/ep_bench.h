// `tokenrail-bench ep`: expert-parallel dispatch, combine and the round trip
// on launched clusters, verified against the single-process reference, with
// the baselines measured in the same run.
//
// For every topology N x R asked for (default 1x4 and 2x2):
//   - N == 1: the MPI_Alltoallv baseline (mpi_baseline.h: mpirun -np R on
//     this machine, OpenMPI over shared memory), one case per dtype;
//   - tokenrail cases: hierarchical routing per dtype, and flat routing
//     (EpConfig.routing = kFlat) for the first dtype when N > 1; each on its
//     own launched cluster (tools/launch, in process): N daemons, N x R rank
//     processes (this executable with the plan as argument, ep_rank.h), one
//     network namespace per node when the network is netns (UCX tls=tcp
//     between them). A job per case keeps cases independent (a failing case
//     cannot take the others down, and no message of one case's buffer can
//     reach the next). In the first job of a multi-node topology two ranks
//     measure the UCX put bandwidth between node 0 and node 1 before the
//     engine starts.
// The gate is node-limited with M = min(max_nodes, N) in every case, so all
// cases of a topology move the same tokens.
//
// Output: one row per case (aggregate.h lists every field and how it is
// computed), the UCX rows, then the ratio rows (vs MPI, hierarchical vs
// flat, FP8 vs BF16 bytes, inter-node throughput vs UCX) with the issue's
// targets. JSON lines (--json) or tables.
//
// Thread safety: call from the main thread of a process that has not started
// other threads (it forks mpirun and the launcher's janitor, see
// tools/launch/launcher.h).
#ifndef TOKENRAIL_TOOLS_BENCH_EP_EP_BENCH_H_
#define TOKENRAIL_TOOLS_BENCH_EP_EP_BENCH_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/ep/types.h"
#include "tools/bench/ep/mpi_baseline.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/ep/workload.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

enum class Network { kAuto, kLoopback, kNetns };  // auto: netns when root (N > 1 only)

struct EpBenchOptions {
  std::vector<std::pair<int, int>> topologies = {{1, 4}, {2, 2}};  // (nodes, ranks per node)
  int64_t tokens = 4096;                                           // per rank
  int64_t hidden = 2048;
  int experts = 16;
  int top_k = 4;
  int max_nodes = 2;  // clamped to the topology's node count
  std::vector<ep::DType> dtypes = {ep::DType::kBFloat16, ep::DType::kFp8E4M3};
  ep::DType combine_dtype = ep::DType::kBFloat16;
  Skew skew;
  ExpertKind expert = ExpertKind::kIdentity;
  uint64_t seed = 1;
  uint64_t iters = 20;
  uint64_t warmup = 3;
  uint64_t verify_every = 1;
  int64_t align = 1;
  uint64_t buffer_bytes = 0;  // 0: the engine's default
  Network network = Network::kAuto;
  bool mpi = true;   // the MPI baseline on single-node topologies
  bool flat = true;  // flat routing on multi-node topologies
  bool ucx = true;   // UCX bandwidth on multi-node topologies
  std::vector<uint64_t> ucx_sizes = {256 << 10, 1 << 20, 4 << 20};
  bool daemon_stats = true;
  // Transport params for the daemons and the UCX measurement; tls=tcp (and
  // net_devices=eth0 under netns) are added unless given.
  std::map<std::string, std::string> params;
  uint64_t arena_bytes = 0;  // 0: sized from the cases' buffers
  MpiRunOptions mpi_run;
  absl::Duration timeout = absl::Seconds(120);  // bound on every wait
  bool json = false;
  // Also print every rank's record (JSON) on stderr, for diagnosis.
  bool dump_rank_records = false;
};

// Runs everything, printing rows to `out` as they complete. `self_argv` is
// the rank command without the plan ({exe} or {exe, "ep"}). Returns the
// first failure (a cluster or mpirun that failed: Internal/Unavailable;
// verification: DataLoss) after printing everything that ran.
absl::Status RunEpBench(const EpBenchOptions& options, const std::vector<std::string>& self_argv,
                        std::FILE* out);

// The plans RunEpBench would run for one topology (exposed for tests):
// the MPI plan (no cases when there is none) and the tokenrail plan.
struct TopologyPlans {
  EpPlan mpi;
  EpPlan tokenrail;
  bool has_mpi = false;
  bool netns = false;
};
absl::StatusOr<TopologyPlans> MakeTopologyPlans(const EpBenchOptions& options, int nodes,
                                                int ranks_per_node);

// "1x4,2x2" -> {(1,4),(2,2)}; InvalidArgument naming the item when it is
// malformed, out of range (1..64 each) or repeated.
absl::StatusOr<std::vector<std::pair<int, int>>> ParseTopologies(absl::string_view text);

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_EP_BENCH_H_
