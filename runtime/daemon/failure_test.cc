// Failure handling: a rank or a daemon killed with SIGKILL; every surviving
// rank's wait ends with Unavailable naming the dead rank or node, within the
// failure-detection bound (the 5 s), and the job is FAILED.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "runtime/client/client.h"
#include "runtime/daemon/test_cluster.h"

namespace tokenrail {
namespace runtime {
namespace {

using testing::ClusterConfig;
using testing::TestCluster;

// The bound on failure detection ("within the timeout, <= 5 s").
constexpr absl::Duration kDetectionBound = absl::Seconds(5);

// A rank thread that attaches, joins the job's first allocation and barrier,
// then waits for a notification that never comes. `failure` gets the wait's
// result and `failed_at` when it ended.
struct WaitingRank {
  absl::Status failure;
  absl::Time failed_at;
  absl::Notification ready;
  std::thread thread;

  void Start(const AttachOptions& opts) {
    thread = std::thread([this, opts] {
      auto rank = RankClient::Attach(opts);
      if (!rank.ok()) {
        failure = rank.status();
        ready.Notify();
        return;
      }
      absl::Status s = (*rank)->AllocateSymmetric(4096, absl::Now() + absl::Seconds(30)).status();
      if (s.ok()) s = (*rank)->Barrier(absl::Now() + absl::Seconds(30));
      ready.Notify();
      if (!s.ok()) {
        failure = s;
        return;
      }
      failure = (*rank)->WaitNotification(absl::Now() + absl::Seconds(60)).status();
      failed_at = absl::Now();
      // Every later call fails the same way (sticky).
      if ((*rank)->Ping(absl::Now() + absl::Seconds(1)).code() != failure.code()) {
        failure = absl::InternalError("a later call did not return the same failure");
      }
    });
  }
  void Join() {
    if (thread.joinable()) thread.join();
  }
};

// Spawns a rank at (node, local) that hangs, starts `survivor` as rank
// (0, 0), SIGKILLs the hanging rank once both are ready and waits for the
// survivor's wait to end. `killed`: when the signal was sent.
void KillHangingRank(TestCluster& cluster, int node, int local, WaitingRank& survivor,
                     absl::Time* killed) {
  int out = -1;
  auto victim = cluster.SpawnRank(node, local, {"hang"}, &out);
  ASSERT_TRUE(victim.ok()) << victim.status();
  survivor.Start(cluster.Attach(0, 0));
  ASSERT_TRUE(testing::WaitForLine(out, "ready", absl::Seconds(30)));
  survivor.ready.WaitForNotification();
  *killed = absl::Now();
  ::kill(*victim, SIGKILL);
  survivor.Join();
  testing::WaitExit(*victim, absl::Seconds(5));
  ::close(out);
}

void ExpectUnavailableNaming(const absl::Status& s, absl::string_view needle) {
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find(needle), absl::string_view::npos)
      << "'" << s.message() << "' does not name '" << needle << "'";
}

TEST(FailureTest, KilledRankFailsTheOtherRankOfItsNode) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 2});
  ASSERT_TRUE(cluster.Start().ok());
  WaitingRank survivor;
  absl::Time killed;
  ASSERT_NO_FATAL_FAILURE(KillHangingRank(cluster, 0, 1, survivor, &killed));
  ExpectUnavailableNaming(survivor.failure, "rank 1 on node 0");
  EXPECT_LT(survivor.failed_at - killed, kDetectionBound);
  auto job = cluster.coordinator().WaitForState(cluster.job_id(), v1::JOB_FAILED);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->failure().global_rank(), 1);
  EXPECT_EQ(job->failure().node_id(), 0);
}

TEST(FailureTest, KilledRankFailsRanksOfOtherNodes) {
  TestCluster cluster({.nodes = 2, .ranks_per_node = 1});
  ASSERT_TRUE(cluster.Start().ok());
  WaitingRank survivor;
  absl::Time killed;
  ASSERT_NO_FATAL_FAILURE(KillHangingRank(cluster, 1, 0, survivor, &killed));
  ExpectUnavailableNaming(survivor.failure, "rank 1 on node 1");
  EXPECT_LT(survivor.failed_at - killed, kDetectionBound);
  std::printf("rank killed -> error on the other node after %s\n",
              absl::FormatDuration(survivor.failed_at - killed).c_str());
}

TEST(FailureTest, SurvivingRankProcessSeesTheFailure) {
  TestCluster cluster({.nodes = 2, .ranks_per_node = 1});
  ASSERT_TRUE(cluster.Start().ok());
  int victim_out = -1, survivor_out = -1;
  auto victim = cluster.SpawnRank(1, 0, {"hang"}, &victim_out);
  auto survivor =
      cluster.SpawnRank(0, 0, {"expect_unavailable", "rank 1 on node 1"}, &survivor_out);
  ASSERT_TRUE(victim.ok() && survivor.ok());
  ASSERT_TRUE(testing::WaitForLine(victim_out, "ready", absl::Seconds(30)));
  ASSERT_TRUE(testing::WaitForLine(survivor_out, "ready", absl::Seconds(30)));
  ::kill(*victim, SIGKILL);
  testing::WaitExit(*victim, absl::Seconds(5));
  const int status = testing::WaitExit(*survivor, absl::Seconds(30));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
  ::close(victim_out);
  ::close(survivor_out);
}

TEST(FailureTest, KilledDaemonFailsItsOwnRanks) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 1});
  ASSERT_TRUE(
      cluster.coordinator().CreateJob(coordinator::testing::Spec(1, 1), cluster.job_id()).ok());
  testing::DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start(cluster.DaemonArgs(0)).ok());
  auto ready = daemon.WaitReady(cluster.ReadyFile(0), absl::Seconds(30));
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_NE(ready->find("node_port="), std::string::npos) << *ready;
  EXPECT_NE(ready->find(absl::StrCat("socket=", cluster.SocketPath(0))), std::string::npos);
  WaitingRank rank;
  rank.Start(cluster.Attach(0, 0));
  rank.ready.WaitForNotification();
  ASSERT_TRUE(rank.failure.ok()) << rank.failure;
  const absl::Time killed = absl::Now();
  daemon.Kill();
  rank.Join();
  ExpectUnavailableNaming(rank.failure, "tokenraild of node 0");
  EXPECT_LT(rank.failed_at - killed, kDetectionBound);
  auto job = cluster.coordinator().WaitForState(cluster.job_id(), v1::JOB_FAILED);
  EXPECT_TRUE(job.ok()) << job.status();
}

TEST(FailureTest, KilledDaemonFailsRanksOfOtherNodes) {
  // Node 0 in this process, node 1 a tokenraild process that gets killed.
  TestCluster cluster({.nodes = 2, .ranks_per_node = 1});
  ASSERT_TRUE(
      cluster.coordinator().CreateJob(coordinator::testing::Spec(2, 1), cluster.job_id()).ok());
  testing::DaemonProcess remote;
  ASSERT_TRUE(remote.Start(cluster.DaemonArgs(1)).ok());
  Daemon local(cluster.DaemonOptionsFor(0));
  absl::Status started = local.Start();
  ASSERT_TRUE(started.ok()) << started;
  ASSERT_TRUE(remote.WaitReady(cluster.ReadyFile(1), absl::Seconds(30)).ok());
  int out = -1;
  auto remote_rank = cluster.SpawnRank(1, 0, {"expect_unavailable", "tokenraild of node 1"}, &out);
  ASSERT_TRUE(remote_rank.ok());
  WaitingRank rank;
  rank.Start(cluster.Attach(0, 0));
  ASSERT_TRUE(testing::WaitForLine(out, "ready", absl::Seconds(30)));
  rank.ready.WaitForNotification();
  const absl::Time killed = absl::Now();
  remote.Kill();
  rank.Join();
  ExpectUnavailableNaming(rank.failure, "node 1");
  EXPECT_LT(rank.failed_at - killed, kDetectionBound);
  std::printf("daemon killed -> error on the other node after %s: %s\n",
              absl::FormatDuration(rank.failed_at - killed).c_str(),
              std::string(rank.failure.message()).c_str());
  // The killed daemon's own rank saw its socket close.
  const int status = testing::WaitExit(*remote_rank, absl::Seconds(30));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
  ::close(out);
}

TEST(FailureTest, OtherUsersCannotAttach) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another user";
  TestCluster cluster({.nodes = 1, .ranks_per_node = 1});
  ASSERT_TRUE(cluster.Start().ok());
  const AttachOptions opts = cluster.Attach(0, 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setuid(65534) != 0) ::_exit(3);
    AttachOptions o = opts;
    o.attach_timeout = absl::Milliseconds(500);
    auto rank = RankClient::Attach(o);
    ::_exit(rank.ok() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
    GTEST_SKIP() << "cannot switch to another user here (sandboxed user namespace)";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
  // The daemon itself is unaffected.
  auto rank = RankClient::Attach(opts);
  EXPECT_TRUE(rank.ok()) << rank.status();
}

}  // namespace
}  // namespace runtime
}  // namespace tokenrail
