#include "tools/bench/ep/check.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/ep/numeric.h"
#include "runtime/ep/reference.h"
#include "runtime/ep/types.h"
#include "tools/bench/ep/workload.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

WorkloadSpec Spec(ExpertKind expert = ExpertKind::kIdentity) {
  WorkloadSpec s;
  s.topology = ep::EpTopology{2, 2, 8};
  s.tokens = 40;
  s.hidden = 200;  // not a multiple of the FP8 tile
  s.top_k = 3;
  s.max_nodes = 2;
  s.expert = expert;
  s.seed = 11;
  return s;
}

// A perfect dispatch output built from the reference, and everything a
// test needs to derive the combine.
struct World {
  WorkloadSpec spec;
  std::vector<RankWorkload> in;
  std::vector<ep::RankInput> inputs;
  std::vector<ep::RankDispatch> dispatch;
  ep::ReferenceOptions ro;
};

World MakeWorld(const WorkloadSpec& spec) {
  World w;
  w.spec = spec;
  for (int r = 0; r < spec.topology.world_size(); ++r) {
    auto rw = MakeRankWorkload(spec, r, kPayloadF32 | kPayloadBf16);
    EXPECT_TRUE(rw.ok()) << rw.status();
    w.in.push_back(std::move(*rw));
  }
  for (const RankWorkload& rw : w.in) {
    w.inputs.push_back({rw.tokens, rw.x_f32, rw.topk_idx, rw.topk_weights});
  }
  w.ro.top_k = spec.top_k;
  w.ro.hidden = spec.hidden;
  auto d = ep::ReferenceDispatch(spec.topology, w.ro, w.inputs);
  EXPECT_TRUE(d.ok()) << d.status();
  w.dispatch = std::move(*d);
  return w;
}

// The rank's dispatch output as the checker consumes it.
struct Output {
  std::vector<int32_t> src_rank, src_token, local_expert, counts;
  std::vector<float> weight;
  std::vector<uint16_t> x_bf16;
  std::vector<float> x_f32;
  ep::DType dtype = ep::DType::kBFloat16;
  int64_t hidden = 0;

  DispatchView View() const {
    DispatchView v;
    v.rows = static_cast<int64_t>(src_rank.size());
    v.src_rank = src_rank;
    v.src_token = src_token;
    v.local_expert = local_expert;
    v.weight = weight;
    v.expert_counts = counts;
    v.x_dtype = dtype;
    v.x = dtype == ep::DType::kBFloat16 ? static_cast<const void*>(x_bf16.data()) : x_f32.data();
    v.x_stride = hidden;
    return v;
  }
};

Output PerfectOutput(const World& w, int rank, ep::DType dtype, bool fp8) {
  const ep::RankDispatch& d = w.dispatch[rank];
  const int64_t H = w.spec.hidden;
  Output o;
  o.dtype = dtype;
  o.hidden = H;
  o.counts = d.expert_counts;
  std::vector<float> row(H);
  std::vector<uint8_t> q(H);
  std::vector<float> scales(ep::Fp8TilesPerRow(H));
  for (const ep::DispatchRow& r : d.rows) {
    o.src_rank.push_back(r.src_rank);
    o.src_token.push_back(r.src_token);
    o.local_expert.push_back(r.local_expert);
    o.weight.push_back(r.weight);
    const float* x = w.in[r.src_rank].x_f32.data() + r.src_token * H;
    if (fp8) {
      EXPECT_TRUE(ep::QuantizeRowFp8(x, H, q.data(), scales.data()).ok());
      ep::DequantizeRowFp8(q.data(), scales.data(), H, row.data());
    } else {
      std::copy(x, x + H, row.begin());
    }
    for (int64_t c = 0; c < H; ++c) {
      o.x_f32.push_back(row[c]);
      o.x_bf16.push_back(ep::FloatToBf16(row[c]));
    }
  }
  return o;
}

std::unique_ptr<Checker> MakeChecker(const WorkloadSpec& spec, int rank, ep::DType dispatch,
                                     ep::DType expert, ep::DType combine) {
  CheckOptions co;
  co.dispatch_dtype = dispatch;
  co.expert_dtype = expert;
  co.combine_dtype = combine;
  auto c = Checker::Create(spec, rank, co);
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(*c);
}

// Combine through the reference: every rank's experts applied to its
// (perfect) dispatch output, then ep::ReferenceCombine.
std::vector<std::vector<float>> ReferenceY(const World& w, ep::DType dispatch, ep::DType expert) {
  const int world = w.spec.topology.world_size();
  const int64_t H = w.spec.hidden;
  std::vector<std::vector<float>> outs(world);
  for (int r = 0; r < world; ++r) {
    const Output o = PerfectOutput(w, r, expert, dispatch == ep::DType::kFp8E4M3);
    auto checker = MakeChecker(w.spec, r, dispatch, expert, ep::DType::kFloat32);
    std::vector<char> buf(o.src_rank.size() * H * ep::DTypeSize(expert));
    checker->RunExperts(o.View(), buf.data());
    outs[r].resize(o.src_rank.size() * H);
    if (expert == ep::DType::kBFloat16) {
      ep::Bf16ToFloat(reinterpret_cast<const uint16_t*>(buf.data()), outs[r].size(),
                      outs[r].data());
    } else {
      std::memcpy(outs[r].data(), buf.data(), buf.size());
    }
  }
  std::vector<absl::Span<const float>> views(outs.begin(), outs.end());
  auto y = ep::ReferenceCombine(w.spec.topology, w.ro, w.inputs, w.dispatch, views);
  EXPECT_TRUE(y.ok()) << y.status();
  return *y;
}

TEST(CheckerTest, AcceptsThePerfectExchange) {
  for (ExpertKind kind : {ExpertKind::kIdentity, ExpertKind::kLinear}) {
    for (ep::DType dt : {ep::DType::kBFloat16, ep::DType::kFloat32}) {
      const World w = MakeWorld(Spec(kind));
      const auto y = ReferenceY(w, dt, dt);
      for (int r = 0; r < 4; ++r) {
        auto checker = MakeChecker(w.spec, r, dt, dt, ep::DType::kBFloat16);
        const Output o = PerfectOutput(w, r, dt, false);
        auto d = checker->CheckDispatch(o.View());
        ASSERT_TRUE(d.ok()) << d.status();
        EXPECT_EQ(d->rows_checked, static_cast<int64_t>(o.src_rank.size()));
        EXPECT_EQ(checker->expected_rows(), static_cast<int64_t>(o.src_rank.size()));
        // The checker's expected y is ReferenceCombine's, bit for bit (the
        // same products, summed in the same order with the same roundings):
        // the tolerance is never needed for it.
        ASSERT_EQ(checker->expected_y().size(), y[r].size());
        EXPECT_EQ(
            std::memcmp(checker->expected_y().data(), y[r].data(), y[r].size() * sizeof(float)), 0);
        EXPECT_TRUE(checker->CheckCombine(y[r]).ok());
      }
    }
  }
}

TEST(CheckerTest, CatchesMisplacedAndCorruptRows) {
  const World w = MakeWorld(Spec());
  auto checker =
      MakeChecker(w.spec, 1, ep::DType::kBFloat16, ep::DType::kBFloat16, ep::DType::kBFloat16);
  const Output good = PerfectOutput(w, 1, ep::DType::kBFloat16, false);
  ASSERT_GE(good.src_rank.size(), 3u);
  const int64_t H = w.spec.hidden;

  Output swapped = good;  // payloads of rows 0 and 2 exchanged
  std::swap_ranges(swapped.x_bf16.begin(), swapped.x_bf16.begin() + H,
                   swapped.x_bf16.begin() + 2 * H);
  auto s = checker->CheckDispatch(swapped.View());
  ASSERT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.status().message().find("dispatch row 0"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("it carries rank"), std::string::npos) << s.status();

  Output one_value = good;
  one_value.x_bf16[H + 77] ^= 1;
  s = checker->CheckDispatch(one_value.View());
  ASSERT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.status().message().find("dispatch row 1"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("column 77"), std::string::npos) << s.status();

  Output meta = good;
  meta.src_token[2] += 1;
  EXPECT_EQ(checker->CheckDispatch(meta.View()).status().code(), absl::StatusCode::kDataLoss);
  Output weight = good;
  weight.weight[0] = std::nextafter(weight.weight[0], 2.0f);
  EXPECT_EQ(checker->CheckDispatch(weight.View()).status().code(), absl::StatusCode::kDataLoss);
  Output counts = good;
  counts.counts[0] += 1;
  EXPECT_NE(checker->CheckDispatch(counts.View()).status().message().find("local expert 0"),
            std::string::npos);
  Output short_output = good;
  short_output.src_rank.pop_back();
  EXPECT_EQ(checker->CheckDispatch(short_output.View()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(CheckerTest, CombineToleranceCoversBf16PartialsAndCatchesErrors) {
  const World w = MakeWorld(Spec(ExpertKind::kLinear));
  const auto y = ReferenceY(w, ep::DType::kBFloat16, ep::DType::kBFloat16);
  auto checker =
      MakeChecker(w.spec, 2, ep::DType::kBFloat16, ep::DType::kBFloat16, ep::DType::kBFloat16);
  // Rounding y to BF16 twice (what two BF16 partial hops can do at most) is
  // inside the tolerance...
  std::vector<float> rounded = y[2];
  for (float& v : rounded) v = ep::Bf16ToFloat(ep::FloatToBf16(v * (1 + 0x1p-9f)));
  EXPECT_TRUE(checker->CheckCombine(rounded).ok()) << checker->CheckCombine(rounded);
  // ... a 2% error is not (identity experts with positive weights: no
  // cancellation, S = |y|), and the message names the place.
  const World wi = MakeWorld(Spec(ExpertKind::kIdentity));
  const auto yi = ReferenceY(wi, ep::DType::kBFloat16, ep::DType::kBFloat16);
  auto ci =
      MakeChecker(wi.spec, 2, ep::DType::kBFloat16, ep::DType::kBFloat16, ep::DType::kBFloat16);
  EXPECT_TRUE(ci->CheckCombine(yi[2]).ok());
  std::vector<float> bad = yi[2];
  bad[5 * w.spec.hidden + 17] *= 1.02f;
  const absl::Status s = ci->CheckCombine(bad);
  ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("token 5 column 17"), std::string::npos) << s;
  EXPECT_NE(s.message().find("1 values"), std::string::npos) << s;
  std::vector<float> nan = y[2];
  nan[0] = std::nanf("");
  EXPECT_EQ(checker->CheckCombine(nan).code(), absl::StatusCode::kDataLoss);
  // With an FP32 combine the tolerance is tight: BF16 rounding fails.
  auto fp32 =
      MakeChecker(w.spec, 2, ep::DType::kBFloat16, ep::DType::kBFloat16, ep::DType::kFloat32);
  EXPECT_TRUE(fp32->CheckCombine(y[2]).ok());
  std::vector<float> coarse = y[2];
  for (float& v : coarse) v = ep::Bf16ToFloat(ep::FloatToBf16(v * (1 + 0x1p-9f)));
  EXPECT_FALSE(fp32->CheckCombine(coarse).ok());
}

TEST(CheckerTest, Fp8WithinBoundAndCountsInexactRows) {
  const World w = MakeWorld(Spec(ExpertKind::kLinear));
  for (ep::DType expert : {ep::DType::kBFloat16, ep::DType::kFloat32}) {
    auto checker = MakeChecker(w.spec, 0, ep::DType::kFp8E4M3, expert, ep::DType::kBFloat16);
    Output o = PerfectOutput(w, 0, expert, /*fp8=*/true);
    auto d = checker->CheckDispatch(o.View());
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->fp8_inexact_rows, 0);
    // The combine of FP8-dequantized rows matches the checker's expectation.
    const auto y = ReferenceY(w, ep::DType::kFp8E4M3, expert);
    EXPECT_TRUE(checker->CheckCombine(y[0]).ok()) << checker->CheckCombine(y[0]);
  }
  auto checker =
      MakeChecker(w.spec, 0, ep::DType::kFp8E4M3, ep::DType::kFloat32, ep::DType::kBFloat16);
  Output o = PerfectOutput(w, 0, ep::DType::kFloat32, true);
  // The first nonzero value of the output (row 0's): nudged by one float ulp
  // toward zero it is still inside the E4M3 bound but no longer numeric.h's
  // quantization, so the row counts as inexact.
  int64_t c = 0;
  while (o.x_f32[c] == 0.0f) ++c;
  Output nudged = o;
  nudged.x_f32[c] = std::nextafter(nudged.x_f32[c], 0.0f);
  auto d = checker->CheckDispatch(nudged.View());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->fp8_inexact_rows, 1);
  // 30% off is outside the E4M3 bound (relative 2^-4 at most).
  Output wrong = o;
  wrong.x_f32[c] *= 1.3f;
  const absl::Status s = checker->CheckDispatch(wrong.View()).status();
  ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("E4M3 bound"), std::string::npos) << s;
}

TEST(CheckerTest, TrafficCountsDestinations) {
  const World w = MakeWorld(Spec());
  auto checker =
      MakeChecker(w.spec, 3, ep::DType::kBFloat16, ep::DType::kBFloat16, ep::DType::kBFloat16);
  const Traffic& t = checker->traffic();
  const ep::EpTopology& topo = w.spec.topology;
  int64_t remote_nodes = 0, remote_ranks = 0, local_ranks = 0, self = 0;
  for (int64_t tok = 0; tok < w.spec.tokens; ++tok) {
    std::vector<bool> node(topo.nodes), rank(topo.world_size());
    for (int j = 0; j < w.spec.top_k; ++j) {
      const int e = w.in[3].topk_idx[tok * w.spec.top_k + j];
      node[topo.node_of_expert(e)] = true;
      rank[topo.rank_of_expert(e)] = true;
    }
    for (int n = 0; n < topo.nodes; ++n) remote_nodes += node[n] && n != 1;
    for (int r = 0; r < topo.world_size(); ++r) {
      if (!rank[r]) continue;
      (topo.node_of_rank(r) == 1 ? local_ranks : remote_ranks) += 1;
      self += r == 3;
    }
  }
  EXPECT_EQ(t.remote_node_copies, remote_nodes);
  EXPECT_EQ(t.remote_rank_copies, remote_ranks);
  EXPECT_EQ(t.local_rank_copies, local_ranks);
  EXPECT_EQ(t.self_copies, self);
  EXPECT_EQ(t.routed_slots, w.spec.tokens * w.spec.top_k);
  EXPECT_GT(remote_nodes, 0);
}

TEST(CheckerTest, RejectsBadOptions) {
  CheckOptions co;
  co.expert_dtype = ep::DType::kFp8E4M3;
  EXPECT_EQ(Checker::Create(Spec(), 0, co).status().code(), absl::StatusCode::kInvalidArgument);
  co = CheckOptions();
  EXPECT_EQ(Checker::Create(Spec(), 4, co).status().code(), absl::StatusCode::kInvalidArgument);
  co.align = 0;
  EXPECT_EQ(Checker::Create(Spec(), 0, co).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
