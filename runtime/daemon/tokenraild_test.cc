// The tokenraild binary (flags, ready file, hosted and standalone
// coordinator, SIGTERM drain, exit when done) and its NodeService.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/rpc/client.h"
#include "common/rpc/server.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "proto/tokenrail/v1/job.grpc.pb.h"
#include "proto/tokenrail/v1/node.grpc.pb.h"
#include "runtime/client/client.h"
#include "runtime/daemon/test_cluster.h"

namespace tokenrail {
namespace runtime {
namespace {

using coordinator::testing::kTestToken;
using testing::DaemonProcess;
using testing::TestCluster;

std::shared_ptr<grpc::Channel> Channel(const std::string& target, const std::string& token) {
  rpc::ClientOptions o;
  o.auth_token = token;
  return *rpc::CreateChannel(target, o);
}

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  return ctx;
}

// A rank that attaches, allocates, passes a barrier and detaches.
absl::Status ShortRank(const AttachOptions& opts) {
  TR_ASSIGN_OR_RETURN(std::unique_ptr<RankClient> rank, RankClient::Attach(opts));
  TR_ASSIGN_OR_RETURN(Region r, rank->AllocateSymmetric(4096));
  TR_ASSIGN_OR_RETURN(uint64_t id, rank->Put(r, 0, rank->topology().global_rank, r, 8, 8, 3));
  TR_RETURN_IF_ERROR(rank->WaitComplete(id, absl::Now() + absl::Seconds(10)));
  TR_RETURN_IF_ERROR(rank->Barrier(absl::Now() + absl::Seconds(30)));
  return rank->Detach();
}

TEST(NodeServiceTest, StatusNeedsTheTokenAndDrainFinishesTheDaemon) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 2});
  ASSERT_TRUE(cluster.Start().ok());
  const std::string target = absl::StrCat("127.0.0.1:", cluster.daemon(0).node_port());
  auto rank = RankClient::Attach(cluster.Attach(0, 1));
  ASSERT_TRUE(rank.ok());

  auto node = v1::NodeService::NewStub(Channel(target, kTestToken));
  v1::NodeStatus st;
  ASSERT_TRUE(node->GetNodeStatus(Ctx().get(), {}, &st).ok());
  EXPECT_EQ(st.state(), v1::NodeStatus::SERVING);
  EXPECT_EQ(st.job_id(), cluster.job_id());
  EXPECT_EQ(st.arena_bytes(), cluster.config().arena_bytes);
  ASSERT_EQ(st.ranks_size(), 2);
  EXPECT_FALSE(st.ranks(0).attached());
  EXPECT_TRUE(st.ranks(1).attached());
  EXPECT_EQ(st.ranks(1).global_rank(), 1);
  EXPECT_EQ(st.ranks(1).pid(), ::getpid());

  auto anonymous = v1::NodeService::NewStub(Channel(target, ""));
  grpc::Status denied = anonymous->GetNodeStatus(Ctx().get(), {}, &st);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::UNAUTHENTICATED) << denied.error_message();
  auto wrong = v1::NodeService::NewStub(Channel(target, "not-the-token"));
  EXPECT_EQ(wrong->GetNodeStatus(Ctx().get(), {}, &st).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  v1::DrainRequest bad;
  bad.set_timeout_ms(-5);
  v1::DrainResponse dr;
  grpc::Status invalid = node->Drain(Ctx().get(), bad, &dr);
  EXPECT_EQ(invalid.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(invalid.error_message().find("-5"), std::string::npos);

  // Draining with a rank attached: that rank learns it, the job fails.
  v1::DrainRequest drain;
  drain.set_reason("maintenance");
  drain.set_timeout_ms(2000);
  ASSERT_TRUE(node->Drain(Ctx().get(), drain, &dr).ok());
  EXPECT_TRUE(cluster.daemon(0).Wait().ok());
  absl::Status s = (*rank)->Ping(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("maintenance"), std::string::npos) << s;
  auto job = cluster.coordinator().WaitForState(cluster.job_id(), v1::JOB_FAILED);
  EXPECT_TRUE(job.ok()) << job.status();
}

TEST(TokenraildTest, SigtermDrainsLeavesAndExitsZero) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 1});
  ASSERT_TRUE(
      cluster.coordinator().CreateJob(coordinator::testing::Spec(1, 1), cluster.job_id()).ok());
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start(cluster.DaemonArgs(0)).ok());
  auto ready = daemon.WaitReady(cluster.ReadyFile(0), absl::Seconds(30));
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_GT(testing::ReadyValue(*ready, "node_port"), 0) << *ready;
  EXPECT_EQ(testing::ReadyValue(*ready, "coordinator_port"), -1) << *ready;
  absl::Status s = ShortRank(cluster.Attach(0, 0));
  EXPECT_TRUE(s.ok()) << s;
  daemon.Signal(SIGTERM);
  const int status = daemon.Wait(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
  auto job = cluster.coordinator().WaitForState(cluster.job_id(), v1::JOB_SUCCEEDED);
  EXPECT_TRUE(job.ok()) << job.status();
  EXPECT_NE(::access(cluster.SocketPath(0).c_str(), F_OK), 0) << "socket file left behind";
}

TEST(TokenraildTest, HostedCoordinatorAndExitWhenDone) {
  // No external coordinator: node 0 hosts it, node 1 joins it.
  TestCluster cluster({.nodes = 2, .ranks_per_node = 1});
  std::vector<std::string> host_args =
      cluster.DaemonArgs(0, {"--host_coordinator", "--exit_when_done"});
  host_args.erase(
      std::remove_if(host_args.begin(), host_args.end(),
                     [](const std::string& a) { return a.rfind("--coordinator=", 0) == 0; }),
      host_args.end());
  // The host writes its ready file only once serving, which needs the job,
  // which needs the coordinator: as with torchrun's MASTER_PORT, the
  // coordinator's port is chosen up front.
  int port = 0;
  {
    auto probe = rpc::Server::Start(rpc::ServerOptions(), {});
    ASSERT_TRUE(probe.ok());
    port = (*probe)->port();
  }
  host_args.push_back(absl::StrCat("--coordinator_listen=127.0.0.1:", port));
  DaemonProcess host;
  ASSERT_TRUE(host.Start(host_args).ok());
  const std::string coord = absl::StrCat("127.0.0.1:", port);
  auto jobs = v1::JobService::NewStub(Channel(coord, kTestToken));
  v1::CreateJobRequest create;
  *create.mutable_spec() = coordinator::testing::Spec(2, 1);
  create.set_job_id(cluster.job_id());
  v1::Job job;
  grpc::Status created;
  for (int i = 0; i < 200; ++i) {
    auto ctx = Ctx();
    ctx->set_wait_for_ready(true);
    created = jobs->CreateJob(ctx.get(), create, &job);
    if (created.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(created.ok()) << created.error_message();

  std::vector<std::string> member_args = cluster.DaemonArgs(1, {"--exit_when_done"});
  for (std::string& a : member_args) {
    if (a.rfind("--coordinator=", 0) == 0) a = "--coordinator=" + coord;
  }
  DaemonProcess member;
  ASSERT_TRUE(member.Start(member_args).ok());
  auto ready0 = host.WaitReady(cluster.ReadyFile(0), absl::Seconds(30));
  auto ready1 = member.WaitReady(cluster.ReadyFile(1), absl::Seconds(30));
  ASSERT_TRUE(ready0.ok() && ready1.ok());
  EXPECT_EQ(testing::ReadyValue(*ready0, "coordinator_port"), port) << *ready0;

  absl::Status r0, r1;
  std::thread t0([&] { r0 = ShortRank(cluster.Attach(0, 0)); });
  std::thread t1([&] { r1 = ShortRank(cluster.Attach(1, 0)); });
  t0.join();
  t1.join();
  EXPECT_TRUE(r0.ok()) << r0;
  EXPECT_TRUE(r1.ok()) << r1;
  const int s1 = member.Wait(absl::Seconds(30));
  const int s0 = host.Wait(absl::Seconds(30));
  EXPECT_TRUE(WIFEXITED(s0) && WEXITSTATUS(s0) == 0) << "host wait status " << s0;
  EXPECT_TRUE(WIFEXITED(s1) && WEXITSTATUS(s1) == 0) << "member wait status " << s1;
}

TEST(TokenraildTest, CoordinatorOnlyServesJobService) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 1});
  const std::string ready = cluster.ReadyFile(0);
  std::vector<std::string> args = cluster.DaemonArgs(0, {"--coordinator_only"});
  DaemonProcess coord;
  ASSERT_TRUE(coord.Start(args).ok());
  auto text = coord.WaitReady(ready, absl::Seconds(30));
  ASSERT_TRUE(text.ok()) << text.status();
  const int port = testing::ReadyValue(*text, "coordinator_port");
  ASSERT_GT(port, 0) << *text;
  EXPECT_EQ(testing::ReadyValue(*text, "node_port"), -1);
  auto jobs = v1::JobService::NewStub(Channel(absl::StrCat("127.0.0.1:", port), kTestToken));
  v1::GetJobRequest get;
  get.set_job_id("no-such-job");
  v1::Job job;
  EXPECT_EQ(jobs->GetJob(Ctx().get(), get, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  coord.Signal(SIGTERM);
  const int status = coord.Wait(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
}

TEST(TokenraildTest, BadFlagsExitTwoWithAMessage) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 1});
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start(cluster.DaemonArgs(0, {"--arena_bytes=1000"})).ok());
  int status = daemon.Wait(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << "wait status " << status;
  DaemonProcess params;
  ASSERT_TRUE(params.Start(cluster.DaemonArgs(0, {"--transport_params=novalue"})).ok());
  status = params.Wait(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << "wait status " << status;
}

}  // namespace
}  // namespace runtime
}  // namespace tokenrail
