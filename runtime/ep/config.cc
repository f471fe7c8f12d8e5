#include "runtime/ep/config.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tokenrail {
namespace ep {

absl::Status Validate(const EpConfig& c) {
  TR_RETURN_IF_ERROR(Validate(c.topology, c.top_k, c.max_nodes));
  if (c.topology.world_size() > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("EpConfig: world size ", c.topology.world_size(), " exceeds 65536"));
  }
  if (c.topology.ranks_per_node > kMaxRanksPerNode) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EpConfig: ranks_per_node=", c.topology.ranks_per_node, " exceeds ", kMaxRanksPerNode));
  }
  if (c.hidden < 1 || c.hidden > (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(
        absl::StrCat("EpConfig: hidden=", c.hidden, " must be in 1..", int64_t{1} << 24));
  }
  if (c.combine_dtype != DType::kFloat32 && c.combine_dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat("EpConfig: combine_dtype=", DTypeName(c.combine_dtype),
                     " is not supported (fp32 or bf16)"));
  }
  if (c.dispatch_dtype != DType::kFloat32 && c.dispatch_dtype != DType::kBFloat16 &&
      c.dispatch_dtype != DType::kFp8E4M3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EpConfig: dispatch_dtype=", static_cast<int>(c.dispatch_dtype), " is not a dtype"));
  }
  if (c.fp8_keep_quantized && c.dispatch_dtype != DType::kFp8E4M3) {
    return absl::InvalidArgumentError(
        absl::StrCat("EpConfig: fp8_keep_quantized needs dispatch_dtype=fp8_e4m3, not ",
                     DTypeName(c.dispatch_dtype)));
  }
  if (c.align < 1 || c.align > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("EpConfig: align=", c.align, " must be in 1..4096"));
  }
  if (c.routing != EpRouting::kHierarchical && c.routing != EpRouting::kFlat) {
    return absl::InvalidArgumentError(
        absl::StrCat("EpConfig: routing=", static_cast<int>(c.routing), " is not a routing"));
  }
  return absl::OkStatus();
}

uint32_t ConfigFingerprint(const EpConfig& c) {
  // FNV-1a over the fields that shape the wire and the buffers.
  uint32_t h = 2166136261u;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= static_cast<uint8_t>(v >> (8 * i));
      h *= 16777619u;
    }
  };
  mix(static_cast<uint64_t>(c.topology.nodes));
  mix(static_cast<uint64_t>(c.topology.ranks_per_node));
  mix(static_cast<uint64_t>(c.topology.experts));
  mix(static_cast<uint64_t>(c.top_k));
  mix(static_cast<uint64_t>(c.max_nodes));
  mix(static_cast<uint64_t>(c.hidden));
  mix(static_cast<uint64_t>(c.dispatch_dtype));
  mix(static_cast<uint64_t>(c.combine_dtype));
  mix(c.fp8_keep_quantized ? 1 : 0);
  mix(static_cast<uint64_t>(c.align));
  mix(static_cast<uint64_t>(c.buffer_bytes));
  mix(static_cast<uint64_t>(c.routing));
  return h;
}

absl::string_view RoutingName(EpRouting routing) {
  return routing == EpRouting::kFlat ? "flat" : "hierarchical";
}

std::string ToString(const EpConfig& c) {
  return absl::StrCat(ToString(c.topology), ", top-", c.top_k, ", M=", c.max_nodes, ", hidden ",
                      c.hidden, ", ", DTypeName(c.dispatch_dtype), "/", DTypeName(c.combine_dtype),
                      c.fp8_keep_quantized ? " (fp8 kept)" : "", ", align ", c.align, ", ",
                      RoutingName(c.routing), ", buffers ", c.buffer_bytes, " B");
}

}  // namespace ep
}  // namespace tokenrail
