// The single-process reference of the whole expert-parallel exchange: the
// oracle the distributed dispatch/combine engine is tested against, and the
// verifier of `tokenrail-bench ep`. It is written to be obviously right, not
// fast (it copies rows into fresh vectors).
//
// Dispatch output of rank r (what the engine must deliver, row for row):
//   rows grouped by local expert (expert-major: all rows of local expert 0,
//   then 1, ...); inside an expert, ordered by (source global rank, source
//   token index). A token appears once per chosen expert on r, so a token
//   with two experts on r gives two rows. With align > 1 each expert's block
//   is padded with zero rows up to a multiple of `align` (an empty expert
//   stays empty); padding rows have src_rank == src_token == topk_slot == -1,
//   weight 0 and the expert's local id.
// Combine: y[src rank][token] = sum over the token's slots j = 0..top_k-1 in
//   slot order, -1 slots skipped, of w_j * out_j, where out_j is the expert
//   output row that dispatch produced for slot j. Accumulated in float from
//   0.0f as acc = acc + (w_j * out_j): two roundings per term, never fused
//   (the package builds with -ffp-contract=off). A token without experts
//   gets zeros. The distributed combine reduces in a different (hierarchical)
//   order, so it matches this within float rounding, not bitwise.
//
// Encoded payloads (EncodePayload): a value that says where it came from, so
// a misplaced row or a shifted chunk is caught and named. Each value is a
// nonzero normal BF16 number (hence also exact in float) carrying 14 bits:
//   field byte B (8 bits) -> sign = B >> 7, mantissa = B & 0x7F
//   check C (6 bits)      -> exponent field = 96 + C (|value| in [2^-31, 2^33))
// Column c carries, by c % 4: 0 the source rank, 1 the token's low byte, 2 its
// high byte, 3 the byte (c / 4) & 0xFF; C is a hash of (rank, token, column),
// so every value depends on all three. Domain: rank < 256, token < 65536.
// One value holds too few bits to name its origin alone; a row does:
// DecodePayloadRow reads rank and token from columns 0..2 and checks every
// column against them.
//
// Thread safety: pure functions; callers own all buffers.
#ifndef TOKENRAIL_RUNTIME_EP_REFERENCE_H_
#define TOKENRAIL_RUNTIME_EP_REFERENCE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace ep {

// One source rank's tokens (views; the caller owns the memory).
struct RankInput {
  int64_t num_tokens = 0;
  absl::Span<const float> x;             // [num_tokens x hidden]
  absl::Span<const int32_t> topk_idx;    // [num_tokens x top_k], -1 = none
  absl::Span<const float> topk_weights;  // [num_tokens x top_k]
};

struct ReferenceOptions {
  int top_k = 1;
  int64_t hidden = 0;
  // Each local expert's row block is padded up to a multiple of this (>= 1).
  int64_t align = 1;
  // Fill RankDispatch::x. Without it only the metadata is built and
  // RankInput::x may be empty (for large benchmark shapes: compare received
  // rows with the source row named by src_rank/src_token instead).
  bool copy_payload = true;
};

struct DispatchRow {
  int32_t src_rank = -1;  // -1 marks a padding row
  int32_t src_token = -1;
  int32_t local_expert = 0;
  int32_t topk_slot = -1;  // slot of the expert in the source token's topk_idx
  float weight = 0.0f;
  bool is_padding() const { return src_rank < 0; }
};

struct RankDispatch {
  std::vector<DispatchRow> rows;        // expert-major, padded blocks
  std::vector<float> x;                 // [rows.size() x hidden]; padding rows 0
  std::vector<int32_t> expert_counts;   // [experts_per_rank] real rows
  std::vector<int64_t> expert_offsets;  // [experts_per_rank + 1] block starts
  int64_t received_tokens = 0;          // distinct (src rank, token) pairs
};

// inputs[r] is global rank r's input; inputs.size() == world size. Validates
// topology, options (top_k, hidden >= 0, align >= 1), every span's size and
// every topk_idx (ValidateTopkIdx); InvalidArgument names rank and value.
absl::StatusOr<std::vector<RankDispatch>> ReferenceDispatch(const EpTopology& topology,
                                                            const ReferenceOptions& options,
                                                            absl::Span<const RankInput> inputs);

// expert_outputs[r] is [dispatch[r].rows.size() x hidden]: row i is the
// output of dispatch row i's expert (padding rows are ignored). Returns y
// per source rank, [inputs[r].num_tokens x hidden]. `dispatch` must be the
// ReferenceDispatch of `inputs` (checked: every routed slot must appear in
// exactly one row).
absl::StatusOr<std::vector<std::vector<float>>> ReferenceCombine(
    const EpTopology& topology, const ReferenceOptions& options, absl::Span<const RankInput> inputs,
    absl::Span<const RankDispatch> dispatch,
    absl::Span<const absl::Span<const float>> expert_outputs);

// Combine(Dispatch(x)) with identity experts: y = sum_j w_j * x, in the same
// order and roundings as ReferenceCombine (so bitwise equal to it); this is
// (sum of the token's weights) * x up to one rounding per term.
absl::StatusOr<std::vector<std::vector<float>>> IdentityCombine(const EpTopology& topology,
                                                                const ReferenceOptions& options,
                                                                absl::Span<const RankInput> inputs);

// ---- Encoded payloads ----

inline constexpr int kPayloadMaxRanks = 256;
inline constexpr int64_t kPayloadMaxTokens = 65536;

// The value at (rank, token, column). Precondition: 0 <= rank < 256,
// 0 <= token < 65536, column >= 0 (checked by FillEncodedPayload).
float EncodePayload(int rank, int64_t token, int64_t column);

// x[t * hidden + c] = EncodePayload(rank, t, c) for t < num_tokens.
// InvalidArgument when rank or num_tokens is outside the domain or x has the
// wrong size.
absl::Status FillEncodedPayload(int rank, int64_t num_tokens, int64_t hidden, absl::Span<float> x);

struct PayloadOrigin {
  int rank = -1;
  int64_t token = -1;
};

// Where a row came from. Needs hidden >= 3. DataLoss naming the first bad
// column (got and expected BF16 bits, and what the bad value carries) when
// any value is not EncodePayload(rank, token, c); InvalidArgument for a row
// shorter than 3 columns.
absl::StatusOr<PayloadOrigin> DecodePayloadRow(absl::Span<const float> row);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_REFERENCE_H_
