// The coordinator end to end with simulated daemons (MemberClient) as gRPC
// clients of a real in-process server: join, topology, heartbeats and stats,
// barrier allgather in rounds, leave -> SUCCEEDED, WatchJob history + live.
#include "scheduler/coordinator/coordinator.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "scheduler/coordinator/member_client.h"
#include "scheduler/coordinator/test_util.h"

namespace tokenrail {
namespace coordinator {
namespace {

using testing::Context;
using testing::Spec;
using testing::TestCoordinator;

// Reads a WatchJob stream on a thread.
class Watcher {
 public:
  Watcher(v1::JobService::Stub& stub, const std::string& job_id, int64_t from = 0) {
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    request.set_from_sequence(from);
    ctx_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    reader_ = stub.WatchJob(&ctx_, request);
    thread_ = std::thread([this] {
      v1::JobEvent event;
      while (reader_->Read(&event)) {
        absl::MutexLock lock(&mu_);
        events_.push_back(event);
      }
      status_ = reader_->Finish();
      done_.Notify();
    });
  }
  ~Watcher() {
    ctx_.TryCancel();
    thread_.join();
  }
  // Waits for the server to end the stream.
  grpc::Status Wait() {
    EXPECT_TRUE(done_.WaitForNotificationWithTimeout(absl::Seconds(20)));
    return status_;
  }
  std::vector<v1::JobEvent> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  bool WaitForEvents(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<v1::JobEvent> events_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_;
  absl::Notification done_;
};

TEST(CoordinatorTest, FullLifecycleWithFourDaemons) {
  TestCoordinator tc;
  constexpr int kNodes = 4, kRanks = 2;
  absl::StatusOr<v1::Job> job = tc.CreateJob(Spec(kNodes, kRanks), "life");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_PENDING);
  Watcher watcher(tc.jobs(), "life");

  // A scheduler waiting for the full topology before anyone joined.
  absl::Notification topology_ready;
  v1::Topology waited;
  grpc::Status waited_status;
  std::thread waiter([&] {
    v1::GetTopologyRequest request;
    request.set_job_id("life");
    request.set_wait_for_all(true);
    waited_status = tc.coordinator().GetTopology(Context().get(), request, &waited);
    topology_ready.Notify();
  });

  std::vector<std::unique_ptr<MemberClient>> daemons;
  for (int n = 0; n < kNodes; ++n) {
    absl::StatusOr<std::unique_ptr<MemberClient>> d = tc.Join("life", n, kRanks);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ((*d)->join_response().spec().nodes(), kNodes);
    EXPECT_EQ((*d)->join_response().heartbeat_interval_ms(), 50);
    EXPECT_EQ((*d)->join_response().heartbeat_timeout_ms(), 1000);
    if (n < kNodes - 1) EXPECT_FALSE(topology_ready.HasBeenNotified());
    daemons.push_back(std::move(*d));
  }
  ASSERT_TRUE(topology_ready.WaitForNotificationWithTimeout(absl::Seconds(5)));
  waiter.join();
  ASSERT_TRUE(waited_status.ok()) << waited_status.error_message();
  EXPECT_EQ(waited.world_size(), kNodes * kRanks);
  ASSERT_EQ(waited.nodes_size(), kNodes);
  for (int n = 0; n < kNodes; ++n) {
    const v1::NodeInfo& info = waited.nodes(n);
    EXPECT_EQ(info.node_id(), n);
    EXPECT_EQ(info.hostname(), absl::StrCat("host", n));
    EXPECT_EQ(info.first_global_rank(), n * kRanks);
    ASSERT_EQ(info.endpoints_size(), 1);
    EXPECT_EQ(info.endpoints(0).address(), absl::StrCat("ucx-address-of-node-", n));
    ASSERT_EQ(info.memory_keys_size(), 1);
    EXPECT_EQ(info.memory_keys(0).key(), absl::StrCat("rkey-", n));
    EXPECT_EQ(info.node_service_address(), absl::StrCat("127.0.0.1:", 40000 + n));
  }
  ASSERT_TRUE(tc.WaitForState("life", v1::JOB_RUNNING).ok());
  // The RUNNING state reaches the daemons through their heartbeat streams.
  for (auto& d : daemons) {
    const absl::Time until = absl::Now() + absl::Seconds(5);
    while (d->last_heartbeat().state() != v1::JOB_RUNNING && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    EXPECT_EQ(d->last_heartbeat().state(), v1::JOB_RUNNING);
    EXPECT_TRUE(d->job_status().ok()) << d->job_status();
  }

  // Three rounds of an allgather among the four daemons.
  for (int round = 0; round < 3; ++round) {
    std::vector<std::thread> threads;
    std::vector<absl::StatusOr<v1::BarrierResponse>> results(kNodes);
    for (int n = 0; n < kNodes; ++n) {
      threads.emplace_back([&, n] {
        results[n] = daemons[n]->Barrier("exchange", n, kNodes,
                                         absl::StrCat("payload-", n, "-round-", round),
                                         absl::Now() + absl::Seconds(10));
      });
    }
    for (auto& t : threads) t.join();
    for (int n = 0; n < kNodes; ++n) {
      ASSERT_TRUE(results[n].ok()) << results[n].status();
      EXPECT_EQ(results[n]->round(), round);
      ASSERT_EQ(results[n]->payloads_size(), kNodes);
      for (int p = 0; p < kNodes; ++p) {
        EXPECT_EQ(results[n]->payloads(p), absl::StrCat("payload-", p, "-round-", round));
      }
    }
  }

  // Stats and progress travel with the beats; GetStats aggregates them.
  for (int n = 0; n < kNodes; ++n) {
    v1::NodeStats stats;
    stats.set_intra_node_bytes(1000 * (n + 1));
    stats.set_inter_node_bytes(10 * (n + 1));
    stats.set_inter_node_puts(n);
    v1::RankStats* r = stats.add_ranks();
    r->set_global_rank(n * kRanks);
    r->set_puts(7);
    daemons[n]->SetStats(stats, /*progress_step=*/5 + n);
  }
  v1::JobStats stats;
  const absl::Time until = absl::Now() + absl::Seconds(5);
  do {
    v1::GetStatsRequest request;
    request.set_job_id("life");
    ASSERT_TRUE(tc.jobs().GetStats(Context().get(), request, &stats).ok());
  } while (stats.intra_node_bytes() != 10000 && absl::Now() < until &&
           (absl::SleepFor(absl::Milliseconds(5)), true));
  EXPECT_EQ(stats.job_id(), "life");
  EXPECT_EQ(stats.intra_node_bytes(), 1000u + 2000 + 3000 + 4000);
  EXPECT_EQ(stats.inter_node_bytes(), 100u);
  ASSERT_EQ(stats.nodes_size(), kNodes);
  for (int n = 0; n < kNodes; ++n) {
    EXPECT_EQ(stats.nodes(n).node_id(), n);
    EXPECT_EQ(stats.nodes(n).inter_node_puts(), static_cast<uint64_t>(n));
    ASSERT_EQ(stats.nodes(n).ranks_size(), 1);
    EXPECT_EQ(stats.nodes(n).ranks(0).puts(), 7u);
  }
  absl::StatusOr<v1::Job> running = tc.WaitForState("life", v1::JOB_RUNNING);
  ASSERT_TRUE(running.ok());
  EXPECT_EQ(running->progress_step(), 8);
  ASSERT_EQ(running->nodes_size(), kNodes);
  for (const v1::NodeMembership& m : running->nodes()) {
    EXPECT_EQ(m.state(), v1::NodeMembership::JOINED);
    EXPECT_GT(m.last_heartbeat_unix_ms(), 0);
  }

  for (auto& d : daemons) ASSERT_TRUE(d->Leave(/*clean=*/true, "done").ok());
  absl::StatusOr<v1::Job> done = tc.WaitForState("life", v1::JOB_SUCCEEDED);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_FALSE(done->has_failure());
  for (const v1::NodeMembership& m : done->nodes()) EXPECT_EQ(m.state(), v1::NodeMembership::LEFT);

  // WatchJob saw the whole story, in order, and ended after the final state.
  grpc::Status watch_status = watcher.Wait();
  EXPECT_TRUE(watch_status.ok()) << watch_status.error_message();
  std::vector<v1::JobEvent> events = watcher.events();
  ASSERT_FALSE(events.empty());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i));
    EXPECT_EQ(events[i].job_id(), "life");
  }
  EXPECT_EQ(events.front().state_changed(), v1::JOB_PENDING);
  EXPECT_EQ(events.back().state_changed(), v1::JOB_SUCCEEDED);
  int joins = 0, leaves = 0, running_events = 0, progress = 0;
  for (const v1::JobEvent& e : events) {
    if (e.has_membership() && e.membership().state() == v1::NodeMembership::JOINED) ++joins;
    if (e.has_membership() && e.membership().state() == v1::NodeMembership::LEFT) ++leaves;
    if (e.kind_case() == v1::JobEvent::kStateChanged && e.state_changed() == v1::JOB_RUNNING) {
      ++running_events;
    }
    if (e.kind_case() == v1::JobEvent::kProgressStep) ++progress;
  }
  EXPECT_EQ(joins, kNodes);
  EXPECT_EQ(leaves, kNodes);
  EXPECT_EQ(running_events, 1);
  EXPECT_GE(progress, 1);

  // A late watcher gets the history and the end at once; from_sequence skips.
  Watcher late(tc.jobs(), "life", /*from=*/3);
  EXPECT_TRUE(late.Wait().ok());
  std::vector<v1::JobEvent> tail = late.events();
  ASSERT_EQ(tail.size(), events.size() - 3);
  EXPECT_EQ(tail.front().sequence(), 3);
}

TEST(CoordinatorTest, HostsManyJobsAtOnce) {
  TestCoordinator tc;
  ASSERT_TRUE(tc.CreateJob(Spec(1, 1), "a").ok());
  ASSERT_TRUE(tc.CreateJob(Spec(2, 1), "b").ok());
  absl::StatusOr<v1::Job> generated = tc.CreateJob(Spec(1, 2));
  ASSERT_TRUE(generated.ok());
  EXPECT_EQ(generated->job_id().rfind("job-", 0), 0u) << generated->job_id();

  auto a0 = tc.Join("a", 0, 1);
  auto b0 = tc.Join("b", 0, 1);
  ASSERT_TRUE(a0.ok() && b0.ok());
  EXPECT_TRUE(tc.WaitForState("a", v1::JOB_RUNNING).ok());
  EXPECT_EQ(tc.GetJob("b")->state(), v1::JOB_PENDING);
  // Barriers with the same name in different jobs are independent.
  auto ra = (*a0)->Barrier("x", 0, 1, "from-a", absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(ra.ok()) << ra.status();
  EXPECT_EQ(ra->payloads(0), "from-a");

  v1::ListJobsResponse list;
  ASSERT_TRUE(tc.jobs().ListJobs(Context().get(), v1::ListJobsRequest(), &list).ok());
  ASSERT_EQ(list.jobs_size(), 3);
  EXPECT_EQ(list.jobs(0).job_id(), "a");
  EXPECT_EQ(list.jobs(1).job_id(), "b");
  EXPECT_EQ(list.jobs(0).nodes_size(), 1);
  ASSERT_TRUE((*a0)->Leave(true, "").ok());
  EXPECT_TRUE(tc.WaitForState("a", v1::JOB_SUCCEEDED).ok());
  EXPECT_EQ(tc.GetJob("b")->state(), v1::JOB_PENDING);
}

TEST(CoordinatorTest, EvictsOldestEndedJobWhenFull) {
  CoordinatorOptions options = testing::FastOptions();
  options.max_jobs = 2;
  TestCoordinator tc(options);
  ASSERT_TRUE(tc.CreateJob(Spec(1, 1), "first").ok());
  ASSERT_TRUE(tc.CreateJob(Spec(1, 1), "second").ok());
  absl::StatusOr<v1::Job> third = tc.CreateJob(Spec(1, 1), "third");
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
  v1::CancelJobRequest cancel;
  cancel.set_job_id("first");
  v1::Job cancelled;
  ASSERT_TRUE(tc.jobs().CancelJob(Context().get(), cancel, &cancelled).ok());
  ASSERT_TRUE(tc.CreateJob(Spec(1, 1), "third").ok());
  EXPECT_EQ(tc.GetJob("first").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(tc.GetJob("second").ok());
}

TEST(CoordinatorTest, BarrierRoundsAreReusableAndCancelledWaitersWithdraw) {
  TestCoordinator tc;
  ASSERT_TRUE(tc.CreateJob(Spec(2, 1), "rounds").ok());
  auto d0 = tc.Join("rounds", 0, 1);
  auto d1 = tc.Join("rounds", 1, 1);
  ASSERT_TRUE(d0.ok() && d1.ok());
  // Participant 0 times out alone: it withdraws, so the round is not poisoned.
  auto alone = (*d0)->Barrier("b", 0, 2, "early", absl::Now() + absl::Milliseconds(100));
  EXPECT_EQ(alone.status().code(), absl::StatusCode::kDeadlineExceeded) << alone.status();
  // The server's copy of the deadline ends a little later than the client's
  // (it counts from the request's arrival): give it time to withdraw.
  absl::SleepFor(absl::Milliseconds(300));
  // Both now meet in round 0 with the retried payload.
  absl::StatusOr<v1::BarrierResponse> r0;
  std::thread t([&] { r0 = (*d0)->Barrier("b", 0, 2, "retry", absl::Now() + absl::Seconds(5)); });
  auto r1 = (*d1)->Barrier("b", 1, 2, "one", absl::Now() + absl::Seconds(5));
  t.join();
  ASSERT_TRUE(r0.ok()) << r0.status();
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r0->round(), 0);
  EXPECT_EQ(r1->payloads(0), "retry");
  EXPECT_EQ(r1->payloads(1), "one");
  // One daemon may enter several participant slots (e.g. on behalf of ranks).
  absl::StatusOr<v1::BarrierResponse> s0;
  std::thread t2([&] { s0 = (*d0)->Barrier("b", 0, 2, "x", absl::Now() + absl::Seconds(5)); });
  auto s1 = (*d0)->Barrier("b", 1, 2, "y", absl::Now() + absl::Seconds(5));
  t2.join();
  ASSERT_TRUE(s0.ok() && s1.ok());
  EXPECT_EQ(s1->round(), 1);
}

TEST(CoordinatorTest, SixtyFourWaitersDoNotStarveTheServer) {
  // 64 callers parked in one barrier while other RPCs keep being served.
  TestCoordinator tc;
  constexpr int kN = 64;
  ASSERT_TRUE(tc.CreateJob(Spec(kN, 1), "wide").ok());
  std::vector<std::unique_ptr<MemberClient>> d(kN);
  for (int n = 0; n < kN; ++n) {
    auto m = tc.Join("wide", n, 1);
    ASSERT_TRUE(m.ok()) << m.status();
    d[n] = std::move(*m);
  }
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<v1::BarrierResponse>> results(kN);
  for (int n = 0; n < kN - 1; ++n) {
    threads.emplace_back([&, n] {
      results[n] = d[n]->Barrier("all", n, kN, std::to_string(n), absl::Now() + absl::Seconds(20));
    });
  }
  absl::SleepFor(absl::Milliseconds(200));
  // The server still answers while 63 calls wait.
  const absl::Time start = absl::Now();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(tc.GetJob("wide").ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  results[kN - 1] = d[kN - 1]->Barrier("all", kN - 1, kN, std::to_string(kN - 1),
                                       absl::Now() + absl::Seconds(20));
  for (auto& t : threads) t.join();
  for (int n = 0; n < kN; ++n) {
    ASSERT_TRUE(results[n].ok()) << n << ": " << results[n].status();
    ASSERT_EQ(results[n]->payloads_size(), kN);
    EXPECT_EQ(results[n]->payloads(17), "17");
  }
}

}  // namespace
}  // namespace coordinator
}  // namespace tokenrail
