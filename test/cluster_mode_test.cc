// Cluster mode on loopback: several tokenrail-launch instances, each placed
// by scheduler variables as it would be on a real cluster, together run one
// job: node 0's instance hosts the coordinator at MASTER_ADDR:MASTER_PORT
// (or the Slurm-derived address) and creates the job; every instance starts
// its node's daemon and ranks. The shared token file is what a shared
// filesystem would provide.
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "test/harness.h"
#include "tools/launch/cluster_env.h"
#include "tools/launch/run_dir.h"

namespace tokenrail {
namespace testing {
namespace {

class ClusterModeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BecomeSubreaper();
    auto dir = launch::RunDir::Create("");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = std::move(dir).value();
    token_ = dir_->token_path();
    ASSERT_TRUE(dir_->WriteToken().ok());
  }

  // Starts one launcher per entry of `envs`, waits for all, checks the
  // exchange across all their outputs.
  void RunInstances(const std::vector<std::vector<std::string>>& envs,
                    const std::vector<std::string>& flags, int nodes, int ranks_per_node) {
    std::vector<std::unique_ptr<LaunchedJob>> jobs;
    const absl::Time start = absl::Now();
    for (const auto& env : envs) {
      LaunchSpec spec;
      spec.job_id = "derive";
      spec.extra_env = env;
      spec.launcher_flags = flags;
      spec.launcher_flags.push_back(absl::StrCat("--auth_token_file=", token_));
      spec.launcher_flags.push_back("--timeout=120");
      auto job = LaunchedJob::Start(spec);
      ASSERT_TRUE(job.ok()) << job.status();
      jobs.push_back(std::move(job).value());
    }
    std::string transcripts;
    std::vector<int> codes;
    for (auto& job : jobs) codes.push_back(job->Wait(absl::Now() + absl::Seconds(180)));
    for (auto& job : jobs) absl::StrAppend(&transcripts, "----\n", job->Transcript());
    std::printf("%zu launchers (%d x %d): exit codes %s after %.2f s\n", jobs.size(), nodes,
                ranks_per_node, absl::StrJoin(codes, ",").c_str(),
                absl::ToDoubleSeconds(absl::Now() - start));
    for (int code : codes) EXPECT_EQ(code, 0) << transcripts;
    // Every instance derived the same job id.
    for (auto& job : jobs) EXPECT_EQ(job->job_id(), jobs[0]->job_id()) << transcripts;
    // The ranks' lines are spread over the instances: check them together.
    int results = 0;
    for (auto& job : jobs) {
      for (const OutputLine* l : job->Tagged("TR_RESULT")) {
        EXPECT_EQ(ParseFields(l->text)["ok"], "1") << l->text;
        ++results;
      }
      EXPECT_TRUE(job->Tagged("TR_ERROR").empty()) << transcripts;
    }
    EXPECT_EQ(results, nodes * ranks_per_node) << transcripts;
    for (auto& job : jobs) {
      const std::vector<std::string> left =
          Leftovers(job->job_id(), job->run_dir(), "", absl::Seconds(5));
      EXPECT_TRUE(left.empty()) << absl::StrJoin(left, "\n");
    }
  }

  std::unique_ptr<launch::RunDir> dir_;
  std::string token_;
};

TEST_F(ClusterModeTest, TorchrunStyleOneLauncherPerNode) {
  const int port = FreePort();
  std::vector<std::vector<std::string>> envs;
  for (int node = 0; node < 2; ++node) {
    envs.push_back({absl::StrCat("RANK=", node), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                    absl::StrCat("MASTER_PORT=", port)});
  }
  RunInstances(envs,
               {"--cluster=torchrun", "--ranks-per-node=2", "--bind_host=127.0.0.1",
                absl::StrCat("--coordinator_listen=127.0.0.1:", port)},
               2, 2);
}

TEST_F(ClusterModeTest, SlurmOneLauncherPerNode) {
  const int port = FreePort();
  std::vector<std::vector<std::string>> envs;
  for (int node = 0; node < 2; ++node) {
    envs.push_back({"SLURM_JOB_ID=777", "SLURM_STEP_ID=0", absl::StrCat("SLURM_NODEID=", node),
                    "SLURM_NNODES=2", "SLURM_NTASKS_PER_NODE=1", "SLURM_LOCALID=0",
                    "SLURM_JOB_NODELIST=localhost"});
  }
  RunInstances(envs,
               {"--cluster=slurm", "--ranks-per-node=2", "--bind_host=127.0.0.1",
                absl::StrCat("--coordinator=127.0.0.1:", port),
                absl::StrCat("--coordinator_listen=127.0.0.1:", port)},
               2, 2);
}

TEST_F(ClusterModeTest, TorchrunStyleOneLauncherPerRank) {
  const int port = FreePort();
  std::vector<std::vector<std::string>> envs;
  for (int rank = 0; rank < 4; ++rank) {
    envs.push_back({absl::StrCat("RANK=", rank), "WORLD_SIZE=4",
                    absl::StrCat("LOCAL_RANK=", rank % 2), "LOCAL_WORLD_SIZE=2",
                    "MASTER_ADDR=127.0.0.1", absl::StrCat("MASTER_PORT=", port)});
  }
  RunInstances(envs,
               {"--cluster=torchrun", "--bind_host=127.0.0.1",
                absl::StrCat("--coordinator_listen=127.0.0.1:", port)},
               2, 2);
}

}  // namespace
}  // namespace testing
}  // namespace tokenrail
