#include "tools/launch/cluster_env.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tokenrail {
namespace launch {
namespace {

TEST(ClusterEnvTest, LocalByDefault) {
  ClusterFlags f;
  f.nodes = 2;
  f.ranks_per_node = 4;
  auto p = ResolveCluster({"SLURM_JOB_ID=7", "SLURM_NODEID=1", "SLURM_NNODES=2"}, f);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kind, ClusterKind::kLocal);
  EXPECT_EQ(p->nodes, 2);
  EXPECT_EQ(p->ranks_per_node, 4);
}

TEST(ClusterEnvTest, SlurmOneLauncherPerNode) {
  ClusterFlags f;
  f.cluster = "slurm";
  f.ranks_per_node = 8;
  auto p = ResolveCluster(
      {"SLURM_JOB_ID=4242", "SLURM_STEP_ID=0", "SLURM_NODEID=2", "SLURM_NNODES=4",
       "SLURM_NTASKS_PER_NODE=1", "SLURM_LOCALID=0", "SLURM_JOB_NODELIST=gpu[07-10],cpu1"},
      f);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->kind, ClusterKind::kSlurm);
  EXPECT_EQ(p->node_id, 2);
  EXPECT_EQ(p->nodes, 4);
  EXPECT_EQ(p->ranks_per_node, 8);
  EXPECT_FALSE(p->per_rank());
  EXPECT_TRUE(p->starts_daemon());
  EXPECT_FALSE(p->hosts_coordinator());
  EXPECT_EQ(p->coordinator_host, "gpu07");
  EXPECT_EQ(p->coordinator_port, SlurmDefaultPort("4242"));
  EXPECT_EQ(p->job_id, "slurm-4242-0");
}

TEST(ClusterEnvTest, SlurmOneLauncherPerRank) {
  ClusterFlags f;
  f.cluster = "auto";
  f.coordinator = "10.0.0.1:7000";
  auto p = ResolveCluster({"SLURM_JOB_ID=9", "SLURM_NODEID=0", "SLURM_NNODES=2",
                           "SLURM_TASKS_PER_NODE=4(x2)", "SLURM_LOCALID=3"},
                          f);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->per_rank());
  EXPECT_EQ(p->ranks_per_node, 4);
  EXPECT_EQ(p->local_index, 3);
  EXPECT_FALSE(p->starts_daemon());
  EXPECT_FALSE(p->hosts_coordinator());
  EXPECT_EQ(p->coordinator_host, "10.0.0.1");
  EXPECT_EQ(p->coordinator_port, 7000);
}

TEST(ClusterEnvTest, TorchrunStyle) {
  ClusterFlags f;
  f.cluster = "torchrun";
  f.ranks_per_node = 2;
  // One launcher per node: RANK/WORLD_SIZE count nodes.
  auto p = ResolveCluster({"RANK=1", "WORLD_SIZE=3", "MASTER_ADDR=host0", "MASTER_PORT=29500"}, f);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->node_id, 1);
  EXPECT_EQ(p->nodes, 3);
  EXPECT_EQ(p->ranks_per_node, 2);
  EXPECT_EQ(p->coordinator_host, "host0");
  EXPECT_EQ(p->coordinator_port, 29500);
  EXPECT_EQ(p->job_id.substr(0, 6), "torch-");
  // Every instance derives the same job id.
  auto q = ResolveCluster({"RANK=0", "WORLD_SIZE=3", "MASTER_ADDR=host0", "MASTER_PORT=29500"}, f);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->job_id, p->job_id);
  EXPECT_TRUE(q->hosts_coordinator());

  // One launcher per rank (torchrun's workers).
  f.ranks_per_node = 0;
  p = ResolveCluster({"RANK=5", "WORLD_SIZE=8", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=4",
                      "MASTER_ADDR=h", "MASTER_PORT=1234", "TORCHELASTIC_RUN_ID=Run_7"},
                     f);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->node_id, 1);
  EXPECT_EQ(p->nodes, 2);
  EXPECT_EQ(p->ranks_per_node, 4);
  EXPECT_EQ(p->local_index, 1);
  EXPECT_EQ(p->job_id, "torch-run-7");
}

TEST(ClusterEnvTest, InconsistentEnvironmentsAreRefused) {
  ClusterFlags f;
  f.cluster = "torchrun";
  auto p = ResolveCluster(
      {"RANK=1", "WORLD_SIZE=6", "LOCAL_WORLD_SIZE=4", "MASTER_ADDR=h", "MASTER_PORT=1"}, f);
  EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << p.status();
  p = ResolveCluster({"RANK=5", "WORLD_SIZE=8", "LOCAL_RANK=0", "LOCAL_WORLD_SIZE=4",
                      "MASTER_ADDR=h", "MASTER_PORT=1"},
                     f);
  EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << p.status();
  p = ResolveCluster({"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=h"}, f);  // no port
  EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << p.status();
  f.ranks_per_node = 2;
  f.nodes = 3;
  p = ResolveCluster({"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=5"}, f);
  EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << p.status();
  EXPECT_NE(p.status().message().find("--nodes=3"), std::string::npos);
  f.cluster = "pbs";
  p = ResolveCluster({}, f);
  EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << p.status();

  ClusterFlags s;
  s.cluster = "slurm";
  s.ranks_per_node = 1;
  p = ResolveCluster({"SLURM_JOB_ID=1", "SLURM_NODEID=2", "SLURM_NNODES=2", "SLURM_NODELIST=a"}, s);
  EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << p.status();
  p = ResolveCluster({"SLURM_JOB_ID=1", "SLURM_NODEID=0", "SLURM_NNODES=2",
                      "SLURM_TASKS_PER_NODE=4,2", "SLURM_NODELIST=a"},
                     s);
  EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << p.status();
}

TEST(ClusterEnvTest, SlurmHostlists) {
  EXPECT_EQ(*FirstSlurmHost("node1"), "node1");
  EXPECT_EQ(*FirstSlurmHost("node1,node2"), "node1");
  EXPECT_EQ(*FirstSlurmHost("gpu[003-010,12]"), "gpu003");
  EXPECT_EQ(*FirstSlurmHost("rack[2-3]-n[1-4],x"), "rack2-n[1-4]");
  EXPECT_FALSE(FirstSlurmHost("gpu[").ok());
  EXPECT_FALSE(FirstSlurmHost("").ok());
}

TEST(ClusterEnvTest, JobIdsAreSanitized) {
  EXPECT_EQ(SanitizeJobId("Slurm_12.3"), "slurm-12-3");
  EXPECT_EQ(SanitizeJobId(std::string(100, 'a')).size(), 64u);
}

}  // namespace
}  // namespace launch
}  // namespace tokenrail
