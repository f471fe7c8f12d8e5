// What the ranks of one `tokenrail-bench ep` job run: the workload, the
// cases (implementation, routing, dtypes) and the iteration counts. The
// orchestrator builds one plan per launched job and hands it to every rank
// as one command-line argument, so all ranks agree on every count by
// construction (and check it: a rank whose topology differs fails).
//
// Wire form: "ep-plan:" + hex of a blob sealed with magic "TREP", version 2
// (common/bytes.h). Decode never trusts its input: InvalidArgument naming
// the field for anything malformed or out of range.
//
// Thread safety: value types and pure functions.
#ifndef TOKENRAIL_TOOLS_BENCH_EP_PLAN_H_
#define TOKENRAIL_TOOLS_BENCH_EP_PLAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "runtime/ep/types.h"
#include "tools/bench/ep/workload.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

enum class Impl : uint8_t { kTokenrail = 0, kMpi = 1 };
// EpConfig.routing of the engine: two hops through the rail rank of each
// destination node, or one copy per destination rank straight from the
// source (the gate's routing is node-limited in both).
enum class EngineRouting : uint8_t { kHierarchical = 0, kFlat = 1 };

const char* ImplName(Impl impl);                 // "tokenrail", "mpi"
const char* RoutingName(EngineRouting routing);  // "hier", "flat"

struct CaseSpec {
  std::string name;  // unique in the plan, e.g. "tokenrail/hier/bf16"
  Impl impl = Impl::kTokenrail;
  EngineRouting routing = EngineRouting::kHierarchical;
  ep::DType dispatch_dtype = ep::DType::kBFloat16;  // on the wire
  ep::DType combine_dtype = ep::DType::kBFloat16;   // on the wire
  ep::DType expert_dtype = ep::DType::kBFloat16;    // rows handed to the experts
};

struct EpPlan {
  WorkloadSpec workload;
  std::vector<CaseSpec> cases;
  uint64_t iters = 20;  // timed iterations per case
  uint64_t warmup = 3;  // untimed iterations first
  // Verify iteration i when i % verify_every == 0, and always the last
  // warm-up and the last timed one; 1 verifies every result.
  uint64_t verify_every = 1;
  int64_t align = 1;
  uint64_t buffer_bytes = 0;  // EpConfig.buffer_bytes; 0: the engine's default
  std::string network;        // "loopback", "netns" or "shm" (MPI): for the rows
  // Daemon counters through JobService.GetStats (tokenrail jobs).
  bool daemon_stats = true;
  // The UCX (tls=tcp) bandwidth between node 0 and node 1, measured by the
  // ranks (global) 0 and R with the transport benchmark library, before the
  // engine starts.
  bool ucx = false;
  std::vector<uint64_t> ucx_sizes;
  std::map<std::string, std::string> ucx_params;
  std::vector<std::string> hosts;               // per node: the address the ranks listen on
  absl::Duration timeout = absl::Seconds(120);  // bound on every wait
};

// InvalidArgument naming the field: the workload (Validate), no cases or a
// duplicate name, an MPI case with flat routing, dtypes (combine fp32 or
// bf16; expert dtype equal to the dispatch dtype for fp32 and bf16, fp32 or
// bf16 for fp8), zero iterations, verify_every 0, align < 1, a
// non-positive timeout, ucx without a host per node.
absl::Status Validate(const EpPlan& plan);

// Bytes of one dispatch record on the wire, as runtime/ep/wire.h states the
// format (computed here independently, so the benchmark's byte check does
// not take the engine's word for it): header {int32 token, int32 rank,
// int32 expert[k], float weight[k]}, for FP8 followed by the tile scales
// (4 B per 128 columns), padded to 16; then the payload (hidden x dtype
// size); the whole rounded up to 16.
// e.g. hidden 2048, top-4: BF16 4144 B, FP8 2160 B.
size_t StatedDispatchRecordBytes(int top_k, int64_t hidden, ep::DType dtype);
// One token's payload as DeepEP counts it for algorithm bandwidth: hidden x
// dtype size, plus the FP8 tile scales.
size_t PayloadBytes(int64_t hidden, ep::DType dtype);

std::string EncodePlan(const EpPlan& plan);
absl::StatusOr<EpPlan> DecodePlan(absl::string_view arg);
bool IsPlanArgument(absl::string_view arg);

// The result lines the ranks print on stdout for the orchestrator: the tag,
// then one Record as JSON (Record::ParseTagged, tools/bench/report.h).
// kRowTag: a rank's record of one case (tokenrail ranks and ep_mpi_rank);
// kUcxTag: one of rank 0's UCX bandwidth rows.
inline constexpr char kRowTag[] = "TR_EP_ROW ";
inline constexpr char kUcxTag[] = "TR_EP_UCX ";

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_PLAN_H_
