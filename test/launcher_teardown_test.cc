// tokenrail-launch's supervision: output prefixing and rank environment, the
// first failure named and propagated (exit status, signal, timeout, a daemon
// that cannot start, a signal to the launcher), and teardown that leaves no
// process, socket, run directory or namespace behind, including after the
// launcher itself is SIGKILLed. The ranks here are shell commands: this is
// about the launcher, not the data path.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "test/harness.h"

namespace tokenrail {
namespace testing {
namespace {

class LauncherTest : public ::testing::Test {
 protected:
  void SetUp() override { BecomeSubreaper(); }

  std::unique_ptr<LaunchedJob> Launch(std::vector<std::string> flags, std::string script) {
    LaunchSpec spec;
    spec.launcher_flags = std::move(flags);
    spec.command = {"/bin/sh", "-c", std::move(script)};
    auto job = LaunchedJob::Start(spec);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? std::move(job).value() : nullptr;
  }

  static bool Has(const LaunchedJob& job, absl::string_view label, absl::string_view text) {
    for (const OutputLine& l : job.lines()) {
      if (l.label == label && l.text == text) return true;
    }
    return false;
  }

  static void ExpectClean(const LaunchedJob& job) {
    ASSERT_FALSE(job.run_dir().empty()) << job.Transcript();
    const std::vector<std::string> left =
        Leftovers(job.job_id(), job.run_dir(), job.netns_prefix(), absl::Seconds(10));
    EXPECT_TRUE(left.empty()) << absl::StrJoin(left, "\n") << "\n" << job.Transcript();
  }
};

TEST_F(LauncherTest, PrefixesWholeLinesAndSetsTheRankEnvironment) {
  auto job = Launch({"--nodes=2", "--ranks-per-node=2", "--timeout=60"},
                    "printf 'first '; sleep 0.2; echo half; echo to-stderr >&2; "
                    "echo env $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $TOKENRAIL_NODE_ID "
                    "$TOKENRAIL_LOCAL_RANK $TOKENRAIL_JOB_ID; echo socket $TOKENRAIL_SOCKET");
  ASSERT_NE(job, nullptr);
  ASSERT_EQ(job->Wait(absl::Now() + absl::Seconds(90)), 0) << job->Transcript();
  for (int rank = 0; rank < 4; ++rank) {
    const int node = rank / 2, local = rank % 2;
    const std::string label = absl::StrCat("n", node, "/r", rank);
    EXPECT_TRUE(Has(*job, label, "first half")) << label << "\n" << job->Transcript();
    EXPECT_TRUE(Has(*job, label, "to-stderr")) << label;
    EXPECT_TRUE(
        Has(*job, label,
            absl::StrCat("env ", rank, " 4 ", local, " 2 ", node, " ", local, " ", job->job_id())))
        << label << "\n"
        << job->Transcript();
    EXPECT_TRUE(Has(*job, label, absl::StrCat("socket ", job->run_dir(), "/n", node, ".sock")))
        << label << "\n"
        << job->Transcript();
  }
  EXPECT_TRUE(absl::StrContains(job->Transcript(),
                                "[launch] job " + job->job_id() + ": all 4 ranks succeeded"))
      << job->Transcript();
  ExpectClean(*job);
}

TEST_F(LauncherTest, NamesARankThatFailsAndTearsDownTheRest) {
  const absl::Time start = absl::Now();
  auto job = Launch({"--nodes=2", "--ranks-per-node=2", "--failure_grace=1", "--kill_grace=2"},
                    "if [ \"$RANK\" = 2 ]; then sleep 0.5; exit 7; fi; exec sleep 300");
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->Wait(absl::Now() + absl::Seconds(60)), 1) << job->Transcript();
  EXPECT_TRUE(Has(*job, "launch", "FAILED: rank 2 (node 1) exited with status 7"))
      << job->Transcript();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  ExpectClean(*job);
}

TEST_F(LauncherTest, NamesARankKilledByASignal) {
  auto job = Launch({"--nodes=1", "--ranks-per-node=2", "--failure_grace=1", "--kill_grace=2"},
                    "if [ \"$RANK\" = 1 ]; then kill -9 $$; fi; exec sleep 300");
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->Wait(absl::Now() + absl::Seconds(60)), 1) << job->Transcript();
  EXPECT_TRUE(Has(*job, "launch", "FAILED: rank 1 (node 0) killed by signal 9 (Killed)"))
      << job->Transcript();
  ExpectClean(*job);
}

TEST_F(LauncherTest, RanksIgnoringSigtermAreKilled) {
  auto job = Launch({"--nodes=1", "--ranks-per-node=2", "--timeout=2", "--kill_grace=1"},
                    "trap '' TERM; while :; do sleep 0.1; done");
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->Wait(absl::Now() + absl::Seconds(60)), 124) << job->Transcript();
  EXPECT_TRUE(absl::StrContains(job->Transcript(),
                                "[launch] FAILED: --timeout: the job ran longer than 2.0 s"))
      << job->Transcript();
  EXPECT_TRUE(absl::StrContains(job->Transcript(), "still running; sending SIGKILL"))
      << job->Transcript();
  ExpectClean(*job);
}

TEST_F(LauncherTest, DaemonThatCannotStartIsNamed) {
  auto job = Launch({"--nodes=2", "--ranks-per-node=1", "--daemon=/bin/false"}, "true");
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(job->Wait(absl::Now() + absl::Seconds(60)), 1) << job->Transcript();
  EXPECT_TRUE(absl::StrContains(job->Transcript(),
                                "[launch] FAILED: daemon of node 0 exited with status 1 while "
                                "starting"))
      << job->Transcript();
  ExpectClean(*job);
}

TEST_F(LauncherTest, SigintStopsEverything) {
  auto job = Launch({"--nodes=2", "--ranks-per-node=1"}, "exec sleep 300");
  ASSERT_NE(job, nullptr);
  ASSERT_NE(job->WaitForLine(
                [](const OutputLine& l) { return absl::StartsWith(l.text, "started rank 1 "); },
                absl::Now() + absl::Seconds(60)),
            nullptr)
      << job->Transcript();
  ::kill(job->launcher_pid(), SIGINT);
  EXPECT_EQ(job->Wait(absl::Now() + absl::Seconds(60)), 130) << job->Transcript();
  EXPECT_TRUE(Has(*job, "launch", "FAILED: interrupted by SIGINT")) << job->Transcript();
  ExpectClean(*job);
}

TEST_F(LauncherTest, SigkilledLauncherLeavesNothingBehind) {
  // Ranks with children of their own: the janitor must reach those too.
  auto job = Launch({"--nodes=2", "--ranks-per-node=2"}, "sleep 300 & exec sleep 300");
  ASSERT_NE(job, nullptr);
  ASSERT_NE(job->WaitForLine(
                [](const OutputLine& l) { return absl::StartsWith(l.text, "started rank 3 "); },
                absl::Now() + absl::Seconds(60)),
            nullptr)
      << job->Transcript();
  absl::SleepFor(absl::Milliseconds(300));  // the background sleeps started
  ::kill(job->launcher_pid(), SIGKILL);
  EXPECT_EQ(job->Wait(absl::Now() + absl::Seconds(30)), 128 + SIGKILL);
  ExpectClean(*job);
}

TEST_F(LauncherTest, UsageErrors) {
  LaunchSpec spec;
  spec.launcher_flags = {"--nodes=2"};
  // An empty program name (the harness fills in the rank program when the
  // command is empty, so this is how "no command" is reached).
  spec.command = {""};
  auto job = LaunchedJob::Start(spec);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ((*job)->Wait(absl::Now() + absl::Seconds(30)), 2) << (*job)->Transcript();
  EXPECT_TRUE(absl::StrContains((*job)->Transcript(), "[launch] error: no command"))
      << (*job)->Transcript();

  spec.command = {"no-such-rank-program"};
  job = LaunchedJob::Start(spec);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ((*job)->Wait(absl::Now() + absl::Seconds(30)), 2) << (*job)->Transcript();
  EXPECT_TRUE(absl::StrContains((*job)->Transcript(), "'no-such-rank-program' not found in PATH"))
      << (*job)->Transcript();

  spec.command = {"true"};
  spec.launcher_flags = {"--netns", "--cluster=torchrun", "--ranks-per-node=1"};
  spec.extra_env = {"RANK=0", "WORLD_SIZE=1", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=1234"};
  job = LaunchedJob::Start(spec);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ((*job)->Wait(absl::Now() + absl::Seconds(30)), 2) << (*job)->Transcript();
  EXPECT_TRUE(absl::StrContains((*job)->Transcript(), "cannot be combined with --cluster"))
      << (*job)->Transcript();

  spec.extra_env = {};
  spec.launcher_flags = {"--nodes=1", "--ranks-per-node=300"};
  job = LaunchedJob::Start(spec);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ((*job)->Wait(absl::Now() + absl::Seconds(30)), 2) << (*job)->Transcript();
  EXPECT_TRUE(absl::StrContains((*job)->Transcript(), "--ranks-per-node=300"))
      << (*job)->Transcript();
}

}  // namespace
}  // namespace testing
}  // namespace tokenrail
