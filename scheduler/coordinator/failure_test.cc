// Failure detection and propagation: heartbeat timeout, stream break without
// Leave, ReportFailure, Leave(clean=false), CancelJob, shutdown. Every waiting
// and later call of every survivor ends with UNAVAILABLE naming the failure,
// within the heartbeat timeout; WatchJob streams the membership and failure.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "scheduler/coordinator/coordinator.h"
#include "scheduler/coordinator/member_client.h"
#include "scheduler/coordinator/test_util.h"

namespace tokenrail {
namespace coordinator {
namespace {

using testing::Context;
using testing::Spec;
using testing::TestCoordinator;

struct Cluster {
  Cluster(TestCoordinator& tc, const std::string& job, int nodes) {
    EXPECT_TRUE(tc.CreateJob(Spec(nodes, 2), job).ok());
    for (int n = 0; n < nodes; ++n) {
      auto d = tc.Join(job, n, 2);
      EXPECT_TRUE(d.ok()) << d.status();
      if (d.ok()) daemons.push_back(std::move(*d));
    }
    EXPECT_TRUE(tc.WaitForState(job, v1::JOB_RUNNING).ok());
  }
  std::vector<std::unique_ptr<MemberClient>> daemons;
};

std::vector<v1::JobEvent> History(TestCoordinator& tc, const std::string& job) {
  v1::WatchJobRequest request;
  request.set_job_id(job);
  auto ctx = Context(absl::Seconds(5));
  auto reader = tc.jobs().WatchJob(ctx.get(), request);
  std::vector<v1::JobEvent> events;
  v1::JobEvent e;
  while (reader->Read(&e)) events.push_back(e);
  EXPECT_TRUE(reader->Finish().ok());  // ended jobs end the stream with OK
  return events;
}

// Survivors' barrier waiters and heartbeat streams all learn of the failure.
void ExpectSurvivorsSeeFailure(std::vector<std::unique_ptr<MemberClient>>& daemons, int dead,
                               const std::string& must_mention, absl::Duration within) {
  for (int n = 0; n < static_cast<int>(daemons.size()); ++n) {
    if (n == dead) continue;
    absl::Status s = daemons[n]->WaitForJobEnd(absl::Now() + within);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), must_mention)) << s;
  }
}

TEST(FailureTest, HeartbeatTimeoutFailsJobAndReleasesBarrierWaiters) {
  TestCoordinator tc;
  Cluster c(tc, "hb", 3);
  // Nodes 0 and 2 wait in a barrier that node 1 never reaches.
  std::vector<absl::StatusOr<v1::BarrierResponse>> results(3);
  std::vector<std::thread> waiters;
  const absl::Time start = absl::Now();
  for (int n : {0, 2}) {
    waiters.emplace_back([&, n] {
      results[n] = c.daemons[n]->Barrier("step", n, 3, "p", absl::Now() + absl::Seconds(30));
    });
  }
  c.daemons[1]->PauseHeartbeats();  // hung daemon: stream open, no beats
  for (auto& t : waiters) t.join();
  const absl::Duration took = absl::Now() - start;
  for (int n : {0, 2}) {
    EXPECT_EQ(results[n].status().code(), absl::StatusCode::kUnavailable) << results[n].status();
    EXPECT_TRUE(absl::StrContains(results[n].status().message(), "node 1 (host1)"))
        << results[n].status();
    EXPECT_TRUE(absl::StrContains(results[n].status().message(), "no heartbeat for"))
        << results[n].status();
  }
  // Timeout 1 s + a tick; generous bound for a loaded CI machine.
  EXPECT_LT(took, absl::Seconds(4));
  ExpectSurvivorsSeeFailure(c.daemons, 1, "node 1", absl::Seconds(2));

  absl::StatusOr<v1::Job> job = tc.WaitForState("hb", v1::JOB_FAILED);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->failure().node_id(), 1);
  EXPECT_EQ(job->failure().global_rank(), -1);
  EXPECT_GT(job->failure().detected_unix_ms(), 0);
  EXPECT_EQ(job->nodes(1).state(), v1::NodeMembership::DEAD);
  // A later barrier fails at once with the same reason.
  auto later = c.daemons[0]->Barrier("again", 0, 2, "", absl::Now() + absl::Seconds(5));
  EXPECT_EQ(later.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(later.status().message(), "node 1 (host1)")) << later.status();

  // WatchJob: node 1 DEAD, the failure naming it, then FAILED last.
  std::vector<v1::JobEvent> events = History(tc, "hb");
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back().state_changed(), v1::JOB_FAILED);
  const v1::JobEvent& failure = events[events.size() - 2];
  ASSERT_TRUE(failure.has_failure());
  EXPECT_EQ(failure.failure().node_id(), 1);
  bool saw_dead = false;
  for (const v1::JobEvent& e : events) {
    saw_dead |= e.has_membership() && e.membership().node_id() == 1 &&
                e.membership().state() == v1::NodeMembership::DEAD;
  }
  EXPECT_TRUE(saw_dead);
}

// A heartbeat timeout far above the time it takes to notice a broken stream,
// so the stream is what reports the death.
CoordinatorOptions SlowTimeout() {
  CoordinatorOptions o = testing::FastOptions();
  o.heartbeat_timeout = absl::Seconds(10);
  return o;
}

TEST(FailureTest, StreamBreakWithoutLeaveIsDeath) {
  TestCoordinator tc(SlowTimeout());
  Cluster c(tc, "crash", 2);
  const absl::Time start = absl::Now();
  c.daemons[0]->BreakStream();  // a crashed daemon's connection goes away
  ExpectSurvivorsSeeFailure(c.daemons, 0, "node 0", absl::Seconds(5));
  // Detected from the stream itself, well before the heartbeat timeout.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  absl::StatusOr<v1::Job> job = tc.WaitForState("crash", v1::JOB_FAILED);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->failure().node_id(), 0);
  EXPECT_TRUE(absl::StrContains(job->failure().reason(), "without Leave"))
      << job->failure().reason();
}

TEST(FailureTest, DestroyingAMemberWithoutLeaveIsDeath) {
  TestCoordinator tc(SlowTimeout());
  Cluster c(tc, "gone", 2);
  c.daemons[1].reset();  // closes the stream cleanly, but never left
  absl::StatusOr<v1::Job> job = tc.WaitForState("gone", v1::JOB_FAILED);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->failure().node_id(), 1);
  EXPECT_TRUE(absl::StrContains(job->failure().reason(), "without Leave"))
      << job->failure().reason();
}

TEST(FailureTest, ReportFailureNamesTheRank) {
  TestCoordinator tc;
  Cluster c(tc, "rank", 2);
  v1::FailureInfo f;
  f.set_node_id(1);
  f.set_global_rank(3);
  f.set_reason("rank process exited with signal 9");
  ASSERT_TRUE(c.daemons[1]->ReportFailure(f).ok());
  for (auto& d : c.daemons) {
    absl::Status s = d->WaitForJobEnd(absl::Now() + absl::Seconds(2));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(absl::StrContains(s.message(), "rank 3 on node 1")) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "signal 9")) << s;
  }
  absl::StatusOr<v1::Job> job = tc.GetJob("rank");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_FAILED);
  EXPECT_EQ(job->failure().global_rank(), 3);
  // Members stay JOINED: the daemon itself is alive.
  EXPECT_EQ(job->nodes(1).state(), v1::NodeMembership::JOINED);
  // A second report of the same loss is accepted and changes nothing.
  f.set_reason("peer endpoint failed");
  EXPECT_TRUE(c.daemons[0]->ReportFailure(f).ok());
  EXPECT_EQ(tc.GetJob("rank")->failure().reason(), "rank process exited with signal 9");
  // Barrier on the failed job: UNAVAILABLE naming the rank.
  auto b = c.daemons[0]->Barrier("x", 0, 2, "", absl::Now() + absl::Seconds(2));
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(b.status().message(), "rank 3 on node 1 (host1)")) << b.status();
}

TEST(FailureTest, UncleanLeaveFailsTheJob) {
  TestCoordinator tc;
  Cluster c(tc, "unclean", 2);
  ASSERT_TRUE(c.daemons[0]->Leave(/*clean=*/false, "transport init failed").ok());
  absl::Status s = c.daemons[1]->WaitForJobEnd(absl::Now() + absl::Seconds(2));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(s.message(), "transport init failed")) << s;
  absl::StatusOr<v1::Job> job = tc.GetJob("unclean");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_FAILED);
  EXPECT_EQ(job->nodes(0).state(), v1::NodeMembership::LEFT);
}

TEST(FailureTest, CancelPushesDrainAndEndsWaiters) {
  TestCoordinator tc;
  Cluster c(tc, "cancel", 2);
  absl::StatusOr<v1::BarrierResponse> waiting;
  std::thread t(
      [&] { waiting = c.daemons[0]->Barrier("b", 0, 2, "", absl::Now() + absl::Seconds(30)); });
  absl::SleepFor(absl::Milliseconds(50));
  v1::CancelJobRequest request;
  request.set_job_id("cancel");
  request.set_reason("operator request");
  v1::Job cancelled;
  ASSERT_TRUE(tc.jobs().CancelJob(Context().get(), request, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_CANCELLED);
  t.join();
  EXPECT_EQ(waiting.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(waiting.status().message(), "cancelled: operator request"))
      << waiting.status();
  for (auto& d : c.daemons) {
    absl::Status s = d->WaitForJobEnd(absl::Now() + absl::Seconds(2));
    EXPECT_TRUE(absl::StrContains(s.message(), "cancelled")) << s;
    EXPECT_TRUE(d->last_heartbeat().drain());
    EXPECT_EQ(d->last_heartbeat().state(), v1::JOB_CANCELLED);
  }
  // Cancelling twice is refused.
  v1::Job again;
  grpc::Status s = tc.jobs().CancelJob(Context().get(), request, &again);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "already ended")) << s.error_message();
}

TEST(FailureTest, WatchJobStreamsFailureLive) {
  TestCoordinator tc(SlowTimeout());
  Cluster c(tc, "live", 2);
  v1::WatchJobRequest request;
  request.set_job_id("live");
  auto ctx = Context(absl::Seconds(10));
  auto reader = tc.jobs().WatchJob(ctx.get(), request);
  // Drain the history (PENDING, 2 joins, RUNNING) before the failure happens.
  v1::JobEvent e;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.state_changed(), v1::JOB_RUNNING);
  c.daemons[1]->BreakStream();
  std::vector<v1::JobEvent> live;
  while (reader->Read(&e)) live.push_back(e);
  EXPECT_TRUE(reader->Finish().ok());
  ASSERT_EQ(live.size(), 3u);
  EXPECT_EQ(live[0].membership().state(), v1::NodeMembership::DEAD);
  EXPECT_EQ(live[1].failure().node_id(), 1);
  EXPECT_EQ(live[2].state_changed(), v1::JOB_FAILED);
}

TEST(FailureTest, TopologyWaitFailsWhenTheJobFails) {
  TestCoordinator tc;
  ASSERT_TRUE(tc.CreateJob(Spec(3, 1), "partial").ok());
  auto d0 = tc.Join("partial", 0, 1);
  ASSERT_TRUE(d0.ok());
  absl::StatusOr<v1::Topology> topology;
  std::thread t([&] { topology = (*d0)->GetTopology(true, absl::Now() + absl::Seconds(30)); });
  absl::SleepFor(absl::Milliseconds(50));
  (*d0)->BreakStream();
  t.join();
  EXPECT_EQ(topology.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(topology.status().message(), "node 0 (host0)"))
      << topology.status();
}

TEST(FailureTest, ShutdownEndsEveryWaitingCall) {
  auto tc = std::make_unique<TestCoordinator>();
  Cluster c(*tc, "stop", 2);
  absl::StatusOr<v1::BarrierResponse> waiting;
  std::thread t(
      [&] { waiting = c.daemons[0]->Barrier("b", 0, 2, "", absl::Now() + absl::Seconds(30)); });
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time start = absl::Now();
  tc->server().Shutdown();
  t.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(waiting.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(waiting.status().message(), "shutting down")) << waiting.status();
  for (auto& d : c.daemons) {
    absl::Status s = d->WaitForJobEnd(absl::Now() + absl::Seconds(2));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  }
}

TEST(FailureTest, CallWithoutDeadlineIsBoundedByTheCoordinator) {
  CoordinatorOptions options = testing::FastOptions();
  options.max_blocking_wait = absl::Milliseconds(200);
  TestCoordinator tc(options);
  ASSERT_TRUE(tc.CreateJob(Spec(2, 1), "nodeadline").ok());
  v1::GetTopologyRequest request;
  request.set_job_id("nodeadline");
  request.set_wait_for_all(true);
  grpc::ClientContext ctx;  // no deadline
  v1::Topology topology;
  const absl::Time start = absl::Now();
  grpc::Status s = tc.coordinator().GetTopology(&ctx, request, &topology);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "0 of 2 nodes joined")) << s.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

}  // namespace
}  // namespace coordinator
}  // namespace tokenrail
