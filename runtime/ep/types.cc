#include "runtime/ep/types.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace tokenrail {
namespace ep {

bool operator==(const EpTopology& a, const EpTopology& b) {
  return a.nodes == b.nodes && a.ranks_per_node == b.ranks_per_node && a.experts == b.experts;
}

std::string ToString(const EpTopology& t) {
  return absl::StrCat(t.nodes, "x", t.ranks_per_node, " ranks, ", t.experts, " experts");
}

absl::Status Validate(const EpTopology& t) {
  if (t.nodes < 1 || t.ranks_per_node < 1 || t.experts < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EP topology needs nodes, ranks_per_node and experts >= 1; got nodes=", t.nodes,
        " ranks_per_node=", t.ranks_per_node, " experts=", t.experts));
  }
  // 64-bit: the product of two valid ints may overflow int.
  const int64_t world = static_cast<int64_t>(t.nodes) * t.ranks_per_node;
  if (world > INT32_MAX || t.experts % world != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "experts=", t.experts, " is not divisible by nodes*ranks_per_node=", t.nodes, "*",
        t.ranks_per_node, "=", world, " (every rank must host the same number of experts)"));
  }
  return absl::OkStatus();
}

absl::Status Validate(const EpTopology& t, int top_k, int max_nodes) {
  if (absl::Status s = Validate(t); !s.ok()) return s;
  if (top_k < 1 || top_k > kMaxTopK || top_k > t.experts) {
    return absl::InvalidArgumentError(absl::StrCat("top_k=", top_k, " must be in [1, min(",
                                                   kMaxTopK, ", experts=", t.experts, ")]"));
  }
  if (max_nodes < 1 || max_nodes > t.nodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_nodes=", max_nodes, " must be in [1, nodes=", t.nodes, "]"));
  }
  const int64_t reachable = static_cast<int64_t>(max_nodes) * t.experts_per_node();
  if (top_k > reachable) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k=", top_k, " is not reachable within max_nodes=", max_nodes,
                     " nodes of ", t.experts_per_node(), " experts each (at most ", reachable,
                     " experts; topology ", ToString(t), ")"));
  }
  return absl::OkStatus();
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "fp32";
    case DType::kBFloat16:
      return "bf16";
    case DType::kFp8E4M3:
      return "fp8_e4m3";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (DType d : {DType::kFloat32, DType::kBFloat16, DType::kFp8E4M3}) {
    if (name == DTypeName(d)) return d;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", name, "' (expected fp32, bf16 or fp8_e4m3)"));
}

}  // namespace ep
}  // namespace tokenrail
