#include "runtime/ep/gate.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "runtime/ep/layout.h"

namespace tokenrail {
namespace ep {
namespace {

// The best `capacity` (value, index) pairs, sorted by value descending. The
// caller offers candidates in increasing index order; a candidate must beat
// the current last strictly to enter and moves only ahead of strictly smaller
// values, so among equal values the lower index always ranks first (the
// documented tie rule) without comparing indices.
class TopKSet {
 public:
  TopKSet(float* values, int32_t* indices, int capacity)
      : values_(values), indices_(indices), capacity_(capacity) {}

  void Clear() { size_ = 0; }

  void Offer(float v, int32_t idx) {
    int pos;
    if (size_ == capacity_) {
      if (!(v > values_[capacity_ - 1])) return;
      pos = capacity_ - 1;
    } else {
      pos = size_++;
    }
    while (pos > 0 && values_[pos - 1] < v) {
      values_[pos] = values_[pos - 1];
      indices_[pos] = indices_[pos - 1];
      --pos;
    }
    values_[pos] = v;
    indices_[pos] = idx;
  }

 private:
  float* values_;
  int32_t* indices_;
  int capacity_;
  int size_ = 0;
};

// Finds the first non-finite value of a row (slow path of the check below).
absl::Status NonFiniteError(const float* row, int n, const char* what, int64_t token) {
  for (int e = 0; e < n; ++e) {
    if (!std::isfinite(row[e])) {
      return absl::InvalidArgumentError(absl::StrCat("gate: ", what, " of token ", token,
                                                     " expert ", e, " is ", row[e],
                                                     " (logits must be finite)"));
    }
  }
  return absl::OkStatus();
}

// The scoring and selection kernels are compiled for baseline x86-64, AVX2
// and x86-64-v4 (AVX-512) and picked at load time, as in numeric.cc. The
// clones perform the same IEEE operations in the same order (no FMA: the
// package builds with -ffp-contract=off), so results do not depend on the
// pick.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(TR_EP_NO_SIMD_CLONES)
#define TR_EP_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define TR_EP_SIMD_CLONES
#endif

// Lanes of the fixed-order softmax sum (and of the vector loops).
constexpr int kLanes = 8;

// Order-preserving map of finite floats to int32 (and back), so that max
// reductions vectorize as integer max without NaN/signed-zero caveats.
inline int32_t OrderedInt(float f) {
  int32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b ^ ((b >> 31) & 0x7FFFFFFF);
}
inline float FromOrderedInt(int32_t b) {
  b ^= (b >> 31) & 0x7FFFFFFF;
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

// Computes scores (and biased = scores + bias when bias != nullptr) of one
// token. Returns false, touching nothing, when a logit is not finite.
TR_EP_SIMD_CLONES bool ScoreToken(ScoreFunction fn, const float* __restrict logits,
                                  const float* __restrict bias, int n, float* __restrict scores,
                                  float* __restrict biased) {
  // One integer max over |bits| finds NaN/inf without a branch per element.
  uint32_t abs_max = 0;
  for (int e = 0; e < n; ++e) {
    uint32_t b;
    std::memcpy(&b, &logits[e], sizeof(b));
    abs_max = std::max(abs_max, b & 0x7FFFFFFFu);
  }
  if (abs_max >= 0x7F800000u) return false;

  if (fn == ScoreFunction::kSigmoid) {
    for (int e = 0; e < n; ++e) scores[e] = 1.0f / (1.0f + gate_internal::Exp(-logits[e]));
  } else {
    int32_t m = OrderedInt(logits[0]);
    for (int e = 1; e < n; ++e) m = std::max(m, OrderedInt(logits[e]));
    const float max_logit = FromOrderedInt(m);
    for (int e = 0; e < n; ++e) scores[e] = gate_internal::Exp(logits[e] - max_logit);
    // Fixed order: lane j sums elements j, j + 8, ...; then lanes 0..7 and
    // the tail in order. sum >= 1 (the maximum contributes exp(0)).
    float lane[kLanes] = {};
    int e = 0;
    for (; e + kLanes <= n; e += kLanes) {
      for (int j = 0; j < kLanes; ++j) lane[j] += scores[e + j];
    }
    float sum = 0.0f;
    for (int j = 0; j < kLanes; ++j) sum += lane[j];
    for (; e < n; ++e) sum += scores[e];
    const float inv_sum = 1.0f / sum;
    for (int i = 0; i < n; ++i) scores[i] *= inv_sum;
  }
  if (bias != nullptr) {
    for (int e = 0; e < n; ++e) biased[e] = scores[e] + bias[e];
  }
  return true;
}

// The `top` largest of v[0..n), descending, into best[0..top); returns
// their sum added in that order (the group score). Only values matter, so an
// insertion network (a max/min pair per kept value, no data-dependent
// branch) replaces branchy selection, which mispredicts often on small
// groups. Deeper networks first skip values that cannot enter: that branch
// soon becomes predictable and saves more than it costs. kTop > 0 fixes the
// size at compile time; the pragma unrolls it so b[] lives in registers
// (-O2 does not unroll by itself, and memory round trips triple the cost).
template <int kTop>
float TopValues(const float* __restrict v, int n, int top, float* __restrict best) {
  const int slots = kTop > 0 ? kTop : top;
  float b[kTop > 0 ? kTop : kMaxTopK];
  for (int i = 0; i < slots; ++i) b[i] = -std::numeric_limits<float>::infinity();
  for (int e = 0; e < n; ++e) {
    float x = v[e];
    if (slots > 4 && !(x > b[slots - 1])) continue;
#pragma GCC unroll 16
    for (int i = 0; i < slots; ++i) {
      const float hi = std::max(b[i], x);
      x = std::min(b[i], x);
      b[i] = hi;
    }
  }
  float sum = 0.0f;
  for (int i = 0; i < slots; ++i) {
    best[i] = b[i];
    sum += b[i];
  }
  return sum;
}

// Group scores of one token (step 3): group_score[g] for every group, and
// best[g * top + i] = the i-th best biased score of group g.
void GroupScores(const float* biased, int num_groups, int group_size, int top, float* best,
                 float* group_score) {
  for (int g = 0; g < num_groups; ++g) {
    const float* v = biased + g * group_size;
    float* out = best + g * top;
    switch (top) {
      case 1:
        group_score[g] = TopValues<1>(v, group_size, top, out);
        break;
      case 2:
        group_score[g] = TopValues<2>(v, group_size, top, out);
        break;
      case 3:
        group_score[g] = TopValues<3>(v, group_size, top, out);
        break;
      case 4:
        group_score[g] = TopValues<4>(v, group_size, top, out);
        break;
      default:
        group_score[g] = TopValues<0>(v, group_size, top, out);
        break;
    }
  }
}

// Counting tables below hold this many values; larger inputs (only with
// many nodes, or many equal scores) take a sort-based path.
constexpr int kMaxCounted = 32;

// The k-th largest of v[0..n) (1 <= k <= n): the largest value that at
// least k values reach. For small n it is counted without branches, all j
// at once (the inner loop runs over j, so it vectorizes and needs no
// horizontal sums); std::nth_element's branches cost several times more at
// these sizes, so it only serves large n (many kept nodes), reordering v.
TR_EP_SIMD_CLONES float KthLargest(float* __restrict v, int n, int k) {
  if (n > kMaxCounted) {
    std::nth_element(v, v + (k - 1), v + n, std::greater<float>());
    return v[k - 1];
  }
  // Blocks of 8 j's: the inner loop is one vector compare-and-add and the
  // counts stay in a register across i. Padding never counts (i < n).
  alignas(32) float padded[kMaxCounted];
  for (int j = 0; j < kMaxCounted; ++j) {
    padded[j] = j < n ? v[j] : -std::numeric_limits<float>::infinity();
  }
  // Selected as an integer max (padding is -inf and never wins).
  const int32_t none = OrderedInt(-std::numeric_limits<float>::infinity());
  int32_t kth = none;
  for (int jb = 0; jb < n; jb += kLanes) {
    int32_t reach[kLanes] = {};
    for (int i = 0; i < n; ++i) {
      const float vi = v[i];
      for (int l = 0; l < kLanes; ++l) reach[l] += vi >= padded[jb + l];
    }
    for (int l = 0; l < kLanes; ++l) {
      kth = std::max(kth, reach[l] >= k ? OrderedInt(padded[jb + l]) : none);
    }
  }
  return FromOrderedInt(kth);
}

// A threshold for unrestricted top-k over v[0..n): L lanes keep the max of
// the elements j, j + L, ... (a loop the compiler vectorizes); the lanes'
// maxima belong to distinct experts, so the k-th largest of them is <= the
// k-th largest overall. L = 8 for k <= 4 (fewer values to rank), else 16
// (a tighter threshold). -inf when n < L (every expert is a candidate).
template <int kL>
float LaneMaxThreshold(const float* __restrict v, int n, int k) {
  if (n < kL) return -std::numeric_limits<float>::infinity();
  float lane_max[kL];
  for (int j = 0; j < kL; ++j) lane_max[j] = v[j];
  int e = kL;
  for (; e + kL <= n; e += kL) {
    for (int j = 0; j < kL; ++j) lane_max[j] = std::max(lane_max[j], v[e + j]);
  }
  for (int j = 0; e < n; ++e, ++j) lane_max[j] = std::max(lane_max[j], v[e]);
  return KthLargest(lane_max, kL, k);
}

TR_EP_SIMD_CLONES float FlatThreshold(const float* __restrict v, int n, int k) {
  static_assert(2 * kLanes >= kMaxTopK, "every lane maximum is a distinct expert");
  return 2 * k <= kLanes ? LaneMaxThreshold<kLanes>(v, n, k)
                         : LaneMaxThreshold<2 * kLanes>(v, n, k);
}

// Writes the best k of n candidates (values val, ids id ascending, n >= k)
// to out[0..k), best first, lower id first among equal values. A
// candidate's slot is the number of candidates that beat it (value greater,
// or equal with a lower id), counted for all candidates at once without
// branches. More than kMaxCounted candidates happen only with many equal
// scores, where TopKSet's early exit is cheap.
TR_EP_SIMD_CLONES void SelectTopK(const float* __restrict val, const int32_t* __restrict id, int n,
                                  int k, float* __restrict scratch, int32_t* __restrict out) {
  if (n > kMaxCounted) {
    TopKSet best(scratch, out, k);
    for (int i = 0; i < n; ++i) best.Offer(val[i], id[i]);
    return;
  }
  // As in KthLargest: blocks of 8 candidates j counted in a register.
  alignas(32) int32_t ordered[kMaxCounted];
  for (int i = 0; i < kMaxCounted; ++i) {
    ordered[i] = i < n ? OrderedInt(val[i]) : std::numeric_limits<int32_t>::min();
  }
  int32_t beaten_by[kMaxCounted];
  for (int jb = 0; jb < n; jb += kLanes) {
    int32_t count[kLanes] = {};
    for (int i = 0; i < n; ++i) {
      const int32_t oi = ordered[i];
      for (int l = 0; l < kLanes; ++l) {
        const int32_t oj = ordered[jb + l];
        count[l] += (oi > oj) | ((oi == oj) & (i < jb + l));
      }
    }
    for (int l = 0; l < kLanes; ++l) beaten_by[jb + l] = count[l];
  }
  int32_t slot_of[kMaxTopK + 1];
  for (int j = 0; j < n; ++j) slot_of[std::min(beaten_by[j], k)] = id[j];  // k: the losers
  std::copy(slot_of, slot_of + k, out);
}

}  // namespace

absl::Status Gate(const EpTopology& topology, const GateOptions& options, int64_t num_tokens,
                  absl::Span<const float> logits, absl::Span<const float> bias,
                  absl::Span<int32_t> topk_idx, absl::Span<float> topk_weights) {
  const bool flat = options.routing == Routing::kFlat;
  const int max_nodes = flat ? topology.nodes : options.max_nodes;
  TR_RETURN_IF_ERROR(Annotate(Validate(topology, options.top_k, max_nodes), "gate"));
  const int k = options.top_k;
  const int num_experts = topology.experts;
  if (num_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("gate: num_tokens=", num_tokens, " < 0"));
  }
  const auto expect_size = [&](size_t got, int64_t per_token, const char* what) {
    const int64_t want = num_tokens * per_token;
    return got == static_cast<size_t>(want)
               ? absl::OkStatus()
               : absl::InvalidArgumentError(absl::StrCat("gate: ", what, " has ", got,
                                                         " elements, expected ", want, " (",
                                                         num_tokens, " tokens x ", per_token, ")"));
  };
  TR_RETURN_IF_ERROR(expect_size(logits.size(), num_experts, "logits"));
  TR_RETURN_IF_ERROR(expect_size(topk_idx.size(), k, "topk_idx"));
  TR_RETURN_IF_ERROR(expect_size(topk_weights.size(), k, "topk_weights"));
  if (!bias.empty()) {
    if (bias.size() != static_cast<size_t>(num_experts)) {
      return absl::InvalidArgumentError(absl::StrCat("gate: bias has ", bias.size(),
                                                     " elements, expected experts=", num_experts));
    }
    for (int e = 0; e < num_experts; ++e) {
      if (!std::isfinite(bias[e])) {
        return absl::InvalidArgumentError(
            absl::StrCat("gate: bias of expert ", e, " is ", bias[e], " (must be finite)"));
      }
    }
  }
  if (!std::isfinite(options.route_scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gate: route_scale=", options.route_scale, " is not finite"));
  }

  // Groups matter only when they can exclude something.
  const bool limited = max_nodes < topology.nodes;
  const int num_groups = topology.nodes;
  const int group_size = topology.experts_per_node();
  const int group_top = GroupScoreTopCount(k, max_nodes);

  // Per-call scratch; nothing below allocates.
  std::vector<float> scores(num_experts);
  std::vector<float> biased_storage(bias.empty() ? 0 : num_experts);
  std::vector<float> group_best(limited ? group_top * num_groups : 0);
  std::vector<float> group_score(limited ? num_groups : 0);
  std::vector<float> group_values(limited ? max_nodes : 0);
  std::vector<int32_t> group_indices(limited ? max_nodes : 0);
  std::vector<float> threshold_pool(limited ? max_nodes * group_top : 0);
  std::vector<float> cand_values(num_experts + 1);
  std::vector<int32_t> cand_ids(num_experts + 1);
  float top_values[kMaxTopK];
  TopKSet groups(group_values.data(), group_indices.data(), max_nodes);

  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* row = logits.data() + t * num_experts;
    if (!ScoreToken(options.score_function, row, bias.empty() ? nullptr : bias.data(), num_experts,
                    scores.data(), biased_storage.data())) {
      return NonFiniteError(row, num_experts, "logit", t);
    }
    const float* biased = bias.empty() ? scores.data() : biased_storage.data();

    // Selection runs in two steps. First a threshold tau no larger than the
    // k-th best eligible score; then the eligible experts scoring >= tau,
    // gathered in increasing index order without branches, are ranked. An
    // expert below tau trails at least k others, so this is exact, ties
    // included, and the candidates are few (about k). Eligible experts are
    // all experts (flat) or those of the kept groups. (Ranking all of 16-32
    // eligible experts directly measured slower than this.)
    int num_candidates = 0;
    const auto gather = [&](int first, int count, float tau) {
      for (int e = first; e < first + count; ++e) {
        cand_values[num_candidates] = biased[e];
        cand_ids[num_candidates] = e;
        num_candidates += biased[e] >= tau;
      }
    };
    if (!limited) {
      gather(0, num_experts, FlatThreshold(biased, num_experts, k));
    } else {
      GroupScores(biased, num_groups, group_size, group_top, group_best.data(), group_score.data());
      groups.Clear();
      for (int g = 0; g < num_groups; ++g) groups.Offer(group_score[g], g);
      std::sort(group_indices.begin(), group_indices.end());
      // tau: the k-th largest of the kept groups' best values, which belong
      // to max_nodes * group_top >= k distinct eligible experts.
      int pool = 0;
      for (int32_t g : group_indices) {
        for (int i = 0; i < group_top; ++i) {
          threshold_pool[pool++] = group_best[g * group_top + i];
        }
      }
      const float tau = KthLargest(threshold_pool.data(), pool, k);
      for (int32_t g : group_indices) gather(g * group_size, group_size, tau);
    }
    int32_t* idx_out = topk_idx.data() + t * k;
    SelectTopK(cand_values.data(), cand_ids.data(), num_candidates, k, top_values, idx_out);

    float* w_out = topk_weights.data() + t * k;
    float sum = 0.0f;
    for (int j = 0; j < k; ++j) {
      w_out[j] = scores[idx_out[j]];
      sum += w_out[j];
    }
    if (sum > 0.0f) {
      for (int j = 0; j < k; ++j) w_out[j] = w_out[j] / sum * options.route_scale;
    } else {
      for (int j = 0; j < k; ++j) w_out[j] = options.route_scale / static_cast<float>(k);
    }
  }
  return absl::OkStatus();
}

absl::Status GateScores(ScoreFunction score_function, absl::Span<const float> logits,
                        absl::Span<float> scores) {
  if (logits.empty() || logits.size() != scores.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("GateScores: ", logits.size(), " logits for ", scores.size(), " scores"));
  }
  const int n = static_cast<int>(logits.size());
  if (!ScoreToken(score_function, logits.data(), nullptr, n, scores.data(), nullptr)) {
    return NonFiniteError(logits.data(), n, "logit", 0);
  }
  return absl::OkStatus();
}

absl::Status NodesPerToken(const EpTopology& topology, int top_k,
                           absl::Span<const int32_t> topk_idx,
                           absl::Span<int32_t> nodes_per_token) {
  const int64_t num_tokens = static_cast<int64_t>(nodes_per_token.size());
  TR_RETURN_IF_ERROR(ValidateTopkIdx(topology, top_k, num_tokens, topk_idx));
  for (int64_t t = 0; t < num_tokens; ++t) {
    int nodes[kMaxTopK];
    int count = 0;
    for (int j = 0; j < top_k; ++j) {
      const int32_t e = topk_idx[t * top_k + j];
      if (e < 0) continue;
      const int node = topology.node_of_expert(e);
      if (std::find(nodes, nodes + count, node) == nodes + count) nodes[count++] = node;
    }
    nodes_per_token[t] = count;
  }
  return absl::OkStatus();
}

absl::Status UpdateExpertBias(absl::Span<const int64_t> expert_load, float gamma,
                              absl::Span<float> bias) {
  if (expert_load.size() != bias.size()) {
    return absl::InvalidArgumentError(absl::StrCat("UpdateExpertBias: ", expert_load.size(),
                                                   " loads for ", bias.size(), " biases"));
  }
  if (!(gamma >= 0.0f) || !std::isfinite(gamma)) {
    return absl::InvalidArgumentError(
        absl::StrCat("UpdateExpertBias: gamma=", gamma, " must be finite and >= 0"));
  }
  absl::int128 total = 0;
  for (size_t e = 0; e < expert_load.size(); ++e) {
    if (expert_load[e] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("UpdateExpertBias: load of expert ", e, " is ", expert_load[e], " < 0"));
    }
    total += expert_load[e];
  }
  // sign(mean - load_e) == sign(total - load_e * E), exactly.
  const absl::int128 n = static_cast<int64_t>(expert_load.size());
  for (size_t e = 0; e < expert_load.size(); ++e) {
    const absl::int128 scaled = absl::int128(expert_load[e]) * n;
    if (scaled < total) {
      bias[e] += gamma;
    } else if (scaled > total) {
      bias[e] -= gamma;
    }
  }
  return absl::OkStatus();
}

}  // namespace ep
}  // namespace tokenrail
