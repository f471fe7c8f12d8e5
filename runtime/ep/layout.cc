#include "runtime/ep/layout.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tokenrail {
namespace ep {

absl::Status ValidateTopkIdx(const EpTopology& topology, int top_k, int64_t num_tokens,
                             absl::Span<const int32_t> topk_idx) {
  TR_RETURN_IF_ERROR(Validate(topology));
  if (top_k < 1 || top_k > kMaxTopK || top_k > topology.experts) {
    return absl::InvalidArgumentError(absl::StrCat("top_k=", top_k, " must be in [1, min(",
                                                   kMaxTopK, ", experts=", topology.experts, ")]"));
  }
  if (num_tokens < 0 || topk_idx.size() != static_cast<size_t>(num_tokens * top_k)) {
    return absl::InvalidArgumentError(absl::StrCat("topk_idx has ", topk_idx.size(),
                                                   " entries, expected num_tokens=", num_tokens,
                                                   " x top_k=", top_k));
  }
  const int32_t num_experts = topology.experts;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int32_t* row = topk_idx.data() + t * top_k;
    for (int j = 0; j < top_k; ++j) {
      const int32_t e = row[j];
      if (e < -1 || e >= num_experts) {
        return absl::InvalidArgumentError(absl::StrCat("topk_idx: token ", t, " slot ", j,
                                                       " holds expert ", e, ", outside [-1, ",
                                                       num_experts, ")"));
      }
      if (e < 0) continue;
      for (int i = 0; i < j; ++i) {
        if (row[i] == e) {
          return absl::InvalidArgumentError(absl::StrCat("topk_idx: token ", t, " slot ", j,
                                                         " holds expert ", e,
                                                         ", already chosen in slot ", i));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ComputeLayout(const EpTopology& topology, int top_k, int64_t num_tokens,
                           absl::Span<const int32_t> topk_idx, Layout* layout) {
  TR_RETURN_IF_ERROR(ValidateTopkIdx(topology, top_k, num_tokens, topk_idx));
  const int world = topology.world_size();
  const int nodes = topology.nodes;
  const int experts_per_rank = topology.experts_per_rank();
  const int ranks_per_node = topology.ranks_per_node;

  Layout& l = *layout;
  l.num_tokens = num_tokens;
  l.world_size = world;
  l.nodes = nodes;
  l.tokens_per_rank.assign(world, 0);
  l.tokens_per_node.assign(nodes, 0);
  l.tokens_per_expert.assign(topology.experts, 0);
  l.token_in_rank.assign(num_tokens * world, -1);
  l.token_in_node.assign(num_tokens * nodes, -1);

  int32_t* per_rank = l.tokens_per_rank.data();
  int32_t* per_node = l.tokens_per_node.data();
  int32_t* per_expert = l.tokens_per_expert.data();
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int32_t* row = topk_idx.data() + t * top_k;
    int32_t* rank_slots = l.token_in_rank.data() + t * world;
    int32_t* node_slots = l.token_in_node.data() + t * nodes;
    for (int j = 0; j < top_k; ++j) {
      const int32_t e = row[j];
      if (e < 0) continue;
      ++per_expert[e];
      const int rank = e / experts_per_rank;
      const int node = rank / ranks_per_node;
      // The first expert of a token on a rank (node) takes the next slot.
      if (rank_slots[rank] < 0) rank_slots[rank] = per_rank[rank]++;
      if (node_slots[node] < 0) node_slots[node] = per_node[node]++;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Layout> ComputeLayout(const EpTopology& topology, int top_k, int64_t num_tokens,
                                     absl::Span<const int32_t> topk_idx) {
  Layout layout;
  TR_RETURN_IF_ERROR(ComputeLayout(topology, top_k, num_tokens, topk_idx, &layout));
  return layout;
}

}  // namespace ep
}  // namespace tokenrail
