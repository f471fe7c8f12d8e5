// Verification of `tokenrail-bench ep` results against the single-process
// reference (runtime/ep/reference.h), shared by the tokenrail ranks and the
// MPI_Alltoallv baseline so both are held to the same standard.
//
// A Checker is built once per (rank, case) from the WorkloadSpec: it
// regenerates every rank's workload (routing, payload), runs
// ep::ReferenceDispatch (metadata) for the whole world and keeps this rank's
// expected rows, and computes this rank's expected combine output.
//
// Dispatch check (every row of each output it is given; the rank loop,
// rank_loop.h, checks every verify_every-th iteration plus the last warm-up
// and the last timed one):
//   metadata    rows, per-expert counts, and each row's (source rank, source
//               token, local expert, weight bits) equal the reference's, in
//               its order (expert-major; inside an expert by source rank,
//               then token); padding rows (align > 1) have source rank -1.
//   payload     BF16/FP32 dispatch: the row equals the source row bit for
//               bit. FP8 dispatch: every value within numeric.h's bound,
//               |got - x| <= Fp8ErrorBound(x, tile scale) (+ the BF16
//               rounding bound of the value when the row is handed over as
//               BF16). Rows bit-identical to numeric.h's quantization
//               (QuantizeRowFp8FromBf16, then dequantization) are the fast
//               path; rows that are not are counted (fp8_inexact_rows).
// Combine check: y[t][c] against the reference value
//   yref = sum over slots j in slot order of w_j * out_j (exactly
//   ep::ReferenceCombine's order and roundings), out_j = expert e_j applied
//   to the row dispatch delivers for slot j (the source row for BF16/FP32,
//   numeric.h's dequantized row for FP8, rounded to the expert-input dtype),
//   rounded to the expert-output dtype.
//   Tolerance: |y - yref| <= rel * S + 2^-126, S = sum_j |fl(w_j * out_j)|.
//   Both sides add the same products in different orders: each float
//   addition errs by at most u * S (u = 2^-24), at most k + 1 of them per
//   side. With a BF16 combine a partial sum is rounded to BF16 at most twice
//   on its way back (the rank's partial, then the node's partial), each by at
//   most 2^-8 of a magnitude <= S (1 + 2^-8). Hence
//     BF16 combine: rel = 2^-8 + 2^-8 (1 + 2^-8) + 2 (k + 1) u (1 + 2^-7)
//                      <= 2^-7 + 2^-16 + (k + 2) 2^-23
//     FP32 combine: rel = (k + 2) 2^-23
//   The MPI baseline rounds once (BF16 partial per rank): inside the bound.
//
// Thread safety: const methods may run concurrently; Create is pure.
#ifndef TOKENRAIL_TOOLS_BENCH_EP_CHECK_H_
#define TOKENRAIL_TOOLS_BENCH_EP_CHECK_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/ep/reference.h"
#include "runtime/ep/types.h"
#include "tools/bench/ep/workload.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

// What one rank's dispatch delivered, as plain arrays (an adapter copies the
// engine's or the MPI baseline's output into this shape).
struct DispatchView {
  int64_t rows = 0;
  absl::Span<const int32_t> src_rank;        // [rows], -1 = padding
  absl::Span<const int32_t> src_token;       // [rows]
  absl::Span<const int32_t> local_expert;    // [rows]
  absl::Span<const float> weight;            // [rows]
  absl::Span<const int32_t> expert_counts;   // [experts_per_rank] real rows
  const void* x = nullptr;                   // rows x x_stride elements
  ep::DType x_dtype = ep::DType::kBFloat16;  // kBFloat16 or kFloat32
  int64_t x_stride = 0;                      // elements between rows (>= hidden)
};

// Case parameters that change the expected results.
struct CheckOptions {
  ep::DType dispatch_dtype = ep::DType::kBFloat16;  // on the wire
  // What the expert receives and returns (kBFloat16 or kFloat32): the
  // dispatch output rows and the combine input rows.
  ep::DType expert_dtype = ep::DType::kBFloat16;
  ep::DType combine_dtype = ep::DType::kBFloat16;  // on the wire
  int64_t align = 1;
};

// Dispatch volume of one source rank's tokens (for the byte targets).
struct Traffic {
  int64_t tokens = 0;
  int64_t routed_slots = 0;        // non -1 top-k slots
  int64_t remote_node_copies = 0;  // sum over tokens of destination nodes != own node
  int64_t remote_rank_copies = 0;  // ... of destination ranks on other nodes
  int64_t local_rank_copies = 0;   // ... of destination ranks on the own node, self included
  int64_t self_copies = 0;         // tokens with an expert on this rank
  std::vector<int64_t> tokens_per_expert;  // [experts]: this rank's tokens per expert
};

struct DispatchCheck {
  int64_t rows_checked = 0;
  int64_t fp8_inexact_rows = 0;  // FP8 rows inside the bound but not bit-identical
};

class Checker {
 public:
  // InvalidArgument for a bad spec, rank or dtype combination.
  static absl::StatusOr<std::unique_ptr<Checker>> Create(const WorkloadSpec& spec, int rank,
                                                         const CheckOptions& options);

  const WorkloadSpec& spec() const { return spec_; }
  int rank() const { return rank_; }
  // This rank's input (x_bf16 always, x_f32 for FP32 dispatch).
  const RankWorkload& input() const { return *workloads_[rank_]; }
  const Traffic& traffic() const { return traffic_; }
  // Reference facts about what this rank receives.
  int64_t expected_rows() const { return static_cast<int64_t>(expected_.rows.size()); }
  int64_t expected_received_tokens() const { return expected_.received_tokens; }
  // This rank's expected combine output, [tokens x hidden] (yref above).
  absl::Span<const float> expected_y() const { return y_ref_; }

  // DataLoss naming the first bad row (and column), with got and expected.
  absl::StatusOr<DispatchCheck> CheckDispatch(const DispatchView& got) const;

  // Applies this rank's experts to the rows of `got` (real rows; padding
  // rows get zeros) and writes [got.rows x hidden] values of
  // options.expert_dtype to `out`. For identity experts with an expert dtype
  // equal to the view's, callers may pass the view's rows instead.
  void RunExperts(const DispatchView& got, void* out) const;

  // y is [tokens x hidden] float. DataLoss naming the first bad (token,
  // column) with got, expected, tolerance and how many values failed.
  absl::Status CheckCombine(absl::Span<const float> y) const;

  // Tolerance factor `rel` of the header comment.
  static double CombineRelativeTolerance(ep::DType combine_dtype, int top_k);

 private:
  Checker(WorkloadSpec spec, int rank, CheckOptions options)
      : spec_(spec), rank_(rank), options_(options), experts_(spec) {}
  absl::Status Build();
  // The expert input row of source (rank, token), as the dispatch should
  // deliver it, widened to float.
  void ExpertInput(int src_rank, int64_t token, float* row) const;
  absl::Status CheckRowPayload(int64_t i, const ep::DispatchRow& want, const void* got_row,
                               ep::DType got_dtype, DispatchCheck* stats) const;

  WorkloadSpec spec_;
  int rank_;
  CheckOptions options_;
  Experts experts_;
  std::vector<std::unique_ptr<RankWorkload>> workloads_;  // every rank's
  ep::RankDispatch expected_;                             // this rank's (metadata)
  std::vector<float> y_ref_;                              // [tokens x hidden]
  std::vector<float> y_tol_;                              // [tokens x hidden]
  Traffic traffic_;
};

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_CHECK_H_
