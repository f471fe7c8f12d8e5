// Launched clusters over loopback: ranks attach, check their topology,
// allocate symmetric regions, exchange encoded puts with every rank (on their
// node and across nodes), verify data and notification order, barrier and
// detach; the launcher exits 0 and leaves nothing behind.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "test/harness.h"

namespace tokenrail {
namespace testing {
namespace {

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { BecomeSubreaper(); }

  void RunExchange(int nodes, int ranks_per_node, std::vector<std::string> flags = {}) {
    LaunchSpec spec;
    spec.launcher_flags = {absl::StrCat("--nodes=", nodes),
                           absl::StrCat("--ranks-per-node=", ranks_per_node), "--timeout=120"};
    spec.launcher_flags.insert(spec.launcher_flags.end(), flags.begin(), flags.end());
    const absl::Time start = absl::Now();
    auto job = LaunchedJob::Start(spec);
    ASSERT_TRUE(job.ok()) << job.status();
    const int code = (*job)->Wait(absl::Now() + absl::Seconds(180));
    std::printf("%d x %d cluster: launcher exited %d after %.2f s\n", nodes, ranks_per_node, code,
                absl::ToDoubleSeconds(absl::Now() - start));
    ASSERT_EQ(code, 0) << (*job)->Transcript();
    const std::vector<std::string> problems = CheckExchange(**job, nodes, ranks_per_node);
    EXPECT_TRUE(problems.empty()) << absl::StrJoin(problems, "\n") << "\n" << (*job)->Transcript();
    const std::vector<std::string> left =
        Leftovers((*job)->job_id(), (*job)->run_dir(), (*job)->netns_prefix(), absl::Seconds(5));
    EXPECT_TRUE(left.empty()) << absl::StrJoin(left, "\n");
  }
};

TEST_F(ClusterTest, TwoNodesTwoRanksOverLoopback) { RunExchange(2, 2); }

TEST_F(ClusterTest, OneNodeThreeRanks) { RunExchange(1, 3); }

TEST_F(ClusterTest, ThreeNodesOneRank) { RunExchange(3, 1); }

}  // namespace
}  // namespace testing
}  // namespace tokenrail
