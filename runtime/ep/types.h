// Expert-parallel topology and payload types shared by the gate, the layout,
// the numeric kernels, the reference exchange and the distributed engine.
//
// Placement contract (the whole package relies on it):
//   global rank  = node * ranks_per_node + local_rank
//   rank r hosts the experts [r * E/W, (r + 1) * E/W), W = nodes * ranks_per_node
// so experts are contiguous per rank and per node, and the gate's expert groups
// are exactly the nodes (group g = experts [g * E/N, (g + 1) * E/N)).
//
// Everything here is a value type; the helpers assume a topology that passed
// Validate() (they do not re-check ranges).
#ifndef TOKENRAIL_RUNTIME_EP_TYPES_H_
#define TOKENRAIL_RUNTIME_EP_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace ep {

// Largest supported top-k (the layout and the gate keep per-token state in
// fixed arrays of this size).
inline constexpr int kMaxTopK = 16;

struct EpTopology {
  int nodes = 1;           // N
  int ranks_per_node = 1;  // R
  int experts = 1;         // E, divisible by N * R

  int world_size() const { return nodes * ranks_per_node; }
  int experts_per_rank() const { return experts / world_size(); }
  int experts_per_node() const { return experts / nodes; }

  // Rank coordinates.
  int global_rank(int node, int local_rank) const { return node * ranks_per_node + local_rank; }
  int node_of_rank(int rank) const { return rank / ranks_per_node; }
  int local_rank_of_rank(int rank) const { return rank % ranks_per_node; }
  int first_expert_of_rank(int rank) const { return rank * experts_per_rank(); }
  int first_expert_of_node(int node) const { return node * experts_per_node(); }

  // Expert coordinates. local_rank_of_expert is the rank's index inside its
  // node; local_expert is the expert's index inside its rank.
  int rank_of_expert(int expert) const { return expert / experts_per_rank(); }
  int node_of_expert(int expert) const { return expert / experts_per_node(); }
  int local_rank_of_expert(int expert) const { return rank_of_expert(expert) % ranks_per_node; }
  int local_expert(int expert) const { return expert % experts_per_rank(); }
};

bool operator==(const EpTopology& a, const EpTopology& b);
inline bool operator!=(const EpTopology& a, const EpTopology& b) { return !(a == b); }

// "2x4 ranks, 16 experts" for messages.
std::string ToString(const EpTopology& topology);

// InvalidArgument naming the offending values unless: nodes, ranks_per_node,
// experts >= 1 and experts divisible by nodes * ranks_per_node.
absl::Status Validate(const EpTopology& topology);

// Validate(topology), plus the routing parameters: 1 <= top_k <= min(16,
// experts), 1 <= max_nodes <= nodes, and top_k reachable inside max_nodes
// nodes (top_k <= max_nodes * experts_per_node). Unrestricted ("flat")
// routing is max_nodes == nodes.
absl::Status Validate(const EpTopology& topology, int top_k, int max_nodes);

// Element types of dispatch/combine payloads. Storage: kFloat32 is float,
// kBFloat16 is uint16_t (the upper half of an IEEE float), kFp8E4M3 is uint8_t
// (OCP e4m3fn) plus one FP32 scale per 1x128 tile (numeric.h).
enum class DType { kFloat32, kBFloat16, kFp8E4M3 };

constexpr size_t DTypeSize(DType dtype) {
  return dtype == DType::kFloat32 ? 4 : dtype == DType::kBFloat16 ? 2 : 1;
}

// "fp32", "bf16", "fp8_e4m3"; ParseDType accepts the same names and fails with
// InvalidArgument listing them.
absl::string_view DTypeName(DType dtype);
absl::StatusOr<DType> ParseDType(absl::string_view name);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_TYPES_H_
