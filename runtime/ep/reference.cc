#include "runtime/ep/reference.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "runtime/ep/layout.h"
#include "runtime/ep/numeric.h"

namespace tokenrail {
namespace ep {
namespace {

absl::Status CheckSize(size_t got, int64_t want, int rank, const char* what) {
  if (got == static_cast<size_t>(want)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("reference: rank ", rank, " ", what, " has ", got,
                                                 " elements, expected ", want));
}

absl::Status ValidateInputs(const EpTopology& topology, const ReferenceOptions& options,
                            absl::Span<const RankInput> inputs, bool need_x) {
  TR_RETURN_IF_ERROR(Annotate(Validate(topology), "reference"));
  if (options.hidden < 0 || options.align < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reference: hidden=", options.hidden, " must be >= 0 and align=", options.align, " >= 1"));
  }
  if (inputs.size() != static_cast<size_t>(topology.world_size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reference: ", inputs.size(), " rank inputs for world size ", topology.world_size()));
  }
  for (int r = 0; r < topology.world_size(); ++r) {
    const RankInput& in = inputs[r];
    TR_RETURN_IF_ERROR(
        Annotate(ValidateTopkIdx(topology, options.top_k, in.num_tokens, in.topk_idx),
                 absl::StrCat("reference: rank ", r)));
    TR_RETURN_IF_ERROR(
        CheckSize(in.topk_weights.size(), in.num_tokens * options.top_k, r, "topk_weights"));
    if (need_x) TR_RETURN_IF_ERROR(CheckSize(in.x.size(), in.num_tokens * options.hidden, r, "x"));
  }
  return absl::OkStatus();
}

// (dest rank, row) of each routed slot: index [src rank][token * top_k + slot].
struct RowRef {
  int32_t rank = -1;
  int64_t row = -1;
};

}  // namespace

absl::StatusOr<std::vector<RankDispatch>> ReferenceDispatch(const EpTopology& topology,
                                                            const ReferenceOptions& options,
                                                            absl::Span<const RankInput> inputs) {
  TR_RETURN_IF_ERROR(ValidateInputs(topology, options, inputs, options.copy_payload));
  const int world = topology.world_size();
  const int experts_per_rank = topology.experts_per_rank();
  const int k = options.top_k;
  const int64_t hidden = options.hidden;

  // Bucket every routed slot by global expert, visiting sources in (rank,
  // token) order so each bucket is already in the required row order.
  std::vector<std::vector<DispatchRow>> by_expert(topology.experts);
  for (int src = 0; src < world; ++src) {
    const RankInput& in = inputs[src];
    for (int64_t t = 0; t < in.num_tokens; ++t) {
      for (int j = 0; j < k; ++j) {
        const int32_t e = in.topk_idx[t * k + j];
        if (e < 0) continue;
        DispatchRow row;
        row.src_rank = src;
        row.src_token = static_cast<int32_t>(t);
        row.local_expert = topology.local_expert(e);
        row.topk_slot = j;
        row.weight = in.topk_weights[t * k + j];
        by_expert[e].push_back(row);
      }
    }
  }

  std::vector<RankDispatch> out(world);
  for (int r = 0; r < world; ++r) {
    RankDispatch& d = out[r];
    d.expert_counts.assign(experts_per_rank, 0);
    d.expert_offsets.assign(experts_per_rank + 1, 0);
    for (int le = 0; le < experts_per_rank; ++le) {
      const std::vector<DispatchRow>& bucket = by_expert[topology.first_expert_of_rank(r) + le];
      d.expert_counts[le] = static_cast<int32_t>(bucket.size());
      d.expert_offsets[le] = static_cast<int64_t>(d.rows.size());
      d.rows.insert(d.rows.end(), bucket.begin(), bucket.end());
      const int64_t padded =
          (static_cast<int64_t>(bucket.size()) + options.align - 1) / options.align * options.align;
      DispatchRow pad;
      pad.local_expert = le;
      d.rows.resize(d.rows.size() + (padded - bucket.size()), pad);
    }
    d.expert_offsets[experts_per_rank] = static_cast<int64_t>(d.rows.size());

    // Distinct (src, token) pairs: rows of one pair may sit in several expert
    // blocks.
    std::vector<std::vector<bool>> seen(world);
    for (int src = 0; src < world; ++src) seen[src].assign(inputs[src].num_tokens, false);
    for (const DispatchRow& row : d.rows) {
      if (row.is_padding() || seen[row.src_rank][row.src_token]) continue;
      seen[row.src_rank][row.src_token] = true;
      ++d.received_tokens;
    }

    if (options.copy_payload) {
      d.x.assign(d.rows.size() * hidden, 0.0f);
      for (size_t i = 0; i < d.rows.size(); ++i) {
        const DispatchRow& row = d.rows[i];
        if (row.is_padding()) continue;
        const float* src = inputs[row.src_rank].x.data() + row.src_token * hidden;
        std::copy(src, src + hidden, d.x.begin() + i * hidden);
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::vector<float>>> ReferenceCombine(
    const EpTopology& topology, const ReferenceOptions& options, absl::Span<const RankInput> inputs,
    absl::Span<const RankDispatch> dispatch,
    absl::Span<const absl::Span<const float>> expert_outputs) {
  TR_RETURN_IF_ERROR(ValidateInputs(topology, options, inputs, /*need_x=*/false));
  const int world = topology.world_size();
  const int k = options.top_k;
  const int64_t hidden = options.hidden;
  if (dispatch.size() != static_cast<size_t>(world) ||
      expert_outputs.size() != static_cast<size_t>(world)) {
    return absl::InvalidArgumentError(absl::StrCat("reference combine: ", dispatch.size(),
                                                   " dispatch results and ", expert_outputs.size(),
                                                   " expert outputs for world size ", world));
  }

  std::vector<std::vector<RowRef>> where(world);
  for (int src = 0; src < world; ++src) where[src].resize(inputs[src].num_tokens * k);
  for (int r = 0; r < world; ++r) {
    TR_RETURN_IF_ERROR(CheckSize(expert_outputs[r].size(),
                                 static_cast<int64_t>(dispatch[r].rows.size()) * hidden, r,
                                 "expert output"));
    for (size_t i = 0; i < dispatch[r].rows.size(); ++i) {
      const DispatchRow& row = dispatch[r].rows[i];
      if (row.is_padding()) continue;
      const bool in_range = row.src_rank < world && row.src_token >= 0 &&
                            row.src_token < inputs[row.src_rank].num_tokens && row.topk_slot >= 0 &&
                            row.topk_slot < k;
      RowRef* ref = in_range ? &where[row.src_rank][row.src_token * k + row.topk_slot] : nullptr;
      if (ref == nullptr || ref->rank >= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "reference combine: rank ", r, " row ", i, " (src rank ", row.src_rank, " token ",
            row.src_token, " slot ", row.topk_slot, ") is out of range or duplicated"));
      }
      *ref = RowRef{r, static_cast<int64_t>(i)};
    }
  }

  std::vector<std::vector<float>> y(world);
  for (int src = 0; src < world; ++src) {
    const RankInput& in = inputs[src];
    y[src].assign(in.num_tokens * hidden, 0.0f);
    for (int64_t t = 0; t < in.num_tokens; ++t) {
      float* acc = y[src].data() + t * hidden;
      for (int j = 0; j < k; ++j) {
        if (in.topk_idx[t * k + j] < 0) continue;
        const RowRef ref = where[src][t * k + j];
        if (ref.rank < 0) {
          return absl::InvalidArgumentError(absl::StrCat("reference combine: rank ", src, " token ",
                                                         t, " slot ", j, " has no dispatch row"));
        }
        const float w = in.topk_weights[t * k + j];
        const float* out = expert_outputs[ref.rank].data() + ref.row * hidden;
        for (int64_t c = 0; c < hidden; ++c) acc[c] = acc[c] + w * out[c];
      }
    }
  }
  return y;
}

absl::StatusOr<std::vector<std::vector<float>>> IdentityCombine(
    const EpTopology& topology, const ReferenceOptions& options,
    absl::Span<const RankInput> inputs) {
  TR_RETURN_IF_ERROR(ValidateInputs(topology, options, inputs, /*need_x=*/true));
  const int k = options.top_k;
  const int64_t hidden = options.hidden;
  std::vector<std::vector<float>> y(inputs.size());
  for (size_t src = 0; src < inputs.size(); ++src) {
    const RankInput& in = inputs[src];
    y[src].assign(in.num_tokens * hidden, 0.0f);
    for (int64_t t = 0; t < in.num_tokens; ++t) {
      float* acc = y[src].data() + t * hidden;
      const float* x = in.x.data() + t * hidden;
      for (int j = 0; j < k; ++j) {
        if (in.topk_idx[t * k + j] < 0) continue;
        const float w = in.topk_weights[t * k + j];
        for (int64_t c = 0; c < hidden; ++c) acc[c] = acc[c] + w * x[c];
      }
    }
  }
  return y;
}

// ---- Encoded payloads ----

namespace {

// 6-bit check of (rank, token, column): a 32-bit integer hash (the murmur3
// finalizer) of the three, so neighbours differ in unrelated bits.
uint32_t PayloadCheck(uint32_t rank, uint32_t token, uint32_t column) {
  uint32_t h = rank * 0x9E3779B1u ^ token * 0x85EBCA77u ^ column * 0xC2B2AE3Du;
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h & 63u;
}

uint32_t PayloadByte(uint32_t rank, uint32_t token, uint32_t column) {
  switch (column & 3u) {
    case 0:
      return rank & 0xFFu;
    case 1:
      return token & 0xFFu;
    case 2:
      return (token >> 8) & 0xFFu;
    default:
      return (column >> 2) & 0xFFu;
  }
}

uint16_t PayloadBits(uint32_t rank, uint32_t token, uint32_t column) {
  const uint32_t b = PayloadByte(rank, token, column);
  const uint32_t exponent = 96u + PayloadCheck(rank, token, column);
  return static_cast<uint16_t>(((b >> 7) << 15) | (exponent << 7) | (b & 0x7Fu));
}

// The (byte, check) a BF16 pattern carries; false if it is no payload value.
bool SplitPayload(uint16_t bits, uint32_t* byte, uint32_t* check) {
  const uint32_t exponent = (bits >> 7) & 0xFFu;
  if (exponent < 96u || exponent >= 160u) return false;
  *byte = ((bits >> 15) << 7) | (bits & 0x7Fu);
  *check = exponent - 96u;
  return true;
}

const char* FieldName(int64_t column) {
  switch (column & 3) {
    case 0:
      return "rank";
    case 1:
      return "token low byte";
    case 2:
      return "token high byte";
    default:
      return "column byte";
  }
}

}  // namespace

float EncodePayload(int rank, int64_t token, int64_t column) {
  return Bf16ToFloat(PayloadBits(static_cast<uint32_t>(rank), static_cast<uint32_t>(token),
                                 static_cast<uint32_t>(column)));
}

absl::Status FillEncodedPayload(int rank, int64_t num_tokens, int64_t hidden, absl::Span<float> x) {
  if (rank < 0 || rank >= kPayloadMaxRanks || num_tokens < 0 || num_tokens > kPayloadMaxTokens ||
      hidden < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "encoded payload: rank=", rank, " num_tokens=", num_tokens, " hidden=", hidden,
        " outside the domain rank < ", kPayloadMaxRanks, ", tokens <= ", kPayloadMaxTokens));
  }
  if (x.size() != static_cast<size_t>(num_tokens * hidden)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "encoded payload: x has ", x.size(), " elements, expected ", num_tokens, " x ", hidden));
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t c = 0; c < hidden; ++c) x[t * hidden + c] = EncodePayload(rank, t, c);
  }
  return absl::OkStatus();
}

absl::StatusOr<PayloadOrigin> DecodePayloadRow(absl::Span<const float> row) {
  if (row.size() < 3) {
    return absl::InvalidArgumentError(absl::StrCat("encoded payload: a row of ", row.size(),
                                                   " columns cannot name its origin (needs 3)"));
  }
  uint32_t fields[3];
  for (int c = 0; c < 3; ++c) {
    uint32_t check;
    const uint16_t bits = FloatToBf16(row[c]);
    if (Bf16ToFloat(bits) != row[c] || !SplitPayload(bits, &fields[c], &check)) {
      return absl::DataLossError(absl::StrFormat(
          "encoded payload: column %d holds %g, which is no payload value", c, row[c]));
    }
  }
  PayloadOrigin origin;
  origin.rank = static_cast<int>(fields[0]);
  origin.token = static_cast<int64_t>(fields[1] | (fields[2] << 8));
  for (size_t c = 0; c < row.size(); ++c) {
    const float want = EncodePayload(origin.rank, origin.token, static_cast<int64_t>(c));
    if (std::memcmp(&row[c], &want, sizeof(float)) == 0) continue;
    std::string carries = "no payload value";
    uint32_t byte, check;
    const uint16_t bits = FloatToBf16(row[c]);
    if (Bf16ToFloat(bits) == row[c] && SplitPayload(bits, &byte, &check)) {
      carries = absl::StrFormat("byte 0x%02x, check %u", byte, check);
    }
    const uint32_t want_byte = PayloadByte(origin.rank, origin.token, c);
    return absl::DataLossError(absl::StrFormat(
        "encoded payload: row of rank %d token %d: column %d holds %g (bf16 0x%04x: %s), "
        "expected %g (%s 0x%02x, check %u)",
        origin.rank, origin.token, c, row[c], bits, carries, want, FieldName(c), want_byte,
        PayloadCheck(origin.rank, origin.token, c)));
  }
  return origin;
}

}  // namespace ep
}  // namespace tokenrail
