// Command-line flags of `tokenrail-bench ep` (linked into tokenrail-bench).
// The CLI's shared flags (--json, --params, --timeout)
// are read by the CLI and passed in; the names here do not collide with the
// other subcommands' (iterations are --ep_iters / --ep_warmup because
// --iters / --warmup default to transport-benchmark counts).
//
//   --topologies=1x4,2x2   --tokens=4096 --hidden=2048 --experts=16 --top_k=4
//   --max_nodes=2 (M, clamped to each topology's nodes)
//   --dtypes=bf16,fp8_e4m3 (fp32, bf16, fp8_e4m3 or fp8) --combine_dtype=bf16
//   --skew=none|zipf:S|hot:E:B   --expert_fn=identity|linear   --seed=1
//   --ep_iters=20 --ep_warmup=3 --verify_every=1 --align=1 --buffer_bytes=0
//   --ep_network=auto|netns|loopback   --ep_baselines=mpi,flat,ucx
//   --ucx_sizes=256K,1M,4M   --daemon_stats=true   --mpirun=PATH
//   --ep_arena_bytes=0   --ep_rank_records (every rank's record on stderr)
#ifndef TOKENRAIL_TOOLS_BENCH_EP_EP_FLAGS_H_
#define TOKENRAIL_TOOLS_BENCH_EP_EP_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/bench/ep/ep_bench.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

// InvalidArgument naming the flag and value.
absl::StatusOr<EpBenchOptions> EpBenchOptionsFromFlags(bool json, const std::string& params,
                                                       absl::Duration timeout);

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_EP_FLAGS_H_
