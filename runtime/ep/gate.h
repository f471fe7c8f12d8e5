// The MoE router: DeepSeek-V3's node-limited (group-limited) top-k gate, an
// unrestricted ("flat") top-k for comparison, and the bias update of
// auxiliary-loss-free load balancing.
//
// Node-limited routing, per token (groups are the N nodes of the topology;
// group g holds experts [g * E/N, (g + 1) * E/N), see types.h):
//   1. score_e  = sigmoid(logit_e), or softmax over the E logits.
//   2. biased_e = score_e + bias_e (bias optional). The bias only steers
//      selection; it never enters the weights.
//   3. group score = sum of the group's best s biased scores, s =
//      ceil(top_k / max_nodes), summed in descending order. (DeepSeek-V3 uses
//      s = 2 with top_k = 8 over M = 4 groups, i.e. top_k / M. Rounding up when
//      top_k is not divisible by M credits each group with the share the best
//      groups would have to supply; validation guarantees s <= E/N.)
//   4. keep the best M = max_nodes groups; everything else is masked.
//   5. top_k experts by biased score among the kept groups.
//   6. weight_j = score of the chosen expert (unbiased) / sum of the chosen
//      scores, times route_scale. Both score functions normalize (DeepSeek-V3's
//      reference normalizes only the sigmoid case; here softmax weights are
//      renormalized over the chosen experts too). Weights are computed as
//      (score_j / sum) * route_scale, the sum taken in slot order. (Scores
//      are > 0 thanks to the clamped exp; were the sum 0, each weight would
//      be route_scale / top_k.)
// Flat routing is step 5 over all experts (steps 3-4 skipped); node-limited
// routing with max_nodes == nodes gives the same result.
//
// Ordering and ties (deterministic): candidates compare by biased score,
// higher first; equal scores rank the lower index first. The same rule
// selects groups (by group score, lower group index wins) and experts (lower
// expert index wins). Output slot j of a token holds its j-th best expert, so
// topk_idx rows are sorted by descending biased score.
//
// Arithmetic: float throughout. exp is gate_internal::Exp below (relative
// error below 2^-22, tested), its argument clamped to [-87, 88]: that changes
// only sigmoid scores below 6.1e-39 and softmax scores below 1.6e-38. The
// softmax sum adds in a fixed lane order. Results are bitwise reproducible
// for a given build and independent of the instruction set picked at run
// time.
//
// Thread safety: pure functions of their arguments; callers may run several
// in parallel on disjoint token ranges (each token's result depends only on
// its own logits). Gate allocates O(E) scratch per call, never per token.
//
// Cost, one core of the AMD EPYC (AVX-512) development VM, 4096 tokens:
// 0.44 ms at 16 experts / top-4, 0.65 ms at 64 / top-4, 2.0 ms at 256 /
// top-8 / M = 4 (DeepSeek-V3's routing shape). The selection is branch-light:
// a threshold, a branch-free gather of the few experts above it, ranking by
// counting.
#ifndef TOKENRAIL_RUNTIME_EP_GATE_H_
#define TOKENRAIL_RUNTIME_EP_GATE_H_

#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace ep {

enum class ScoreFunction { kSigmoid, kSoftmax };
enum class Routing { kNodeLimited, kFlat };

struct GateOptions {
  int top_k = 8;
  // M: the most nodes a token may reach. Ignored (treated as `nodes`) for
  // Routing::kFlat.
  int max_nodes = 1;
  Routing routing = Routing::kNodeLimited;
  ScoreFunction score_function = ScoreFunction::kSigmoid;
  float route_scale = 1.0f;
};

namespace gate_internal {

// exp(x) for x clamped to [-87, 88] (so the result stays a normal float):
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and a degree-6
// polynomial for e^r (Cephes expf coefficients). Branch-free, so loops over
// it vectorize; relative error below 2^-22 (tested against double exp).
inline float Exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round-to-nearest-even(x * log2(e)): adding 1.5 * 2^23 and taking
  // the difference is exact for |x * log2(e)| < 2^22.
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2^n by building the exponent field; n is in [-126, 127].
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

}  // namespace gate_internal

// s of step 3: ceil(top_k / max_nodes).
inline int GroupScoreTopCount(int top_k, int max_nodes) {
  return (top_k + max_nodes - 1) / max_nodes;
}

// Routes `num_tokens` tokens.
//   logits        [num_tokens x E] row-major
//   bias          [E], or empty for none
//   topk_idx      [num_tokens x top_k] out: global expert ids, best first
//   topk_weights  [num_tokens x top_k] out
// InvalidArgument for an invalid topology/options combination (see
// Validate in types.h), a span of the wrong size, a non-finite logit or bias
// (naming token and expert), or a non-finite route_scale.
absl::Status Gate(const EpTopology& topology, const GateOptions& options, int64_t num_tokens,
                  absl::Span<const float> logits, absl::Span<const float> bias,
                  absl::Span<int32_t> topk_idx, absl::Span<float> topk_weights);

// Step 1 alone, for one token: scores[e] exactly as Gate computes them (the
// trainer's backward pass and tests use it). InvalidArgument when the sizes
// differ, are 0, or a logit is not finite.
absl::Status GateScores(ScoreFunction score_function, absl::Span<const float> logits,
                        absl::Span<float> scores);

// For each token, the number of distinct nodes its experts live on (-1 slots
// are skipped, so a token with no expert has 0). topk_idx is [num_tokens x
// top_k]; nodes_per_token has num_tokens entries. InvalidArgument for an
// index outside [-1, E) (naming token, slot and value) or bad sizes.
absl::Status NodesPerToken(const EpTopology& topology, int top_k,
                           absl::Span<const int32_t> topk_idx, absl::Span<int32_t> nodes_per_token);

// Auxiliary-loss-free load balancing (DeepSeek-V3, section 2.1.2): after a
// step, bias_e += gamma * sign(mean_load - load_e), where load_e counts the
// tokens routed to expert e and sign(0) = 0. Overloaded experts lose bias,
// underloaded ones gain. The comparison with the mean is exact (integer
// arithmetic). InvalidArgument for mismatched sizes, a negative load, or a
// gamma that is negative or not finite.
absl::Status UpdateExpertBias(absl::Span<const int64_t> expert_load, float gamma,
                              absl::Span<float> bias);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_GATE_H_
