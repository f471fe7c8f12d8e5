#include "tools/bench/ep/ep_flags.h"

#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "tools/bench/plan.h"
#include "tools/bench/report.h"

ABSL_FLAG(std::string, topologies, "1x4,2x2",
          "ep: cluster shapes NODESxRANKS, comma-separated; each runs its own cluster (and the "
          "MPI baseline when single-node).");
ABSL_FLAG(int64_t, tokens, 4096, "ep: tokens per rank.");
ABSL_FLAG(int64_t, hidden, 2048, "ep: hidden size (columns per token).");
ABSL_FLAG(int, experts, 16, "ep: experts (divisible by nodes x ranks per node).");
ABSL_FLAG(int, top_k, 4, "ep: experts per token.");
ABSL_FLAG(int, max_nodes, 2, "ep: M, the most nodes a token reaches (clamped to the nodes).");
ABSL_FLAG(std::string, dtypes, "bf16,fp8_e4m3",
          "ep: dispatch dtypes (fp32, bf16, fp8_e4m3); flat routing uses the first.");
ABSL_FLAG(std::string, combine_dtype, "bf16", "ep: combine dtype on the wire (bf16 or fp32).");
ABSL_FLAG(std::string, skew, "none",
          "ep: load skew on top of random gate logits: none, zipf:S (logit of expert e shifted "
          "by -S ln(1+e)), hot:E:B (expert E's logit +B).");
ABSL_FLAG(std::string, expert_fn, "identity",
          "ep: experts between dispatch and combine: identity or linear (random sparse linear).");
ABSL_FLAG(uint64_t, seed, 1, "ep: seed of the gate logits and the linear experts.");
ABSL_FLAG(uint64_t, ep_iters, 20, "ep: timed iterations per case.");
ABSL_FLAG(uint64_t, ep_warmup, 3, "ep: untimed iterations before them.");
ABSL_FLAG(uint64_t, verify_every, 1,
          "ep: verify every Nth iteration (and the last warm-up and timed ones); 1 = all.");
ABSL_FLAG(int64_t, align, 1, "ep: pad each local expert's rows to a multiple of this.");
ABSL_FLAG(std::string, buffer_bytes, "0",
          "ep: EpConfig.buffer_bytes per rank (K/M/G); 0 = the engine's default.");
ABSL_FLAG(std::string, ep_network, "auto",
          "ep: multi-node clusters on netns (one network namespace per node, needs root), "
          "loopback, or auto (netns when root).");
ABSL_FLAG(std::string, ep_baselines, "mpi,flat,ucx",
          "ep: baselines measured in the same run: mpi (MPI_Alltoallv, single-node "
          "topologies), flat (flat routing, multi-node), ucx (UCX bandwidth, multi-node); "
          "'none' for none.");
ABSL_FLAG(std::string, ucx_sizes, "256K,1M,4M", "ep: message sizes of the UCX measurement.");
ABSL_FLAG(bool, daemon_stats, true,
          "ep: read the daemons' counters (JobService.GetStats) around an extra untimed "
          "iteration (about 5 s per case: heartbeats carry them).");
ABSL_FLAG(std::string, mpirun, "", "ep: the mpirun to use (default: mpirun in PATH).");
ABSL_FLAG(bool, ep_rank_records, false,
          "ep: also print every rank's record (JSON) on stderr, for diagnosis.");
ABSL_FLAG(std::string, ep_arena_bytes, "0",
          "ep: tokenraild --arena_bytes; 0 sizes it from the cases' buffers.");

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

absl::StatusOr<ep::DType> ParseDTypeFlag(absl::string_view text) {
  if (text == "fp8") return ep::DType::kFp8E4M3;
  return ep::ParseDType(text);
}

}  // namespace

absl::StatusOr<EpBenchOptions> EpBenchOptionsFromFlags(bool json, const std::string& params,
                                                       absl::Duration timeout) {
  EpBenchOptions o;
  o.json = json;
  TR_ASSIGN_OR_RETURN(o.topologies, ParseTopologies(absl::GetFlag(FLAGS_topologies)));
  o.tokens = absl::GetFlag(FLAGS_tokens);
  o.hidden = absl::GetFlag(FLAGS_hidden);
  o.experts = absl::GetFlag(FLAGS_experts);
  o.top_k = absl::GetFlag(FLAGS_top_k);
  o.max_nodes = absl::GetFlag(FLAGS_max_nodes);
  o.dtypes.clear();
  for (absl::string_view d : absl::StrSplit(absl::GetFlag(FLAGS_dtypes), ',', absl::SkipEmpty())) {
    absl::StatusOr<ep::DType> dtype = ParseDTypeFlag(d);
    if (!dtype.ok()) return Annotate(dtype.status(), "--dtypes");
    o.dtypes.push_back(*dtype);
  }
  TR_ASSIGN_OR_RETURN(o.combine_dtype, ParseDTypeFlag(absl::GetFlag(FLAGS_combine_dtype)));
  TR_ASSIGN_OR_RETURN(o.skew, ParseSkew(absl::GetFlag(FLAGS_skew)));
  TR_ASSIGN_OR_RETURN(o.expert, ParseExpertKind(absl::GetFlag(FLAGS_expert_fn)));
  o.seed = absl::GetFlag(FLAGS_seed);
  o.iters = absl::GetFlag(FLAGS_ep_iters);
  o.warmup = absl::GetFlag(FLAGS_ep_warmup);
  o.verify_every = absl::GetFlag(FLAGS_verify_every);
  o.align = absl::GetFlag(FLAGS_align);
  TR_ASSIGN_OR_RETURN(o.buffer_bytes, ParseSize(absl::GetFlag(FLAGS_buffer_bytes)));
  const std::string network = absl::GetFlag(FLAGS_ep_network);
  if (network == "auto") {
    o.network = Network::kAuto;
  } else if (network == "netns") {
    o.network = Network::kNetns;
  } else if (network == "loopback") {
    o.network = Network::kLoopback;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--ep_network='", network, "': choose auto, netns or loopback"));
  }
  o.mpi = o.flat = o.ucx = false;
  for (absl::string_view b :
       absl::StrSplit(absl::GetFlag(FLAGS_ep_baselines), ',', absl::SkipEmpty())) {
    if (b == "mpi") {
      o.mpi = true;
    } else if (b == "flat") {
      o.flat = true;
    } else if (b == "ucx") {
      o.ucx = true;
    } else if (b != "none") {
      return absl::InvalidArgumentError(
          absl::StrCat("--ep_baselines: unknown '", b, "' (mpi, flat, ucx or none)"));
    }
  }
  TR_ASSIGN_OR_RETURN(o.ucx_sizes, ParseSizeList(absl::GetFlag(FLAGS_ucx_sizes)));
  o.daemon_stats = absl::GetFlag(FLAGS_daemon_stats);
  o.dump_rank_records = absl::GetFlag(FLAGS_ep_rank_records);
  TR_ASSIGN_OR_RETURN(o.params, ParseParams(params));
  o.mpi_run.mpirun = absl::GetFlag(FLAGS_mpirun);
  TR_ASSIGN_OR_RETURN(o.arena_bytes, ParseSize(absl::GetFlag(FLAGS_ep_arena_bytes)));
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--timeout must be positive");
  }
  o.timeout = timeout;
  o.mpi_run.timeout = timeout * 10;
  return o;
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
