// The 2 x 2 cluster under --netns: each node in its own network namespace,
// joined through a bridge, UCX restricted to TCP between the daemons; the
// fault trials (fault_trial.h) across namespaces; and that the namespaces go
// away after success, failure and the launcher's own SIGKILL.
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "test/fault_trial.h"
#include "test/harness.h"

namespace tokenrail {
namespace testing {
namespace {

class ClusterNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "--netns creates network namespaces and needs root";
    BecomeSubreaper();
  }
};

TEST_F(ClusterNetnsTest, TwoNodesTwoRanksAcrossNamespaces) {
  LaunchSpec spec;
  spec.launcher_flags = {"--nodes=2", "--ranks-per-node=2", "--netns", "--timeout=120"};
  const absl::Time start = absl::Now();
  auto job = LaunchedJob::Start(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const int code = (*job)->Wait(absl::Now() + absl::Seconds(180));
  std::printf("2 x 2 --netns cluster: launcher exited %d after %.2f s\n", code,
              absl::ToDoubleSeconds(absl::Now() - start));
  ASSERT_EQ(code, 0) << (*job)->Transcript();
  EXPECT_FALSE((*job)->netns_prefix().empty()) << (*job)->Transcript();
  // The daemons were told to keep UCX on TCP between namespaces.
  bool tcp_only = false;
  for (const OutputLine& l : (*job)->lines()) {
    if (l.label == "launch" && absl::StrContains(l.text, "started daemon of node 1") &&
        absl::StrContains(l.text, "--transport_params=tls=tcp,net_devices=eth0") &&
        absl::StrContains(l.text, "--coordinator=10.99.0.1:")) {
      tcp_only = true;
    }
  }
  EXPECT_TRUE(tcp_only) << (*job)->Transcript();
  const std::vector<std::string> problems = CheckExchange(**job, 2, 2);
  EXPECT_TRUE(problems.empty()) << absl::StrJoin(problems, "\n") << "\n" << (*job)->Transcript();
  const std::vector<std::string> left =
      Leftovers((*job)->job_id(), (*job)->run_dir(), (*job)->netns_prefix(), absl::Seconds(5));
  EXPECT_TRUE(left.empty()) << absl::StrJoin(left, "\n");
}

TEST_F(ClusterNetnsTest, SigkilledLauncherLeavesNoNamespaces) {
  LaunchSpec spec;
  spec.launcher_flags = {"--nodes=2", "--ranks-per-node=1", "--netns"};
  spec.command = {"/bin/sleep", "300"};
  auto job = LaunchedJob::Start(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_NE((*job)->WaitForLine(
                [](const OutputLine& l) {
                  return l.label == "launch" && absl::StartsWith(l.text, "started rank 1 ");
                },
                absl::Now() + absl::Seconds(60)),
            nullptr)
      << (*job)->Transcript();
  ASSERT_FALSE((*job)->netns_prefix().empty());
  ::kill((*job)->launcher_pid(), SIGKILL);
  // The janitor holds the launcher's output open until it has cleaned up.
  (*job)->Wait(absl::Now() + absl::Seconds(30));
  const std::vector<std::string> left =
      Leftovers((*job)->job_id(), (*job)->run_dir(), (*job)->netns_prefix(), absl::Seconds(10));
  EXPECT_TRUE(left.empty()) << absl::StrJoin(left, "\n") << "\n" << (*job)->Transcript();
}

TEST_F(ClusterNetnsTest, SigkilledRankAcrossNamespacesIsReported) {
  EXPECT_EQ(MeasureFailureDetection(Victim::kRank, {"--netns"}).hangs, 0);
}

TEST_F(ClusterNetnsTest, SigkilledDaemonAcrossNamespacesIsReported) {
  EXPECT_EQ(MeasureFailureDetection(Victim::kDaemon, {"--netns"}).hangs, 0);
}

}  // namespace
}  // namespace testing
}  // namespace tokenrail
