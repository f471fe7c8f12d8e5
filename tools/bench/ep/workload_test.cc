#include "tools/bench/ep/workload.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "gtest/gtest.h"
#include "runtime/ep/layout.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

WorkloadSpec Spec() {
  WorkloadSpec s;
  s.topology = ep::EpTopology{2, 2, 16};
  s.tokens = 512;
  s.hidden = 64;
  s.top_k = 4;
  s.max_nodes = 1;
  s.seed = 7;
  return s;
}

TEST(WorkloadTest, DeterministicPerRankAndSeed) {
  const WorkloadSpec s = Spec();
  auto a = MakeRankWorkload(s, 1, kPayloadBf16 | kPayloadF32);
  auto b = MakeRankWorkload(s, 1, kPayloadBf16);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->topk_idx, b->topk_idx);
  EXPECT_EQ(0, std::memcmp(a->topk_weights.data(), b->topk_weights.data(),
                           a->topk_weights.size() * sizeof(float)));
  EXPECT_EQ(a->x_bf16, b->x_bf16);
  EXPECT_TRUE(b->x_f32.empty());
  ASSERT_EQ(a->x_f32.size(), a->x_bf16.size());
  auto other_rank = MakeRankWorkload(s, 2, kNoPayload);
  ASSERT_TRUE(other_rank.ok());
  EXPECT_NE(a->topk_idx, other_rank->topk_idx);
  WorkloadSpec s2 = s;
  s2.seed = 8;
  auto other_seed = MakeRankWorkload(s2, 1, kNoPayload);
  ASSERT_TRUE(other_seed.ok());
  EXPECT_NE(a->topk_idx, other_seed->topk_idx);
}

TEST(WorkloadTest, RoutingRespectsNodeLimit) {
  WorkloadSpec s = Spec();
  s.topology = ep::EpTopology{4, 2, 32};
  s.max_nodes = 2;
  auto w = MakeRankWorkload(s, 3, kNoPayload);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int64_t t = 0; t < s.tokens; ++t) {
    std::vector<int> nodes;
    for (int j = 0; j < s.top_k; ++j) {
      const int32_t e = w->topk_idx[t * s.top_k + j];
      ASSERT_GE(e, 0);
      nodes.push_back(s.topology.node_of_expert(e));
    }
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    EXPECT_LE(nodes.size(), 2u) << "token " << t;
    float sum = 0;
    for (int j = 0; j < s.top_k; ++j) sum += w->topk_weights[t * s.top_k + j];
    EXPECT_NEAR(sum, 1.0f, 1e-5f);
  }
}

// Load of the most popular expert over the mean, over all ranks.
double Imbalance(const WorkloadSpec& s) {
  std::vector<int64_t> load(s.topology.experts, 0);
  for (int r = 0; r < s.topology.world_size(); ++r) {
    auto w = MakeRankWorkload(s, r, kNoPayload);
    EXPECT_TRUE(w.ok());
    for (int32_t e : w->topk_idx) ++load[e];
  }
  const double mean =
      std::accumulate(load.begin(), load.end(), 0.0) / static_cast<double>(load.size());
  return *std::max_element(load.begin(), load.end()) / mean;
}

TEST(WorkloadTest, SkewConcentratesLoad) {
  WorkloadSpec s = Spec();
  s.max_nodes = 2;
  const double uniform = Imbalance(s);
  EXPECT_LT(uniform, 1.3);
  s.skew = *ParseSkew("zipf:1.5");
  const double zipf = Imbalance(s);
  EXPECT_GT(zipf, 2.0);
  s.skew = *ParseSkew("hot:5:4");
  const double hot = Imbalance(s);
  EXPECT_GT(hot, 3.0);  // most tokens pick expert 5 (the mean is top_k/E = 1/4)
}

TEST(WorkloadTest, ParseSkew) {
  EXPECT_EQ(ParseSkew("none")->kind, Skew::Kind::kNone);
  EXPECT_EQ(ParseSkew("zipf:1.2")->exponent, 1.2);
  auto hot = ParseSkew("hot:3:2.5");
  ASSERT_TRUE(hot.ok());
  EXPECT_EQ(hot->hot_expert, 3);
  EXPECT_EQ(hot->boost, 2.5);
  EXPECT_EQ(FormatSkew(*hot), "hot:3:2.5");
  for (const char* bad : {"", "zipf", "zipf:-1", "zipf:nan", "hot:1", "hot:x:1", "cold:1"}) {
    EXPECT_EQ(ParseSkew(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  WorkloadSpec s = Spec();
  s.skew = *ParseSkew("hot:16:1");
  EXPECT_NE(Validate(s).message().find("hot expert 16"), std::string::npos);
}

TEST(WorkloadTest, ValidateNamesValues) {
  WorkloadSpec s = Spec();
  s.hidden = 2;
  EXPECT_NE(Validate(s).message().find("hidden=2"), std::string::npos);
  s = Spec();
  s.tokens = 70000;
  EXPECT_NE(Validate(s).message().find("tokens=70000"), std::string::npos);
  s = Spec();
  s.max_nodes = 3;
  EXPECT_EQ(Validate(s).code(), absl::StatusCode::kInvalidArgument);
}

TEST(WorkloadTest, LinearExpertsAreLinearAndMixColumns) {
  WorkloadSpec s = Spec();
  s.expert = ExpertKind::kLinear;
  Experts ex(s);
  const int64_t H = s.hidden;
  std::vector<float> x(H, 0.0f), y(H), out(H);
  x[10] = 1.0f;
  ex.Apply(3, x.data(), out.data());
  // Column 10 feeds output 10 (diagonal) and 9 (super-diagonal) only.
  for (int64_t c = 0; c < H; ++c) {
    if (c == 9 || c == 10) {
      EXPECT_NE(out[c], 0.0f) << c;
    } else {
      EXPECT_EQ(out[c], 0.0f) << c;
    }
  }
  // Different experts differ.
  ex.Apply(4, x.data(), y.data());
  EXPECT_NE(out[10], y[10]);
  // Identity.
  s.expert = ExpertKind::kIdentity;
  Experts id(s);
  id.Apply(3, x.data(), out.data());
  EXPECT_EQ(out, x);
}

}  // namespace
}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
