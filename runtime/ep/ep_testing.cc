#include "runtime/ep/ep_testing.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "runtime/ep/gate.h"
#include "runtime/ep/kernels.h"
#include "runtime/ep/numeric.h"
#include "runtime/ep/reference.h"
#include "runtime/ep/wire.h"

namespace tokenrail {
namespace ep {
namespace testing {
namespace {

uint64_t Mix(uint64_t a, uint64_t b) {
  uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 29;
  return h;
}

void HashBytes(uint64_t* h, const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint64_t v = *h == 0 ? 1469598103934665603ull : *h;
  for (size_t i = 0; i < n; ++i) {
    v ^= p[i];
    v *= 1099511628211ull;
  }
  *h = v;
}

// A timed-out wait says what the engine was waiting for.
absl::Status WithProgress(const absl::Status& s, const EpBuffer& buffer) {
  if (s.code() != absl::StatusCode::kDeadlineExceeded) return s;
  const std::string progress = buffer.Progress();
  if (progress.empty()) return s;
  return absl::Status(s.code(), absl::StrCat(s.message(), " (engine: ", progress, ")"));
}

absl::Status Mismatch(int rank, int round, const std::string& what) {
  return absl::DataLossError(absl::StrCat("rank ", rank, " round ", round, ": ", what));
}

// The expert of global id e: identity, or out = M_e x with M_e a seeded
// random matrix (row-major, entries ~ N(0, 1/hidden)).
class Experts {
 public:
  Experts(const Scenario& s) : s_(s), hidden_(s.config.hidden) {
    if (s.experts == ExpertKind::kLinear) {
      const int E = s.config.topology.experts;
      m_.resize(static_cast<size_t>(E));
      for (int e = 0; e < E; ++e) {
        std::mt19937_64 rng(Mix(s.seed ^ 0xE1, static_cast<uint64_t>(e)));
        std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(static_cast<float>(hidden_)));
        m_[e].resize(static_cast<size_t>(hidden_ * hidden_));
        for (float& v : m_[e]) v = nd(rng);
      }
    }
  }
  // out[hidden] = expert e applied to x[hidden].
  void Apply(int e, const float* x, float* out) const {
    if (s_.experts == ExpertKind::kIdentity) {
      std::copy(x, x + hidden_, out);
      return;
    }
    const float* m = m_[e].data();
    for (int64_t i = 0; i < hidden_; ++i) {
      float acc = 0.0f;
      for (int64_t j = 0; j < hidden_; ++j) acc = acc + m[i * hidden_ + j] * x[j];
      out[i] = acc;
    }
  }

 private:
  const Scenario& s_;
  const int64_t hidden_;
  std::vector<std::vector<float>> m_;
};

// What an expert row holds after the wire: `x` (FP32 values) packed and
// unpacked exactly as the engine does. `row` gets ExpertDType bytes;
// `scales` the FP8 tile scales when kept.
void WireRow(const EpConfig& c, const float* x, uint8_t* row, float* scales) {
  const DispatchRecordLayout d = DispatchRecordLayout::Make(c.top_k, c.hidden, c.dispatch_dtype);
  std::vector<char> payload(d.payload_bytes + 16);
  std::vector<float> wire_scales(static_cast<size_t>(std::max<int64_t>(d.tiles, 1)));
  (void)PackRow(x, DType::kFloat32, c.hidden, c.dispatch_dtype, payload.data(), wire_scales.data());
  UnpackRow(payload.data(), wire_scales.data(), c.dispatch_dtype, c.hidden, c.fp8_keep_quantized,
            row, scales);
}

// An expert row as FP32 values.
void RowToFloat(const EpConfig& c, DType dtype, const uint8_t* row, const float* scales,
                float* out) {
  if (dtype == DType::kFloat32) {
    std::memcpy(out, row, c.hidden * sizeof(float));
  } else if (dtype == DType::kBFloat16) {
    Bf16ToFloat(reinterpret_cast<const uint16_t*>(row), c.hidden, out);
  } else {
    DequantizeRowFp8(row, scales, c.hidden, out);
  }
}

}  // namespace

std::string RankReport::Summary() const {
  return absl::StrFormat(
      "rows=%d tokens_in=%d y_hash=%016x max_combine_err=%.3g fp8_err_ratio=%.3g "
      "inter_record_bytes=%d inter_meta_bytes=%d inter_credit_bytes=%d intra_bytes=%d",
      rows, received_tokens, y_hash, max_combine_error, max_fp8_error_ratio,
      dispatch_stats.inter_node_record_bytes, dispatch_stats.inter_node_metadata_bytes,
      dispatch_stats.inter_node_credit_bytes, dispatch_stats.intra_node_bytes);
}

int64_t TokensOf(const Scenario& s, int rank) {
  if (s.zero_token_ranks && rank % 3 == 1) return 0;
  return s.tokens + (s.uneven_tokens ? (rank * 7) % 13 : 0);
}

absl::StatusOr<std::vector<RankData>> MakeInputs(const Scenario& s, int round) {
  const EpConfig& c = s.config;
  const EpTopology& topo = c.topology;
  const int k = c.top_k;
  const int E = topo.experts;
  const int W = topo.world_size();
  const int routing_round = s.reuse_layout ? 0 : round;
  std::vector<RankData> out(static_cast<size_t>(W));
  for (int r = 0; r < W; ++r) {
    RankData& d = out[r];
    d.tokens = TokensOf(s, r);
    const int64_t T = d.tokens;
    d.topk_idx.assign(T * k, -1);
    d.weights.assign(T * k, 0.0f);
    std::mt19937_64 route_rng(Mix(Mix(s.seed, r), 1000 + routing_round));
    if (s.routing == RoutingPattern::kOneExpert) {
      const int hot = static_cast<int>(Mix(s.seed, 77) % static_cast<uint64_t>(E));
      for (int64_t t = 0; t < T; ++t) {
        d.topk_idx[t * k] = hot;
        d.weights[t * k] = 1.0f;
      }
    } else if (T > 0) {
      std::normal_distribution<float> nd(0.0f, 1.0f);
      std::vector<float> logits(static_cast<size_t>(T * E));
      for (float& v : logits) v = nd(route_rng);
      GateOptions g;
      g.top_k = k;
      g.max_nodes = c.max_nodes;
      TR_RETURN_IF_ERROR(
          Gate(topo, g, T, logits, {}, absl::MakeSpan(d.topk_idx), absl::MakeSpan(d.weights)));
      if (s.routing == RoutingPattern::kSparse) {
        std::uniform_int_distribution<int> u(0, 3);
        for (int64_t t = 0; t < T; ++t) {
          for (int j = 0; j < k; ++j) {
            if (t % 5 == 0 || u(route_rng) == 0) {
              d.topk_idx[t * k + j] = -1;
              d.weights[t * k + j] = 0.0f;
            }
          }
        }
      }
    }
    d.x.assign(static_cast<size_t>(T * c.hidden), 0.0f);
    if (s.payload == PayloadKind::kEncoded) {
      const int code = r + W * round;
      if (code >= kPayloadMaxRanks || T > kPayloadMaxTokens) {
        return absl::InvalidArgumentError("scenario too large for encoded payloads");
      }
      TR_RETURN_IF_ERROR(FillEncodedPayload(code, T, c.hidden, absl::MakeSpan(d.x)));
    } else {
      std::mt19937_64 rng(Mix(Mix(s.seed, r), 2000 + round));
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (float& v : d.x) v = nd(rng);
    }
    if (s.x_dtype == DType::kBFloat16) {
      d.x_bf16.resize(d.x.size());
      FloatToBf16(d.x.data(), static_cast<int64_t>(d.x.size()), d.x_bf16.data());
      Bf16ToFloat(d.x_bf16.data(), static_cast<int64_t>(d.x.size()), d.x.data());
    }
  }
  return out;
}

absl::StatusOr<RankReport> RunRank(EpBuffer& buffer, const Scenario& s) {
  const EpConfig& c = s.config;
  const EpTopology& topo = c.topology;
  const int me = buffer.topology().global_rank;
  const int W = topo.world_size();
  const int k = c.top_k;
  const int64_t H = c.hidden;
  const int epr = topo.experts_per_rank();
  const DType xdt = ExpertDType(c.dispatch_dtype, c.fp8_keep_quantized);
  const size_t row_bytes = static_cast<size_t>(H) * DTypeSize(xdt);
  const int64_t tiles = Fp8TilesPerRow(H);
  const Experts experts(s);
  const DispatchRecordLayout drec = DispatchRecordLayout::Make(k, H, c.dispatch_dtype);
  RankReport report;
  std::shared_ptr<const DispatchHandle> first;

  for (int round = 0; round < s.rounds; ++round) {
    TR_ASSIGN_OR_RETURN(std::vector<RankData> inputs, MakeInputs(s, round));
    const RankData& mine = inputs[me];
    DispatchInput in;
    in.tokens = mine.tokens;
    in.x_dtype = s.x_dtype;
    in.x = s.x_dtype == DType::kBFloat16 ? static_cast<const void*>(mine.x_bf16.data())
                                         : static_cast<const void*>(mine.x.data());
    in.topk_idx = mine.topk_idx.data();
    in.topk_weights = mine.weights.data();
    const bool reuse = round > 0 && s.reuse_layout;
    TR_ASSIGN_OR_RETURN(std::shared_ptr<DispatchHandle> d,
                        buffer.Dispatch(in, reuse ? first : nullptr));
    TR_RETURN_IF_ERROR(WithProgress(d->Wait(absl::Now() + s.timeout), buffer));
    if (round == 0) first = d;
    const DispatchOutput& o = d->output();

    std::vector<RankInput> ri(static_cast<size_t>(W));
    for (int r = 0; r < W; ++r) {
      ri[r].num_tokens = inputs[r].tokens;
      ri[r].x = inputs[r].x;
      ri[r].topk_idx = inputs[r].topk_idx;
      ri[r].topk_weights = inputs[r].weights;
    }
    ReferenceOptions ro;
    ro.top_k = k;
    ro.hidden = H;
    ro.align = c.align;
    TR_ASSIGN_OR_RETURN(std::vector<RankDispatch> ref, ReferenceDispatch(topo, ro, ri));
    const RankDispatch& rd = ref[me];

    // ---- dispatch metadata ----
    if (o.rows != static_cast<int64_t>(rd.rows.size()) || o.received_tokens != rd.received_tokens) {
      return Mismatch(
          me, round,
          absl::StrCat("dispatch gave ", o.rows, " rows / ", o.received_tokens,
                       " tokens, the reference ", rd.rows.size(), " / ", rd.received_tokens));
    }
    for (int e = 0; e < epr; ++e) {
      if (o.expert_counts[e] != rd.expert_counts[e] ||
          o.expert_offsets[e] != rd.expert_offsets[e]) {
        return Mismatch(me, round,
                        absl::StrCat("local expert ", e, ": count ", o.expert_counts[e], " offset ",
                                     o.expert_offsets[e], ", reference ", rd.expert_counts[e], " ",
                                     rd.expert_offsets[e]));
      }
    }
    std::vector<uint8_t> want(row_bytes);
    std::vector<float> want_scales(static_cast<size_t>(tiles)), got_f(H), src_scales(tiles);
    std::vector<uint8_t> q(static_cast<size_t>(H));
    for (int64_t i = 0; i < o.rows; ++i) {
      const DispatchRow& row = rd.rows[i];
      if (o.src_rank[i] != row.src_rank || o.src_token[i] != row.src_token ||
          o.local_expert[i] != row.local_expert || o.topk_slot[i] != row.topk_slot ||
          o.weights[i] != row.weight) {
        return Mismatch(
            me, round,
            absl::StrCat("row ", i, " is (rank ", o.src_rank[i], ", token ", o.src_token[i],
                         ", expert ", o.local_expert[i], ", slot ", o.topk_slot[i], ", w ",
                         o.weights[i], "), reference (", row.src_rank, ", ", row.src_token, ", ",
                         row.local_expert, ", ", row.topk_slot, ", ", row.weight, ")"));
      }
      const uint8_t* got = static_cast<const uint8_t*>(o.x) + i * row_bytes;
      const float* got_scales = o.x_scales != nullptr ? o.x_scales + i * tiles : nullptr;
      HashBytes(&report.dispatch_hash, got, row_bytes);
      if (row.is_padding()) {
        for (size_t b = 0; b < row_bytes; ++b) {
          if (got[b] != 0)
            return Mismatch(me, round, absl::StrCat("padding row ", i, " is not zero"));
        }
        continue;
      }
      const float* src = rd.x.data() + i * H;
      WireRow(c, src, want.data(), want_scales.data());
      if (std::memcmp(want.data(), got, row_bytes) != 0 ||
          (got_scales != nullptr &&
           std::memcmp(want_scales.data(), got_scales, tiles * sizeof(float)) != 0)) {
        size_t b = 0;
        while (b < row_bytes && want[b] == got[b]) ++b;
        return Mismatch(me, round,
                        absl::StrCat("row ", i, " (rank ", row.src_rank, " token ", row.src_token,
                                     ") differs from the source row "
                                     "after the wire's rounding at byte ",
                                     b));
      }
      RowToFloat(c, xdt, got, got_scales, got_f.data());
      if (s.payload == PayloadKind::kEncoded && c.dispatch_dtype != DType::kFp8E4M3) {
        absl::StatusOr<PayloadOrigin> origin = DecodePayloadRow(got_f);
        if (!origin.ok() || origin->rank != row.src_rank + W * round ||
            origin->token != row.src_token) {
          return Mismatch(me, round,
                          absl::StrCat("row ", i, " does not decode to its source: ",
                                       origin.ok() ? "wrong origin" : origin.status().ToString()));
        }
      }
      if (c.dispatch_dtype == DType::kFp8E4M3) {
        TR_RETURN_IF_ERROR(QuantizeRowFp8(src, H, q.data(), src_scales.data()));
        for (int64_t col = 0; col < H; ++col) {
          double bound = Fp8ErrorBound(src[col], src_scales[col / kFp8TileSize]);
          if (!c.fp8_keep_quantized) bound += Bf16RoundingBound(got_f[col]);
          const double err = std::fabs(static_cast<double>(src[col]) - got_f[col]);
          const double ratio = bound > 0 ? err / bound : (err == 0 ? 0 : INFINITY);
          report.max_fp8_error_ratio = std::max(report.max_fp8_error_ratio, ratio);
          if (ratio > 1.0) {
            return Mismatch(me, round,
                            absl::StrCat("FP8 row ", i, " column ", col, ": ", got_f[col], " for ",
                                         src[col], " exceeds the E4M3 bound ", bound));
          }
        }
      }
    }
    report.rows = o.rows;
    report.received_tokens = o.received_tokens;

    // ---- experts, on this rank and (for the reference) on every rank ----
    auto expert_outputs = [&](int r, const RankDispatch& rdr, const uint8_t* engine_rows,
                              const float* engine_scales) {
      std::vector<float> out(rdr.rows.size() * H, 0.0f);
      std::vector<uint8_t> wire(row_bytes);
      std::vector<float> sc(static_cast<size_t>(tiles)), xin(H);
      for (size_t i = 0; i < rdr.rows.size(); ++i) {
        if (rdr.rows[i].is_padding()) continue;
        const uint8_t* row = engine_rows != nullptr ? engine_rows + i * row_bytes : nullptr;
        const float* rs = engine_scales != nullptr ? engine_scales + i * tiles : nullptr;
        if (row == nullptr) {
          WireRow(c, rdr.x.data() + i * H, wire.data(), sc.data());
          row = wire.data();
          rs = sc.data();
        }
        RowToFloat(c, xdt, row, rs, xin.data());
        experts.Apply(topo.first_expert_of_rank(r) + rdr.rows[i].local_expert, xin.data(),
                      out.data() + i * H);
      }
      if (s.expert_out_dtype == DType::kBFloat16) {
        for (float& v : out) v = Bf16ToFloat(FloatToBf16(v));
      }
      return out;
    };
    std::vector<std::vector<float>> outs(static_cast<size_t>(W));
    for (int r = 0; r < W; ++r) {
      outs[r] = r == me ? expert_outputs(r, ref[r], static_cast<const uint8_t*>(o.x), o.x_scales)
                        : expert_outputs(r, ref[r], nullptr, nullptr);
    }
    std::vector<uint16_t> mine_bf16;
    CombineInput ci;
    ci.dtype = s.expert_out_dtype;
    if (s.expert_out_dtype == DType::kBFloat16) {
      mine_bf16.resize(outs[me].size());
      FloatToBf16(outs[me].data(), static_cast<int64_t>(outs[me].size()), mine_bf16.data());
      ci.expert_out = mine_bf16.data();
    } else {
      ci.expert_out = outs[me].data();
    }
    TR_ASSIGN_OR_RETURN(std::shared_ptr<CombineHandle> ch, buffer.Combine(d, ci));
    TR_RETURN_IF_ERROR(WithProgress(ch->Wait(absl::Now() + s.timeout), buffer));
    absl::Span<const float> y = ch->y();

    std::vector<absl::Span<const float>> spans;
    for (const auto& v : outs) spans.push_back(v);
    TR_ASSIGN_OR_RETURN(std::vector<std::vector<float>> yref,
                        ReferenceCombine(topo, ro, ri, ref, spans));
    // Magnitudes: the same sums over |w| and |out|.
    std::vector<std::vector<float>> abs_w(static_cast<size_t>(W));
    std::vector<RankInput> ri_abs = ri;
    for (int r = 0; r < W; ++r) {
      abs_w[r] = inputs[r].weights;
      for (float& v : abs_w[r]) v = std::fabs(v);
      ri_abs[r].topk_weights = abs_w[r];
    }
    std::vector<std::vector<float>> abs_out = outs;
    for (auto& v : abs_out) {
      for (float& x : v) x = std::fabs(x);
    }
    std::vector<absl::Span<const float>> abs_spans;
    for (const auto& v : abs_out) abs_spans.push_back(v);
    TR_ASSIGN_OR_RETURN(std::vector<std::vector<float>> mag,
                        ReferenceCombine(topo, ro, ri_abs, ref, abs_spans));
    const double tol = c.combine_dtype == DType::kFloat32 ? 0x1p-20 : 0x1p-6;
    if (y.size() != yref[me].size()) {
      return Mismatch(
          me, round,
          absl::StrCat("combine gave ", y.size(), " values, expected ", yref[me].size()));
    }
    for (size_t i = 0; i < y.size(); ++i) {
      const double err = std::fabs(static_cast<double>(y[i]) - yref[me][i]);
      const double m = mag[me][i];
      if (m > 0) report.max_combine_error = std::max(report.max_combine_error, err / m);
      if (!(err <= tol * m + 1e-30)) {
        return Mismatch(me, round,
                        absl::StrCat("combine token ", i / H, " column ", i % H, ": ", y[i],
                                     ", reference ", yref[me][i], " (tolerance ", tol * m, ")"));
      }
    }
    HashBytes(&report.y_hash, y.data(), y.size() * sizeof(float));

    // ---- bytes: tokens x remote destination peers x record size ----
    uint64_t remote = 0;
    const int my_node = topo.node_of_rank(me);
    for (int64_t t = 0; t < mine.tokens; ++t) {
      std::vector<bool> seen_node(topo.nodes, false), seen_rank(W, false);
      for (int j = 0; j < k; ++j) {
        const int e = mine.topk_idx[t * k + j];
        if (e < 0) continue;
        const int n = topo.node_of_expert(e), r = topo.rank_of_expert(e);
        if (n == my_node) continue;
        if (c.routing == EpRouting::kFlat) {
          if (!seen_rank[r]) ++remote;
          seen_rank[r] = true;
        } else {
          if (!seen_node[n]) ++remote;
          seen_node[n] = true;
        }
      }
    }
    report.expected_inter_record_bytes = remote * drec.size;
    report.dispatch_stats = d->stats();
    report.combine_stats = ch->stats();
    if (d->stats().inter_node_record_bytes != report.expected_inter_record_bytes) {
      return Mismatch(me, round,
                      absl::StrCat("dispatch sent ", d->stats().inter_node_record_bytes,
                                   " inter-node record bytes, expected ", remote, " records x ",
                                   drec.size, " B"));
    }
  }
  return report;
}

}  // namespace testing
}  // namespace ep
}  // namespace tokenrail
