#include "runtime/ep/layout.h"

#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace ep {
namespace {

// Random routing with some -1 slots and some tokens with no expert at all;
// no expert twice in a token.
std::vector<int32_t> RandomTopk(const EpTopology& topo, int k, int64_t tokens, std::mt19937& rng) {
  std::vector<int32_t> idx(tokens * k);
  for (int64_t t = 0; t < tokens; ++t) {
    std::set<int32_t> used;
    const bool empty = rng() % 10 == 0;
    for (int j = 0; j < k; ++j) {
      int32_t e = -1;
      if (!empty && rng() % 5 != 0) {
        do {
          e = static_cast<int32_t>(rng() % topo.experts);
        } while (used.count(e));
        used.insert(e);
      }
      idx[t * k + j] = e;
    }
  }
  return idx;
}

void CheckAgainstBruteForce(const EpTopology& topo, int k, int64_t tokens,
                            const std::vector<int32_t>& idx, const Layout& l) {
  const int W = topo.world_size(), N = topo.nodes;
  ASSERT_EQ(l.num_tokens, tokens);
  ASSERT_EQ(l.tokens_per_rank.size(), static_cast<size_t>(W));
  ASSERT_EQ(l.tokens_per_node.size(), static_cast<size_t>(N));
  ASSERT_EQ(l.tokens_per_expert.size(), static_cast<size_t>(topo.experts));
  ASSERT_EQ(l.token_in_rank.size(), static_cast<size_t>(tokens * W));
  ASSERT_EQ(l.token_in_node.size(), static_cast<size_t>(tokens * N));
  // Brute force: does token t go to rank r / node n / expert e at all?
  const auto goes = [&](int64_t t, auto pred) {
    for (int j = 0; j < k; ++j) {
      if (idx[t * k + j] >= 0 && pred(idx[t * k + j])) return true;
    }
    return false;
  };
  for (int r = 0; r < W; ++r) {
    int32_t next = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      const bool sent = goes(t, [&](int32_t e) { return topo.rank_of_expert(e) == r; });
      ASSERT_EQ(l.rank_slot(t, r), sent ? next : -1) << "token " << t << " rank " << r;
      next += sent;
    }
    EXPECT_EQ(l.tokens_per_rank[r], next);
  }
  for (int n = 0; n < N; ++n) {
    int32_t next = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      const bool sent = goes(t, [&](int32_t e) { return topo.node_of_expert(e) == n; });
      ASSERT_EQ(l.node_slot(t, n), sent ? next : -1) << "token " << t << " node " << n;
      next += sent;
    }
    EXPECT_EQ(l.tokens_per_node[n], next);
  }
  for (int e = 0; e < topo.experts; ++e) {
    int32_t count = 0;
    for (int64_t t = 0; t < tokens; ++t) count += goes(t, [&](int32_t x) { return x == e; });
    EXPECT_EQ(l.tokens_per_expert[e], count);
  }
}

TEST(LayoutTest, MatchesBruteForce) {
  std::mt19937 rng(31);
  const EpTopology topologies[] = {{1, 1, 1}, {1, 4, 8},  {2, 2, 16},
                                   {4, 1, 8}, {3, 2, 12}, {2, 8, 64}};
  for (const EpTopology& topo : topologies) {
    for (int k : {1, 2, 4, 8, 16}) {
      if (k > topo.experts) continue;
      for (int64_t tokens : {0, 1, 37, 300}) {
        SCOPED_TRACE(ToString(topo) + " k=" + std::to_string(k) +
                     " tokens=" + std::to_string(tokens));
        const std::vector<int32_t> idx = RandomTopk(topo, k, tokens, rng);
        absl::StatusOr<Layout> l = ComputeLayout(topo, k, tokens, idx);
        ASSERT_TRUE(l.ok()) << l.status();
        CheckAgainstBruteForce(topo, k, tokens, idx, *l);
      }
    }
  }
}

TEST(LayoutTest, CountsATokenOncePerRankAndNode) {
  const EpTopology topo{2, 2, 8};  // 2 experts per rank, 4 per node
  // Token 0: experts 0 and 1 (both rank 0) and 2 (rank 1, same node).
  // Token 1: no expert. Token 2: experts 7 and 5 (ranks 3 and 2, node 1).
  const std::vector<int32_t> idx = {0, 1, 2, -1, -1, -1, 7, -1, 5};
  absl::StatusOr<Layout> l = ComputeLayout(topo, 3, 3, idx);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->tokens_per_rank, (std::vector<int32_t>{1, 1, 1, 1}));
  EXPECT_EQ(l->tokens_per_node, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(l->tokens_per_expert, (std::vector<int32_t>{1, 1, 1, 0, 0, 1, 0, 1}));
  EXPECT_EQ(l->token_in_rank, (std::vector<int32_t>{0, 0, -1, -1,    //
                                                    -1, -1, -1, -1,  //
                                                    -1, -1, 0, 0}));
  EXPECT_EQ(l->token_in_node, (std::vector<int32_t>{0, -1, -1, -1, -1, 0}));
}

TEST(LayoutTest, ReusedLayoutHasNoStaleState) {
  std::mt19937 rng(8);
  Layout l;
  for (const EpTopology& topo : {EpTopology{2, 2, 16}, EpTopology{1, 2, 4}, EpTopology{4, 2, 32}}) {
    const std::vector<int32_t> idx = RandomTopk(topo, 3, 50, rng);
    ASSERT_TRUE(ComputeLayout(topo, 3, 50, idx, &l).ok());
    CheckAgainstBruteForce(topo, 3, 50, idx, l);
  }
}

TEST(LayoutTest, AllTokensToOneExpert) {
  const EpTopology topo{2, 2, 8};
  const std::vector<int32_t> idx(1000, 6);
  absl::StatusOr<Layout> l = ComputeLayout(topo, 1, 1000, idx);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->tokens_per_rank, (std::vector<int32_t>{0, 0, 0, 1000}));
  EXPECT_EQ(l->tokens_per_node, (std::vector<int32_t>{0, 1000}));
  EXPECT_EQ(l->rank_slot(999, 3), 999);
}

TEST(LayoutTest, InvalidIndicesNameTokenSlotAndValue) {
  const EpTopology topo{2, 2, 8};
  const auto expect = [&](const std::vector<int32_t>& idx, int k, int64_t tokens,
                          const char* text) {
    const absl::Status s = ComputeLayout(topo, k, tokens, idx).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(text), absl::string_view::npos) << s;
  };
  expect({0, 1, 2, 8}, 2, 2, "token 1 slot 1 holds expert 8, outside [-1, 8)");
  expect({0, -2}, 2, 1, "token 0 slot 1 holds expert -2");
  expect({3, 4, 5, 3}, 4, 1, "token 0 slot 3 holds expert 3, already chosen in slot 0");
  expect({0, 1, 2}, 2, 2, "topk_idx has 3 entries, expected num_tokens=2 x top_k=2");
  expect({0, 1}, 2, -1, "num_tokens=-1");
  expect({0}, 0, 1, "top_k=0");
  expect({0}, 17, 1, "top_k=17");
  // -1 may repeat.
  EXPECT_TRUE(ValidateTopkIdx(topo, 3, 1, std::vector<int32_t>{-1, 2, -1}).ok());
  const absl::Status bad_topo = ValidateTopkIdx(EpTopology{2, 2, 6}, 1, 1, std::vector<int32_t>{0});
  EXPECT_NE(bad_topo.message().find("experts=6"), absl::string_view::npos) << bad_topo;
}

}  // namespace
}  // namespace ep
}  // namespace tokenrail
