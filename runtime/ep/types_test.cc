#include "runtime/ep/types.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tokenrail {
namespace ep {
namespace {

TEST(EpTopologyTest, Helpers) {
  const EpTopology t{2, 4, 16};  // 8 ranks, 2 experts per rank, 8 per node
  EXPECT_EQ(t.world_size(), 8);
  EXPECT_EQ(t.experts_per_rank(), 2);
  EXPECT_EQ(t.experts_per_node(), 8);
  EXPECT_EQ(t.global_rank(1, 2), 6);
  EXPECT_EQ(t.node_of_rank(6), 1);
  EXPECT_EQ(t.local_rank_of_rank(6), 2);
  EXPECT_EQ(t.first_expert_of_rank(3), 6);
  EXPECT_EQ(t.first_expert_of_node(1), 8);
  EXPECT_EQ(t.rank_of_expert(5), 2);
  EXPECT_EQ(t.node_of_expert(9), 1);
  EXPECT_EQ(t.local_rank_of_expert(9), 0);  // rank 4 = node 1, local 0
  EXPECT_EQ(t.local_rank_of_expert(15), 3);
  EXPECT_EQ(t.local_expert(5), 1);
  for (int e = 0; e < t.experts; ++e) {
    const int r = t.rank_of_expert(e);
    EXPECT_EQ(t.first_expert_of_rank(r) + t.local_expert(e), e);
    EXPECT_EQ(t.global_rank(t.node_of_expert(e), t.local_rank_of_expert(e)), r);
  }
  EXPECT_EQ(ToString(t), "2x4 ranks, 16 experts");
  EXPECT_EQ(t, (EpTopology{2, 4, 16}));
  EXPECT_NE(t, (EpTopology{4, 2, 16}));
}

TEST(EpTopologyTest, ValidAccepted) {
  EXPECT_TRUE(Validate(EpTopology{1, 1, 1}, 1, 1).ok());
  EXPECT_TRUE(Validate(EpTopology{3, 2, 12}, 4, 2).ok());
  EXPECT_TRUE(Validate(EpTopology{2, 2, 16}, 16, 2).ok());  // top_k == experts == 16
  EXPECT_TRUE(Validate(EpTopology{4, 1, 8}, 4, 2).ok());    // exactly reachable: 2 * 2
  EXPECT_TRUE(Validate(EpTopology{8, 8, 256}, 8, 4).ok());  // DeepSeek-V3 shape
}

// Every invalid combination of issue 4 item 8 is InvalidArgument naming the
// values involved.
struct InvalidCase {
  EpTopology topology;
  int top_k;
  int max_nodes;
  std::vector<std::string> mentions;
};

TEST(EpTopologyTest, InvalidRejectedWithValues) {
  const InvalidCase cases[] = {
      {{0, 1, 4}, 1, 1, {"nodes=0"}},
      {{1, -1, 4}, 1, 1, {"ranks_per_node=-1"}},
      {{1, 1, 0}, 1, 1, {"experts=0"}},
      {{2, 2, 10}, 1, 1, {"experts=10", "not divisible", "2*2=4"}},
      {{3, 2, 8}, 1, 1, {"experts=8", "3*2=6"}},
      {{1, 1, 4}, 0, 1, {"top_k=0"}},
      {{2, 2, 64}, 17, 2, {"top_k=17", "16"}},
      {{2, 2, 8}, 9, 2, {"top_k=9", "experts=8"}},
      {{2, 2, 16}, 4, 0, {"max_nodes=0"}},
      {{2, 2, 16}, 4, 3, {"max_nodes=3", "nodes=2"}},
      {{4, 1, 8}, 4, 1, {"top_k=4", "not reachable", "max_nodes=1", "2 experts each"}},
      {{4, 2, 16}, 7, 1, {"top_k=7", "max_nodes=1", "at most 4"}},
      {{8, 1, 16}, 5, 2, {"top_k=5", "max_nodes=2", "at most 4"}},
  };
  for (const InvalidCase& c : cases) {
    const absl::Status s = Validate(c.topology, c.top_k, c.max_nodes);
    SCOPED_TRACE(ToString(c.topology) + " top_k=" + std::to_string(c.top_k) +
                 " max_nodes=" + std::to_string(c.max_nodes) + ": " + s.ToString());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    for (const std::string& m : c.mentions) {
      EXPECT_NE(s.message().find(m), absl::string_view::npos) << "missing '" << m << "'";
    }
  }
}

TEST(EpTopologyTest, HugeProductDoesNotOverflow) {
  const absl::Status s = Validate(EpTopology{1 << 20, 1 << 20, 1 << 20});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST(DTypeTest, SizesNamesAndParsing) {
  EXPECT_EQ(DTypeSize(DType::kFloat32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kFp8E4M3), 1u);
  static_assert(DTypeSize(DType::kBFloat16) == 2, "usable in constant expressions");
  for (DType d : {DType::kFloat32, DType::kBFloat16, DType::kFp8E4M3}) {
    absl::StatusOr<DType> parsed = ParseDType(DTypeName(d));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, d);
  }
  absl::StatusOr<DType> bad = ParseDType("fp16");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'fp16'"), absl::string_view::npos);
}

}  // namespace
}  // namespace ep
}  // namespace tokenrail
