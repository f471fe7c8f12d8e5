// The inputs of `tokenrail-bench ep`: what every rank dispatches, derived
// deterministically from a WorkloadSpec and the rank, so that any process
// (a tokenrail rank, an MPI rank, the verifier) can regenerate any rank's
// tokens, routing and expert weights without communication.
//
// Per source rank r (T = tokens, H = hidden, E = experts):
//   x[t][c]        = ep::EncodePayload(r, t, c) (runtime/ep/reference.h): a
//                    nonzero BF16-exact value naming (rank, token, column),
//                    so a misplaced row or column is caught.
//   logits[t][e]   = n(seed, r, t, e) + skew_e, n ~ N(0, 1) from a
//                    counter-based generator (SplitMix64 + Box-Muller).
//   topk_idx/w     = ep::Gate(node-limited, M = max_nodes, sigmoid scores,
//                    route scale 1) of those logits.
// Skew (the load-imbalance knob, on top of the random logits; it shifts the
// probability that an expert is chosen, not the weights' formula):
//   none           skew_e = 0 (uniform load in expectation)
//   zipf:S         skew_e = -S * ln(1 + e): popularity falls like a Zipf law
//                  with exponent S over expert index, expert 0 hottest (and
//                  with contiguous placement, rank 0 / node 0 the busiest)
//   hot:E:B        skew_E = B for the one expert E (B logits, e.g. 3), every
//                  other 0: a "hot expert" that most tokens pick
// The realized imbalance (max over experts of the tokens routed to it,
// divided by the mean) is reported by the benchmark.
//
// Experts (what each rank applies between dispatch and combine):
//   identity       out = x (combine(dispatch(x)) = (sum of weights) * x)
//   linear         out[c] = a_e[c] * x[c] + b_e[c] * x[(c + 1) % H], with
//                  a_e, b_e uniform in [-1, 1) from (seed, e, c): a random
//                  sparse linear map (diagonal plus the cyclic first
//                  super-diagonal), so every output column mixes two input
//                  columns and a shifted column is caught, at two
//                  multiply-adds per value (a dense H x H map would cost more
//                  than the exchange it checks). Computed in float without
//                  FMA contraction, then rounded to the expert output dtype.
//
// Thread safety: value types and pure functions.
#ifndef TOKENRAIL_TOOLS_BENCH_EP_WORKLOAD_H_
#define TOKENRAIL_TOOLS_BENCH_EP_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

struct Skew {
  enum class Kind { kNone, kZipf, kHot };
  Kind kind = Kind::kNone;
  double exponent = 0;  // zipf
  int hot_expert = 0;   // hot
  double boost = 0;     // hot
};

// "none", "zipf:1.2", "hot:3:2.5". InvalidArgument naming the text.
absl::StatusOr<Skew> ParseSkew(absl::string_view text);
std::string FormatSkew(const Skew& skew);

enum class ExpertKind { kIdentity, kLinear };
absl::StatusOr<ExpertKind> ParseExpertKind(absl::string_view text);  // identity | linear
const char* ExpertKindName(ExpertKind kind);

// Everything that determines the inputs and the expected outputs.
struct WorkloadSpec {
  ep::EpTopology topology;
  int64_t tokens = 4096;  // per rank
  int64_t hidden = 2048;
  int top_k = 4;
  int max_nodes = 1;  // M of the gate (<= topology.nodes)
  Skew skew;
  ExpertKind expert = ExpertKind::kIdentity;
  uint64_t seed = 1;
};

// InvalidArgument naming the value: topology/top_k/max_nodes (ep::Validate),
// 0 <= tokens <= 65536 and world size <= 256 (the payload encoding's
// domain), hidden >= 3 (a row must name its origin), the hot expert in range,
// finite skew parameters.
absl::Status Validate(const WorkloadSpec& spec);

// One source rank's routing and payload.
struct RankWorkload {
  int rank = 0;
  int64_t tokens = 0;
  std::vector<int32_t> topk_idx;    // [tokens x top_k]
  std::vector<float> topk_weights;  // [tokens x top_k]
  std::vector<uint16_t> x_bf16;     // [tokens x hidden], when asked for
  std::vector<float> x_f32;         // [tokens x hidden], when asked for
};

enum PayloadForms : int { kNoPayload = 0, kPayloadBf16 = 1, kPayloadF32 = 2 };

// Builds rank `rank`'s workload; `forms` picks which payload copies to fill
// (routing is always filled). The spec must be valid.
absl::StatusOr<RankWorkload> MakeRankWorkload(const WorkloadSpec& spec, int rank, int forms);

// The experts of the workload (all E of them: the verifier applies remote
// experts to compute expected outputs).
class Experts {
 public:
  explicit Experts(const WorkloadSpec& spec);
  // out[c] for one row of global expert `expert`; in and out are float rows
  // of `hidden` values and must not alias.
  void Apply(int expert, const float* in, float* out) const;

 private:
  ExpertKind kind_;
  int64_t hidden_;
  std::vector<float> a_, b_;  // [experts x hidden] (linear only)
};

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_WORKLOAD_H_
