#include "runtime/ep/gate.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/ep/layout.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace ep {
namespace {

struct Routed {
  std::vector<int32_t> idx;
  std::vector<float> weights;
};

Routed RunGate(const EpTopology& topo, const GateOptions& o, const std::vector<float>& logits,
               const std::vector<float>& bias) {
  const int64_t tokens = static_cast<int64_t>(logits.size()) / topo.experts;
  Routed r;
  r.idx.assign(tokens * o.top_k, -7);
  r.weights.assign(tokens * o.top_k, -7.0f);
  const absl::Status s =
      Gate(topo, o, tokens, logits, bias, absl::MakeSpan(r.idx), absl::MakeSpan(r.weights));
  EXPECT_TRUE(s.ok()) << s;
  return r;
}

// Experts of `candidates` (any order) sorted best first: biased score
// descending, lower index first on ties.
std::vector<int32_t> SortByScore(std::vector<int32_t> candidates,
                                 const std::vector<float>& biased) {
  std::sort(candidates.begin(), candidates.end(), [&](int32_t a, int32_t b) {
    return biased[a] != biased[b] ? biased[a] > biased[b] : a < b;
  });
  return candidates;
}

// The definition in gate.h, by brute force: scores from GateScores, group
// scores by sorting, and the kept groups found by enumerating every subset
// of max_nodes groups and keeping the one no outside group beats (score
// higher, or equal with a lower index). Returns topk_idx and weights of one
// token.
Routed BruteForce(const EpTopology& topo, const GateOptions& o, const float* logits,
                  const float* bias) {
  const int E = topo.experts, N = topo.nodes, per = topo.experts_per_node(), k = o.top_k;
  std::vector<float> scores(E), biased(E);
  EXPECT_TRUE(
      GateScores(o.score_function, absl::MakeConstSpan(logits, E), absl::MakeSpan(scores)).ok());
  for (int e = 0; e < E; ++e) biased[e] = bias ? scores[e] + bias[e] : scores[e];

  const int M = o.routing == Routing::kFlat ? N : o.max_nodes;
  const int s = (k + M - 1) / M;
  std::vector<float> group_score(N);
  for (int g = 0; g < N; ++g) {
    std::vector<float> v(biased.begin() + g * per, biased.begin() + (g + 1) * per);
    std::sort(v.begin(), v.end(), std::greater<float>());
    float sum = 0.0f;
    for (int i = 0; i < s; ++i) sum += v[i];
    group_score[g] = sum;
  }
  const auto beats = [&](int a, int b) {
    return group_score[a] != group_score[b] ? group_score[a] > group_score[b] : a < b;
  };
  std::vector<int> kept;
  if (N > 16) {
    // Too many subsets to enumerate: sort the groups instead.
    std::vector<int> order(N);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), beats);
    kept.assign(order.begin(), order.begin() + M);
    std::sort(kept.begin(), kept.end());
  }
  int found = N > 16 ? 1 : 0;
  for (uint32_t mask = 0; N <= 16 && mask < (1u << N); ++mask) {
    if (__builtin_popcount(mask) != M) continue;
    bool ok = true;
    for (int in = 0; in < N && ok; ++in) {
      if (!(mask >> in & 1)) continue;
      for (int out = 0; out < N && ok; ++out) {
        if (!(mask >> out & 1) && beats(out, in)) ok = false;
      }
    }
    if (!ok) continue;
    ++found;
    kept.clear();
    for (int g = 0; g < N; ++g) {
      if (mask >> g & 1) kept.push_back(g);
    }
  }
  EXPECT_EQ(found, 1) << "exactly one subset of groups is the best";

  std::vector<int32_t> candidates;
  for (int g : kept) {
    for (int e = g * per; e < (g + 1) * per; ++e) candidates.push_back(e);
  }
  Routed r;
  const std::vector<int32_t> sorted = SortByScore(candidates, biased);
  r.idx.assign(sorted.begin(), sorted.begin() + k);
  float sum = 0.0f;
  for (int32_t e : r.idx) sum += scores[e];
  for (int32_t e : r.idx) r.weights.push_back(scores[e] / sum * o.route_scale);
  return r;
}

std::vector<float> Normal(int64_t n, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> nd(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

TEST(GateTest, MatchesBruteForceOnRandomSmallCases) {
  std::mt19937 rng(2024);
  int checked = 0;
  for (int iter = 0; iter < 600; ++iter) {
    EpTopology topo;
    topo.nodes = 1 + static_cast<int>(rng() % 6);
    topo.ranks_per_node = 1 + static_cast<int>(rng() % 3);
    topo.experts = topo.nodes * topo.ranks_per_node * (1 + static_cast<int>(rng() % 4));
    GateOptions o;
    o.max_nodes = 1 + static_cast<int>(rng() % topo.nodes);
    const int max_k = std::min({kMaxTopK, topo.experts, o.max_nodes * topo.experts_per_node()});
    o.top_k = 1 + static_cast<int>(rng() % max_k);
    o.score_function = rng() % 3 == 0 ? ScoreFunction::kSoftmax : ScoreFunction::kSigmoid;
    o.route_scale = rng() % 2 ? 1.0f : 2.5f;
    ASSERT_TRUE(Validate(topo, o.top_k, o.max_nodes).ok());
    const int64_t tokens = 1 + rng() % 8;
    const std::vector<float> logits = Normal(tokens * topo.experts, rng, 2.0f);
    const std::vector<float> bias =
        rng() % 2 ? Normal(topo.experts, rng, 0.05f) : std::vector<float>{};
    SCOPED_TRACE(ToString(topo) + " k=" + std::to_string(o.top_k) +
                 " M=" + std::to_string(o.max_nodes));
    const Routed got = RunGate(topo, o, logits, bias);
    for (int64_t t = 0; t < tokens; ++t) {
      const Routed want = BruteForce(topo, o, logits.data() + t * topo.experts,
                                     bias.empty() ? nullptr : bias.data());
      for (int j = 0; j < o.top_k; ++j) {
        ASSERT_EQ(got.idx[t * o.top_k + j], want.idx[j]) << "token " << t << " slot " << j;
        ASSERT_FLOAT_EQ(got.weights[t * o.top_k + j], want.weights[j]);
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 1000);
}

TEST(GateTest, ManyNodesMatchSortedSelection) {
  // More kept group values than the counting tables hold (M * s > 32).
  std::mt19937 rng(41);
  const struct {
    EpTopology topo;
    int k, M;
  } cases[] = {{{64, 1, 64}, 16, 40}, {{48, 2, 96}, 16, 33}, {{40, 1, 80}, 12, 36}};
  for (const auto& c : cases) {
    GateOptions o;
    o.top_k = c.k;
    o.max_nodes = c.M;
    const std::vector<float> logits = Normal(20 * c.topo.experts, rng);
    const std::vector<float> bias = Normal(c.topo.experts, rng, 0.1f);
    const Routed got = RunGate(c.topo, o, logits, bias);
    for (int t = 0; t < 20; ++t) {
      const Routed want = BruteForce(c.topo, o, logits.data() + t * c.topo.experts, bias.data());
      for (int j = 0; j < c.k; ++j) ASSERT_EQ(got.idx[t * c.k + j], want.idx[j]) << t;
    }
  }
}

TEST(GateTest, KeepsAtMostMaxNodesPerToken) {
  std::mt19937 rng(9);
  for (int M = 1; M <= 4; ++M) {
    const EpTopology topo{4, 2, 64};
    GateOptions o;
    o.top_k = 8;
    o.max_nodes = M;
    const int64_t tokens = 2000;
    const std::vector<float> logits = Normal(tokens * topo.experts, rng);
    const std::vector<float> bias = Normal(topo.experts, rng, 0.3f);
    const Routed r = RunGate(topo, o, logits, bias);
    std::vector<int32_t> nodes(tokens);
    ASSERT_TRUE(NodesPerToken(topo, o.top_k, r.idx, absl::MakeSpan(nodes)).ok());
    int max_seen = 0;
    for (int32_t n : nodes) max_seen = std::max(max_seen, n);
    EXPECT_LE(max_seen, M);
    EXPECT_EQ(max_seen, M) << "with 8 experts over 4 nodes, some token uses all M nodes";
  }
}

TEST(GateTest, FlatEqualsPlainTopK) {
  std::mt19937 rng(4);
  for (const EpTopology topo :
       {EpTopology{1, 1, 4}, EpTopology{2, 2, 16}, EpTopology{8, 1, 256}, EpTopology{3, 1, 45}}) {
    for (int k : {1, 3, 4, 8, 16}) {
      if (k > topo.experts) continue;
      GateOptions o;
      o.top_k = k;
      o.max_nodes = 1;  // ignored by flat routing
      o.routing = Routing::kFlat;
      const int64_t tokens = 50;
      const std::vector<float> logits = Normal(tokens * topo.experts, rng);
      const std::vector<float> bias = Normal(topo.experts, rng, 0.1f);
      const Routed r = RunGate(topo, o, logits, bias);
      for (int64_t t = 0; t < tokens; ++t) {
        std::vector<float> scores(topo.experts), biased(topo.experts);
        ASSERT_TRUE(GateScores(o.score_function,
                               absl::MakeConstSpan(logits.data() + t * topo.experts, topo.experts),
                               absl::MakeSpan(scores))
                        .ok());
        for (int e = 0; e < topo.experts; ++e) biased[e] = scores[e] + bias[e];
        std::vector<int32_t> all(topo.experts);
        std::iota(all.begin(), all.end(), 0);
        const std::vector<int32_t> sorted = SortByScore(all, biased);
        for (int j = 0; j < k; ++j) ASSERT_EQ(r.idx[t * k + j], sorted[j]);
      }
      // Node-limited with M == N is the same routing.
      o.routing = Routing::kNodeLimited;
      o.max_nodes = topo.nodes;
      if (Validate(topo, k, o.max_nodes).ok()) {
        const Routed same = RunGate(topo, o, logits, bias);
        EXPECT_EQ(same.idx, r.idx);
        EXPECT_EQ(same.weights, r.weights);
      }
    }
  }
}

TEST(GateTest, TiesGoToTheLowerIndex) {
  // Logit 0 gives a score of exactly 0.5, so dyadic biases make exact ties.
  const EpTopology topo{4, 1, 16};  // 4 groups of 4 experts
  GateOptions o;
  o.top_k = 2;
  o.max_nodes = 1;  // group score = best 2
  const std::vector<float> logits(16, 0.0f);
  {
    // All equal: group 0 wins, experts 0 and 1 in index order.
    const Routed r = RunGate(topo, o, logits, {});
    EXPECT_EQ(r.idx, (std::vector<int32_t>{0, 1}));
    EXPECT_EQ(r.weights, (std::vector<float>{0.5f, 0.5f}));
  }
  {
    // Groups 1 and 2 tie at 1.0 with different members ({0.75, 0.25} and
    // {0.5, 0.5}); groups 0 and 3 score lower. Group 1 wins the tie.
    std::vector<float> bias(16, -1.0f);
    bias[4] = 0.25f;   // 0.75
    bias[6] = -0.25f;  // 0.25
    bias[9] = 0.0f;    // 0.5
    bias[11] = 0.0f;   // 0.5
    const Routed r = RunGate(topo, o, logits, bias);
    EXPECT_EQ(r.idx, (std::vector<int32_t>{4, 6}));
    // Mirror image: now group 2 holds {0.75, 0.25} and still loses to group 1.
    std::vector<float> mirror(16, -1.0f);
    mirror[8] = 0.25f;
    mirror[10] = -0.25f;
    mirror[5] = 0.0f;
    mirror[7] = 0.0f;
    const Routed m = RunGate(topo, o, logits, mirror);
    EXPECT_EQ(m.idx, (std::vector<int32_t>{5, 7}));
    // Weights come from the unbiased scores (all 0.5), not the bias.
    EXPECT_EQ(m.weights, (std::vector<float>{0.5f, 0.5f}));
  }
  {
    // Ties inside the chosen group: equal scores keep index order, ahead of
    // lower scores.
    std::vector<float> bias(16, 0.0f);
    bias[3] = 0.125f;
    const Routed r = RunGate(topo, GateOptions{3, 1}, logits, bias);
    EXPECT_EQ(r.idx, (std::vector<int32_t>{3, 0, 1}));
  }
  {
    // Many equal candidates (beyond the ranking-by-count size) in flat mode.
    const EpTopology wide{1, 1, 100};
    GateOptions f;
    f.top_k = 16;
    f.routing = Routing::kFlat;
    const Routed r = RunGate(wide, f, std::vector<float>(100, 3.0f), {});
    std::vector<int32_t> want(16);
    std::iota(want.begin(), want.end(), 0);
    EXPECT_EQ(r.idx, want);
  }
}

TEST(GateTest, DeterministicAndIndependentOfBatching) {
  std::mt19937 rng(77);
  const EpTopology topo{8, 1, 256};
  GateOptions o;
  o.top_k = 8;
  o.max_nodes = 4;
  const int64_t tokens = 300;
  const std::vector<float> logits = Normal(tokens * topo.experts, rng);
  const std::vector<float> bias = Normal(topo.experts, rng, 0.01f);
  const Routed a = RunGate(topo, o, logits, bias);
  const Routed b = RunGate(topo, o, logits, bias);
  EXPECT_EQ(a.idx, b.idx);
  EXPECT_EQ(a.weights, b.weights);
  // Token 123 alone gives the same row.
  const std::vector<float> one(logits.begin() + 123 * 256, logits.begin() + 124 * 256);
  const Routed c = RunGate(topo, o, one, bias);
  EXPECT_TRUE(std::equal(c.idx.begin(), c.idx.end(), a.idx.begin() + 123 * 8));
  EXPECT_TRUE(std::equal(c.weights.begin(), c.weights.end(), a.weights.begin() + 123 * 8));
}

TEST(GateTest, BiasSteersSelectionButNotWeights) {
  const EpTopology topo{2, 2, 8};
  GateOptions o;
  o.top_k = 2;
  o.max_nodes = 1;
  o.route_scale = 3.0f;
  std::vector<float> logits = {2.0f, 1.0f, 0.0f, 0.0f, -1.0f, -2.0f, -3.0f, -4.0f};
  std::vector<float> bias(8, 0.0f);
  bias[7] = 10.0f;  // expert 7 (node 1) always wins; node 1 is kept
  const Routed r = RunGate(topo, o, logits, bias);
  EXPECT_EQ(r.idx, (std::vector<int32_t>{7, 4}));
  std::vector<float> scores(8);
  ASSERT_TRUE(GateScores(ScoreFunction::kSigmoid, logits, absl::MakeSpan(scores)).ok());
  const float sum = scores[7] + scores[4];
  EXPECT_FLOAT_EQ(r.weights[0], scores[7] / sum * 3.0f);
  EXPECT_FLOAT_EQ(r.weights[1], scores[4] / sum * 3.0f);
  EXPECT_LT(r.weights[0], r.weights[1]) << "expert 7 has the lower unbiased score";
}

TEST(GateTest, WeightsSumToRouteScale) {
  std::mt19937 rng(12);
  for (ScoreFunction fn : {ScoreFunction::kSigmoid, ScoreFunction::kSoftmax}) {
    const EpTopology topo{4, 2, 32};
    GateOptions o;
    o.top_k = 6;
    o.max_nodes = 2;
    o.score_function = fn;
    o.route_scale = 2.5f;
    const std::vector<float> logits = Normal(100 * 32, rng, 5.0f);
    const Routed r = RunGate(topo, o, logits, {});
    for (int t = 0; t < 100; ++t) {
      float sum = 0.0f;
      for (int j = 0; j < 6; ++j) {
        EXPECT_GT(r.weights[t * 6 + j], 0.0f);
        sum += r.weights[t * 6 + j];
      }
      EXPECT_NEAR(sum, 2.5f, 1e-5f);
    }
  }
  // Extreme logits stay finite (the exp argument is clamped).
  const EpTopology topo{1, 1, 4};
  GateOptions o;
  o.top_k = 2;
  const Routed r = RunGate(topo, o, {-300.0f, -200.0f, 300.0f, 1e30f}, {});
  EXPECT_EQ(r.idx, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(r.weights, (std::vector<float>{0.5f, 0.5f}));
}

TEST(GateTest, ScoresAreSigmoidOrSoftmax) {
  const std::vector<float> logits = {-3.0f, -0.5f, 0.0f, 0.25f, 2.0f, 10.0f, -87.5f};
  std::vector<float> sig(logits.size()), soft(logits.size());
  ASSERT_TRUE(GateScores(ScoreFunction::kSigmoid, logits, absl::MakeSpan(sig)).ok());
  ASSERT_TRUE(GateScores(ScoreFunction::kSoftmax, logits, absl::MakeSpan(soft)).ok());
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l) - 10.0);
  for (size_t e = 0; e < logits.size(); ++e) {
    EXPECT_NEAR(sig[e], 1.0 / (1.0 + std::exp(-static_cast<double>(logits[e]))), 1e-6);
    EXPECT_NEAR(soft[e], std::exp(static_cast<double>(logits[e]) - 10.0) / z, 1e-6);
  }
  EXPECT_EQ(sig[2], 0.5f);
}

TEST(GateTest, ExpIsAccurateOverTheClampedRange) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.000173) {
    const float xf = static_cast<float>(x);
    const double want = std::exp(static_cast<double>(xf));
    worst = std::max(worst, std::fabs(gate_internal::Exp(xf) - want) / want);
  }
  EXPECT_LT(worst, std::ldexp(1.0, -22));
  EXPECT_EQ(gate_internal::Exp(0.0f), 1.0f);
  EXPECT_EQ(gate_internal::Exp(-1000.0f), gate_internal::Exp(-87.0f));
  EXPECT_EQ(gate_internal::Exp(1000.0f), gate_internal::Exp(88.0f));
}

TEST(GateTest, InvalidInputsNameTheValue) {
  const EpTopology topo{2, 2, 8};
  GateOptions o;
  o.top_k = 2;
  o.max_nodes = 1;
  std::vector<float> logits(3 * 8, 0.0f);
  std::vector<int32_t> idx(3 * 2);
  std::vector<float> w(3 * 2);
  const auto run = [&](const GateOptions& opt, const std::vector<float>& l,
                       const std::vector<float>& b) {
    return Gate(topo, opt, 3, l, b, absl::MakeSpan(idx), absl::MakeSpan(w));
  };
  const auto expect = [](const absl::Status& s, const char* text) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(text), absl::string_view::npos) << s;
  };
  std::vector<float> bad = logits;
  bad[2 * 8 + 5] = std::nanf("");
  expect(run(o, bad, {}), "token 2 expert 5");
  bad[2 * 8 + 5] = INFINITY;
  expect(run(o, bad, {}), "token 2 expert 5 is inf");
  std::vector<float> bias(8, 0.0f);
  bias[6] = -INFINITY;
  expect(run(o, logits, bias), "bias of expert 6");
  expect(run(o, logits, std::vector<float>(7)), "bias has 7 elements");
  expect(run(o, std::vector<float>(23), {}), "logits has 23 elements, expected 24");
  GateOptions m = o;
  m.max_nodes = 3;
  expect(run(m, logits, {}), "max_nodes=3");
  GateOptions k = o;
  k.top_k = 5;
  expect(run(k, logits, {}), "top_k=5 is not reachable");
  GateOptions s = o;
  s.route_scale = NAN;
  expect(run(s, logits, {}), "route_scale");
  // Flat routing ignores max_nodes but still checks top_k.
  GateOptions f = k;
  f.routing = Routing::kFlat;
  f.max_nodes = 0;
  std::vector<int32_t> idx5(3 * 5);
  std::vector<float> w5(3 * 5);
  EXPECT_TRUE(Gate(topo, f, 3, logits, {}, absl::MakeSpan(idx5), absl::MakeSpan(w5)).ok());
}

TEST(NodesPerTokenTest, CountsDistinctNodesSkippingNone) {
  const EpTopology topo{3, 2, 12};  // 4 experts per node
  const std::vector<int32_t> idx = {0, 1, 2, -1, -1, -1, 0, 4, 8, 11, 10, -1};
  std::vector<int32_t> nodes(4);
  ASSERT_TRUE(NodesPerToken(topo, 3, idx, absl::MakeSpan(nodes)).ok());
  EXPECT_EQ(nodes, (std::vector<int32_t>{1, 0, 3, 1}));
  const std::vector<int32_t> bad = {0, 1, 12};
  std::vector<int32_t> one(1);
  const absl::Status s = NodesPerToken(topo, 3, bad, absl::MakeSpan(one));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token 0 slot 2 holds expert 12"), absl::string_view::npos) << s;
}

TEST(UpdateExpertBiasTest, MovesTowardTheMeanLoad) {
  std::vector<float> bias = {0.0f, 0.0f, 0.5f, 0.0f};
  const std::vector<int64_t> load = {10, 0, 5, 5};  // mean 5
  ASSERT_TRUE(UpdateExpertBias(load, 0.25f, absl::MakeSpan(bias)).ok());
  EXPECT_EQ(bias, (std::vector<float>{-0.25f, 0.25f, 0.5f, 0.0f}));
  // Mean 10/3 is not an integer; comparisons stay exact.
  std::vector<float> b3(3, 0.0f);
  ASSERT_TRUE(UpdateExpertBias(std::vector<int64_t>{3, 4, 3}, 1.0f, absl::MakeSpan(b3)).ok());
  EXPECT_EQ(b3, (std::vector<float>{1.0f, -1.0f, 1.0f}));
}

TEST(UpdateExpertBiasTest, BalancesARoutedLoad) {
  // The point of the bias: a skewed router becomes balanced over steps.
  std::mt19937 rng(5);
  const EpTopology topo{4, 1, 16};
  GateOptions o;
  o.top_k = 2;
  o.max_nodes = 2;
  std::vector<float> skew(16);
  for (int e = 0; e < 16; ++e) skew[e] = 0.15f * e;  // high experts favoured
  std::vector<float> bias(16, 0.0f);
  const auto imbalance = [&]() {
    std::vector<float> logits = Normal(512 * 16, rng);
    for (int t = 0; t < 512; ++t) {
      for (int e = 0; e < 16; ++e) logits[t * 16 + e] += skew[e];
    }
    const Routed r = RunGate(topo, o, logits, bias);
    std::vector<int64_t> load(16, 0);
    for (int32_t e : r.idx) ++load[e];
    EXPECT_TRUE(UpdateExpertBias(load, 0.01f, absl::MakeSpan(bias)).ok());
    return *std::max_element(load.begin(), load.end()) / 64.0;  // max / mean
  };
  const double first = imbalance();
  double last = 0;
  for (int step = 0; step < 100; ++step) last = imbalance();
  EXPECT_GT(first, 2.0);
  EXPECT_LT(last, 1.5);
}

TEST(UpdateExpertBiasTest, RejectsBadArguments) {
  std::vector<float> bias(2);
  EXPECT_EQ(UpdateExpertBias(std::vector<int64_t>{1}, 0.1f, absl::MakeSpan(bias)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UpdateExpertBias(std::vector<int64_t>{1, -1}, 0.1f, absl::MakeSpan(bias)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UpdateExpertBias(std::vector<int64_t>{1, 1}, -0.1f, absl::MakeSpan(bias)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UpdateExpertBias(std::vector<int64_t>{1, 1}, NAN, absl::MakeSpan(bias)).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ep
}  // namespace tokenrail
