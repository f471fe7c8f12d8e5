#include "tools/bench/ep/check.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "runtime/ep/layout.h"
#include "runtime/ep/numeric.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

// Rounds a float row to `dtype` and back (identity for kFloat32).
void RoundRow(ep::DType dtype, float* row, int64_t n) {
  if (dtype != ep::DType::kBFloat16) return;
  for (int64_t c = 0; c < n; ++c) row[c] = ep::Bf16ToFloat(ep::FloatToBf16(row[c]));
}

void WidenRow(const void* row, ep::DType dtype, int64_t n, float* out) {
  if (dtype == ep::DType::kBFloat16) {
    ep::Bf16ToFloat(static_cast<const uint16_t*>(row), n, out);
  } else {
    std::memcpy(out, row, static_cast<size_t>(n) * sizeof(float));
  }
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

// What a payload row says about its origin, for error messages.
std::string Describe(absl::Span<const float> row) {
  absl::StatusOr<ep::PayloadOrigin> o = ep::DecodePayloadRow(row);
  if (!o.ok()) return absl::StrCat("it decodes to nothing (", o.status().message(), ")");
  return absl::StrCat("it carries rank ", o->rank, " token ", o->token);
}

}  // namespace

double Checker::CombineRelativeTolerance(ep::DType combine_dtype, int top_k) {
  const double summation = (top_k + 2) * 0x1p-23;
  if (combine_dtype == ep::DType::kFloat32) return summation;
  return 0x1p-7 + 0x1p-16 + summation;
}

absl::StatusOr<std::unique_ptr<Checker>> Checker::Create(const WorkloadSpec& spec, int rank,
                                                         const CheckOptions& options) {
  TR_RETURN_IF_ERROR(Validate(spec));
  if (rank < 0 || rank >= spec.topology.world_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checker: rank ", rank, " outside world size ", spec.topology.world_size()));
  }
  const auto float_or_bf16 = [](ep::DType d) {
    return d == ep::DType::kFloat32 || d == ep::DType::kBFloat16;
  };
  if (!float_or_bf16(options.expert_dtype) || !float_or_bf16(options.combine_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checker: expert dtype ", ep::DTypeName(options.expert_dtype), " and combine dtype ",
        ep::DTypeName(options.combine_dtype), " must be fp32 or bf16"));
  }
  if (options.align < 1) {
    return absl::InvalidArgumentError(absl::StrCat("checker: align=", options.align));
  }
  std::unique_ptr<Checker> c(new Checker(spec, rank, options));
  TR_RETURN_IF_ERROR(c->Build());
  return c;
}

absl::Status Checker::Build() {
  const ep::EpTopology& topo = spec_.topology;
  const int world = topo.world_size();
  const int64_t T = spec_.tokens, H = spec_.hidden;
  const int k = spec_.top_k;

  workloads_.resize(world);
  for (int r = 0; r < world; ++r) {
    int forms = kPayloadBf16;
    if (r == rank_ && options_.dispatch_dtype == ep::DType::kFloat32) forms |= kPayloadF32;
    TR_ASSIGN_OR_RETURN(RankWorkload w, MakeRankWorkload(spec_, r, forms));
    workloads_[r] = std::make_unique<RankWorkload>(std::move(w));
  }

  // The reference dispatch (metadata only: payloads are compared with the
  // source rows the metadata names).
  std::vector<ep::RankInput> inputs(world);
  for (int r = 0; r < world; ++r) {
    inputs[r].num_tokens = T;
    inputs[r].topk_idx = workloads_[r]->topk_idx;
    inputs[r].topk_weights = workloads_[r]->topk_weights;
  }
  ep::ReferenceOptions ro;
  ro.top_k = k;
  ro.hidden = H;
  ro.align = options_.align;
  ro.copy_payload = false;
  TR_ASSIGN_OR_RETURN(std::vector<ep::RankDispatch> all, ep::ReferenceDispatch(topo, ro, inputs));
  expected_ = std::move(all[rank_]);

  // Traffic of this rank's tokens.
  const RankWorkload& own = *workloads_[rank_];
  TR_ASSIGN_OR_RETURN(ep::Layout layout, ep::ComputeLayout(topo, k, T, own.topk_idx));
  const int my_node = topo.node_of_rank(rank_);
  traffic_.tokens = T;
  traffic_.tokens_per_expert.assign(layout.tokens_per_expert.begin(),
                                    layout.tokens_per_expert.end());
  for (int32_t e : own.topk_idx) traffic_.routed_slots += e >= 0;
  for (int64_t t = 0; t < T; ++t) {
    for (int n = 0; n < topo.nodes; ++n) {
      if (n != my_node && layout.node_slot(t, n) >= 0) ++traffic_.remote_node_copies;
    }
    for (int r = 0; r < world; ++r) {
      if (layout.rank_slot(t, r) < 0) continue;
      if (topo.node_of_rank(r) == my_node) {
        ++traffic_.local_rank_copies;
      } else {
        ++traffic_.remote_rank_copies;
      }
      if (r == rank_) ++traffic_.self_copies;
    }
  }

  // Expected combine output of this rank's tokens, in ReferenceCombine's
  // order and roundings.
  y_ref_.assign(static_cast<size_t>(T * H), 0.0f);
  y_tol_.assign(y_ref_.size(), 0.0f);
  const double rel = CombineRelativeTolerance(options_.combine_dtype, k);
  std::vector<float> in(H), out(H), mag(H);
  for (int64_t t = 0; t < T; ++t) {
    ExpertInput(rank_, t, in.data());
    float* acc = y_ref_.data() + t * H;
    std::fill(mag.begin(), mag.end(), 0.0f);
    for (int j = 0; j < k; ++j) {
      const int32_t e = own.topk_idx[t * k + j];
      if (e < 0) continue;
      const float w = own.topk_weights[t * k + j];
      experts_.Apply(e, in.data(), out.data());
      RoundRow(options_.expert_dtype, out.data(), H);
      for (int64_t c = 0; c < H; ++c) {
        const float p = w * out[c];
        acc[c] = acc[c] + p;
        mag[c] += std::fabs(p);
      }
    }
    float* tol = y_tol_.data() + t * H;
    for (int64_t c = 0; c < H; ++c) {
      tol[c] = static_cast<float>(rel * mag[c] * (1.0 + 0x1p-20) + 0x1p-126);
    }
  }
  return absl::OkStatus();
}

void Checker::ExpertInput(int src_rank, int64_t token, float* row) const {
  const int64_t H = spec_.hidden;
  const uint16_t* x = workloads_[src_rank]->x_bf16.data() + token * H;
  if (options_.dispatch_dtype == ep::DType::kFp8E4M3) {
    std::vector<uint8_t> q(H);
    std::vector<float> scales(ep::Fp8TilesPerRow(H));
    // Encoded payloads are finite: quantization cannot fail.
    (void)ep::QuantizeRowFp8FromBf16(x, H, q.data(), scales.data());
    ep::DequantizeRowFp8(q.data(), scales.data(), H, row);
  } else {
    ep::Bf16ToFloat(x, H, row);
  }
  RoundRow(options_.expert_dtype, row, H);
}

absl::Status Checker::CheckRowPayload(int64_t i, const ep::DispatchRow& want, const void* got_row,
                                      ep::DType got_dtype, DispatchCheck* stats) const {
  const int64_t H = spec_.hidden;
  std::vector<float> got(H), expect(H);
  WidenRow(got_row, got_dtype, H, got.data());
  ExpertInput(want.src_rank, want.src_token, expect.data());
  if (std::memcmp(got.data(), expect.data(), H * sizeof(float)) == 0) return absl::OkStatus();
  const std::string where =
      absl::StrCat("dispatch row ", i, " (local expert ", want.local_expert, ", source rank ",
                   want.src_rank, " token ", want.src_token, ")");
  if (options_.dispatch_dtype != ep::DType::kFp8E4M3) {
    int64_t c = 0;
    while (c < H && Bits(got[c]) == Bits(expect[c])) ++c;
    return absl::DataLossError(
        absl::StrFormat("%s: column %d is %g (bits 0x%08x), expected %g (bits 0x%08x); %s", where,
                        c, got[c], Bits(got[c]), expect[c], Bits(expect[c]), Describe(got)));
  }
  // FP8: not bit-identical to numeric.h's quantization; still correct when
  // every value is inside the E4M3 bound around the source value.
  const uint16_t* x = workloads_[want.src_rank]->x_bf16.data() + want.src_token * H;
  std::vector<float> src(H);
  ep::Bf16ToFloat(x, H, src.data());
  for (int64_t tile = 0; tile * ep::kFp8TileSize < H; ++tile) {
    const int64_t lo = tile * ep::kFp8TileSize, hi = std::min(H, lo + ep::kFp8TileSize);
    float amax = 0;
    for (int64_t c = lo; c < hi; ++c) amax = std::max(amax, std::fabs(src[c]));
    const float scale = ep::Fp8TileScale(amax);
    for (int64_t c = lo; c < hi; ++c) {
      double bound = ep::Fp8ErrorBound(src[c], scale);
      if (got_dtype == ep::DType::kBFloat16) bound += ep::Bf16RoundingBound(got[c]);
      const double err = std::fabs(static_cast<double>(got[c]) - src[c]);
      if (!(err <= bound)) {
        return absl::DataLossError(absl::StrFormat(
            "%s: FP8 column %d is %g, source value %g, error %g exceeds the E4M3 bound %g "
            "(tile scale %g)",
            where, c, got[c], src[c], err, bound, scale));
      }
    }
  }
  ++stats->fp8_inexact_rows;
  return absl::OkStatus();
}

absl::StatusOr<DispatchCheck> Checker::CheckDispatch(const DispatchView& got) const {
  const int64_t n = expected_rows();
  const int experts = spec_.topology.experts_per_rank();
  if (got.rows != n) {
    return absl::DataLossError(
        absl::StrCat("dispatch delivered ", got.rows, " rows to rank ", rank_, ", expected ", n));
  }
  const auto sized = [&](size_t s, int64_t want, const char* what) -> absl::Status {
    if (static_cast<int64_t>(s) == want) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("dispatch view: ", what, " has ", s, " entries, expected ", want));
  };
  TR_RETURN_IF_ERROR(sized(got.src_rank.size(), n, "src_rank"));
  TR_RETURN_IF_ERROR(sized(got.src_token.size(), n, "src_token"));
  TR_RETURN_IF_ERROR(sized(got.local_expert.size(), n, "local_expert"));
  TR_RETURN_IF_ERROR(sized(got.weight.size(), n, "weight"));
  TR_RETURN_IF_ERROR(sized(got.expert_counts.size(), experts, "expert_counts"));
  if (got.x_dtype != options_.expert_dtype || got.x_stride < spec_.hidden ||
      (n > 0 && got.x == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dispatch view: rows of ", ep::DTypeName(got.x_dtype), " with stride ", got.x_stride,
        ", expected ", ep::DTypeName(options_.expert_dtype), " rows of >= ", spec_.hidden));
  }
  for (int le = 0; le < experts; ++le) {
    if (got.expert_counts[le] != expected_.expert_counts[le]) {
      return absl::DataLossError(absl::StrCat("rank ", rank_, " local expert ", le, " got ",
                                              got.expert_counts[le], " rows, expected ",
                                              expected_.expert_counts[le]));
    }
  }
  DispatchCheck stats;
  const size_t row_bytes = static_cast<size_t>(got.x_stride) * ep::DTypeSize(got.x_dtype);
  for (int64_t i = 0; i < n; ++i) {
    const ep::DispatchRow& want = expected_.rows[i];
    if (got.src_rank[i] != want.src_rank || got.src_token[i] != want.src_token ||
        got.local_expert[i] != want.local_expert ||
        (!want.is_padding() && Bits(got.weight[i]) != Bits(want.weight))) {
      return absl::DataLossError(absl::StrFormat(
          "dispatch row %d of rank %d is (source rank %d, token %d, local expert %d, weight %g), "
          "expected (%d, %d, %d, %g)",
          i, rank_, got.src_rank[i], got.src_token[i], got.local_expert[i], got.weight[i],
          want.src_rank, want.src_token, want.local_expert, want.weight));
    }
    if (want.is_padding()) continue;
    const void* row = static_cast<const char*>(got.x) + static_cast<size_t>(i) * row_bytes;
    TR_RETURN_IF_ERROR(CheckRowPayload(i, want, row, got.x_dtype, &stats));
    ++stats.rows_checked;
  }
  return stats;
}

void Checker::RunExperts(const DispatchView& got, void* out) const {
  const int64_t H = spec_.hidden;
  const int first = spec_.topology.first_expert_of_rank(rank_);
  const size_t in_row_bytes = static_cast<size_t>(got.x_stride) * ep::DTypeSize(got.x_dtype);
  std::vector<float> in(H), res(H);
  for (int64_t i = 0; i < got.rows; ++i) {
    if (got.src_rank[i] < 0) {
      std::fill(res.begin(), res.end(), 0.0f);
    } else {
      WidenRow(static_cast<const char*>(got.x) + i * in_row_bytes, got.x_dtype, H, in.data());
      experts_.Apply(first + got.local_expert[i], in.data(), res.data());
    }
    if (options_.expert_dtype == ep::DType::kBFloat16) {
      ep::FloatToBf16(res.data(), H, static_cast<uint16_t*>(out) + i * H);
    } else {
      std::memcpy(static_cast<float*>(out) + i * H, res.data(), H * sizeof(float));
    }
  }
}

absl::Status Checker::CheckCombine(absl::Span<const float> y) const {
  const int64_t T = spec_.tokens, H = spec_.hidden;
  if (static_cast<int64_t>(y.size()) != T * H) {
    return absl::DataLossError(absl::StrCat("combine returned ", y.size(), " values to rank ",
                                            rank_, ", expected ", T * H));
  }
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < T * H; ++i) {
    // Written so that NaN fails.
    const bool ok = std::fabs(y[i] - y_ref_[i]) <= y_tol_[i];
    if (!ok) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  if (bad == 0) return absl::OkStatus();
  const int64_t t = first / H, c = first % H;
  return absl::DataLossError(absl::StrFormat(
      "combine of rank %d: %d values outside the tolerance; first at token %d column %d: got %g, "
      "expected %g, tolerance %g",
      rank_, bad, t, c, y[first], y_ref_[first], y_tol_[first]));
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
