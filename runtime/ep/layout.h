// Dispatch layout of one source rank: where each of its tokens goes.
//
// Input is the gate's topk_idx [num_tokens x top_k] (global expert ids, -1 =
// no expert in that slot; -1 slots are skipped everywhere). A token is
// counted once per destination rank even when several of its experts live
// there (dispatch sends one copy per rank), and once per destination node
// (one inter-node copy per node).
//
// Slot maps: token_in_rank[t * W + r] is the position of token t among the
// tokens this source sends to rank r (0, 1, 2, ... in increasing token
// order), or -1 when t does not go to r; likewise token_in_node[t * N + n]
// for nodes. The engine uses a slot as the row offset of the token in the
// per-destination send/receive buffer, so tokens_per_rank[r] (and
// tokens_per_node[n]) is both the count and the number of slots used.
//
// Thread safety: pure functions; ComputeLayout(..., Layout*) reuses the
// vectors' capacity, so a caller that keeps its Layout allocates only when a
// shape grows.
#ifndef TOKENRAIL_RUNTIME_EP_LAYOUT_H_
#define TOKENRAIL_RUNTIME_EP_LAYOUT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace ep {

struct Layout {
  int64_t num_tokens = 0;
  int world_size = 0;
  int nodes = 0;
  std::vector<int32_t> tokens_per_rank;    // [world]
  std::vector<int32_t> tokens_per_node;    // [nodes]
  std::vector<int32_t> tokens_per_expert;  // [experts] (the source's own tokens)
  std::vector<int32_t> token_in_rank;      // [num_tokens x world]: slot or -1
  std::vector<int32_t> token_in_node;      // [num_tokens x nodes]: slot or -1

  int32_t rank_slot(int64_t token, int rank) const {
    return token_in_rank[token * world_size + rank];
  }
  int32_t node_slot(int64_t token, int node) const { return token_in_node[token * nodes + node]; }
};

// OK when topk_idx has num_tokens * top_k entries, each -1 or in [0, E), and
// no token names the same expert twice. Otherwise InvalidArgument naming the
// token, the slot and the value. Also validates topology and top_k
// (1..kMaxTopK, <= E).
absl::Status ValidateTopkIdx(const EpTopology& topology, int top_k, int64_t num_tokens,
                             absl::Span<const int32_t> topk_idx);

// Validates (as above) and fills *layout. On error *layout is unspecified.
absl::Status ComputeLayout(const EpTopology& topology, int top_k, int64_t num_tokens,
                           absl::Span<const int32_t> topk_idx, Layout* layout);
absl::StatusOr<Layout> ComputeLayout(const EpTopology& topology, int top_k, int64_t num_tokens,
                                     absl::Span<const int32_t> topk_idx);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_LAYOUT_H_
