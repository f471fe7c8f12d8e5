// tokenraild + rank client: attach, collectives, proxy puts within a node and
// across nodes, notification order, bad input, the rank round trip.
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "runtime/client/client.h"
#include "runtime/daemon/test_cluster.h"

namespace tokenrail {
namespace runtime {
namespace {

using testing::ClusterConfig;
using testing::TestCluster;

absl::Time Soon() { return absl::Now() + absl::Seconds(30); }

// Runs `body(global_rank)` for every rank of `cluster`, each in its own
// thread with its own RankClient; returns the statuses by global rank.
std::vector<absl::Status> RunRanks(TestCluster& cluster,
                                   const std::function<absl::Status(RankClient&)>& body) {
  const int rpn = cluster.config().ranks_per_node;
  const int world = cluster.config().nodes * rpn;
  std::vector<absl::Status> results(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int g = 0; g < world; ++g) {
    threads.emplace_back([&, g] {
      absl::StatusOr<std::unique_ptr<RankClient>> rank =
          RankClient::Attach(cluster.Attach(g / rpn, g % rpn));
      if (!rank.ok()) {
        results[static_cast<size_t>(g)] = rank.status();
        return;
      }
      absl::Status s = body(**rank);
      absl::Status d = (*rank)->Detach();
      results[static_cast<size_t>(g)] = s.ok() ? d : s;
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

void ExpectAllOk(const std::vector<absl::Status>& results) {
  for (size_t g = 0; g < results.size(); ++g)
    EXPECT_TRUE(results[g].ok()) << "rank " << g << ": " << results[g];
}

// Every rank puts `count` tagged messages to every rank (itself included),
// then checks that it received count messages from each source, in tag
// order, with the right bytes.
absl::Status AllToAll(RankClient& rank, size_t bytes, int count) {
  const RankTopology& t = rank.topology();
  TR_ASSIGN_OR_RETURN(Region src, rank.AllocateSymmetric(bytes * count));
  TR_ASSIGN_OR_RETURN(Region dst, rank.AllocateSymmetric(bytes * count * t.world_size));
  auto* s = static_cast<uint8_t*>(src.data);
  for (size_t i = 0; i < bytes * count; ++i) s[i] = static_cast<uint8_t>(t.global_rank * 31 + i);
  TR_RETURN_IF_ERROR(rank.Barrier(Soon()));
  for (int k = 0; k < count; ++k) {
    for (int d = 0; d < t.world_size; ++d) {
      const size_t dst_off = (static_cast<size_t>(t.global_rank) * count + k) * bytes;
      TR_RETURN_IF_ERROR(rank.Put(src, k * bytes, d, dst, dst_off, bytes, k).status());
    }
  }
  TR_RETURN_IF_ERROR(rank.WaitAll(Soon()));
  std::vector<int> next_tag(static_cast<size_t>(t.world_size), 0);
  for (int n = 0; n < count * t.world_size; ++n) {
    TR_ASSIGN_OR_RETURN(RankNotification note, rank.WaitNotification(Soon()));
    int& want = next_tag[static_cast<size_t>(note.src_rank)];
    if (note.tag != static_cast<uint32_t>(want) || note.length != bytes) {
      return absl::InternalError(absl::StrCat("from rank ", note.src_rank, ": tag ", note.tag,
                                              " length ", note.length, ", expected tag ", want));
    }
    const auto* got = static_cast<const uint8_t*>(dst.data) +
                      (static_cast<size_t>(note.src_rank) * count + want) * bytes;
    for (size_t i = 0; i < bytes; ++i) {
      const auto expect = static_cast<uint8_t>(note.src_rank * 31 + want * bytes + i);
      if (got[i] != expect) {
        return absl::InternalError(absl::StrCat("from rank ", note.src_rank, " tag ", want,
                                                ": byte ", i, " is ", int{got[i]}, " not ",
                                                int{expect}));
      }
    }
    ++want;
  }
  RankNotification extra;
  TR_ASSIGN_OR_RETURN(size_t more, rank.PollNotifications(&extra, 1));
  if (more != 0) return absl::InternalError("an unexpected extra notification");
  return rank.Barrier(Soon());
}

TEST(DaemonTest, OneNodeTwoRanksPutWithinTheNode) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 2});
  ASSERT_TRUE(cluster.Start().ok());
  ExpectAllOk(RunRanks(cluster, [](RankClient& r) { return AllToAll(r, 1000, 50); }));
  const v1::NodeStats stats = cluster.daemon(0).Stats();
  EXPECT_EQ(stats.intra_node_puts(), 2u * 2 * 50);
  EXPECT_EQ(stats.intra_node_bytes(), 2u * 2 * 50 * 1000);
  EXPECT_EQ(stats.inter_node_puts(), 0u);
  EXPECT_EQ(stats.notifications_delivered(), 2u * 2 * 50);
  ASSERT_EQ(stats.ranks_size(), 2);
  EXPECT_EQ(stats.ranks(1).bytes_sent_intra_node(), 2u * 50 * 1000);
}

TEST(DaemonTest, TwoNodesOneRankEachPutAcrossNodes) {
  TestCluster cluster({.nodes = 2, .ranks_per_node = 1});
  absl::Status started = cluster.Start();
  ASSERT_TRUE(started.ok()) << started;
  ExpectAllOk(RunRanks(cluster, [](RankClient& r) { return AllToAll(r, 3000, 20); }));
  for (int n = 0; n < 2; ++n) {
    const v1::NodeStats stats = cluster.daemon(n).Stats();
    EXPECT_EQ(stats.inter_node_puts(), 20u) << "node " << n;
    EXPECT_EQ(stats.inter_node_bytes(), 20u * 3000) << "node " << n;
    EXPECT_EQ(stats.intra_node_puts(), 20u) << "node " << n;  // to itself
    EXPECT_EQ(stats.notifications_delivered(), 40u) << "node " << n;
  }
}

TEST(DaemonTest, TwoNodesTwoRanksLargeAndUnalignedPuts) {
  TestCluster cluster({.nodes = 2, .ranks_per_node = 2, .arena_bytes = 64 << 20});
  absl::Status started = cluster.Start();
  ASSERT_TRUE(started.ok()) << started;
  ExpectAllOk(RunRanks(cluster, [](RankClient& r) { return AllToAll(r, 777777, 2); }));
}

TEST(DaemonTest, ThreeNodesAllToAll) {
  TestCluster cluster({.nodes = 3, .ranks_per_node = 1});
  absl::Status started = cluster.Start();
  ASSERT_TRUE(started.ok()) << started;
  ExpectAllOk(RunRanks(cluster, [](RankClient& r) { return AllToAll(r, 4096, 16); }));
}

// More notifications than the ring holds, and more puts than the command
// credits, while the receiver is not polling: nothing is lost or reordered.
TEST(DaemonTest, SlowReceiverLosesNothing) {
  constexpr int kPuts = 3 * kNotifyEntries / 2;
  TestCluster cluster({.nodes = 1, .ranks_per_node = 2});
  ASSERT_TRUE(cluster.Start().ok());
  ExpectAllOk(RunRanks(cluster, [](RankClient& r) -> absl::Status {
    TR_ASSIGN_OR_RETURN(Region buf, r.AllocateSymmetric(kPuts * sizeof(uint32_t)));
    TR_RETURN_IF_ERROR(r.Barrier(Soon()));
    if (r.topology().local_rank == 0) {
      auto* v = static_cast<uint32_t*>(buf.data);
      for (int i = 0; i < kPuts; ++i) {
        v[i] = static_cast<uint32_t>(i * 2654435761u);
        TR_RETURN_IF_ERROR(r.Put(buf, i * sizeof(uint32_t), 1, buf, i * sizeof(uint32_t),
                                 sizeof(uint32_t), static_cast<uint32_t>(i % 65536))
                               .status());
      }
      TR_RETURN_IF_ERROR(r.WaitAll(Soon()));
    } else {
      absl::SleepFor(absl::Milliseconds(300));  // let the ring fill up
      const auto* v = static_cast<const uint32_t*>(buf.data);
      std::vector<RankNotification> notes(256);
      for (int got = 0; got < kPuts;) {
        TR_ASSIGN_OR_RETURN(size_t n, r.PollNotifications(notes.data(), notes.size()));
        if (n == 0) {
          TR_ASSIGN_OR_RETURN(notes[0], r.WaitNotification(Soon()));
          n = 1;
        }
        for (size_t k = 0; k < n; ++k, ++got) {
          if (notes[k].src_rank != 0 || notes[k].tag != static_cast<uint32_t>(got % 65536) ||
              v[got] != static_cast<uint32_t>(got * 2654435761u)) {
            return absl::InternalError(absl::StrCat("notification ", got, ": tag ", notes[k].tag,
                                                    " from ", notes[k].src_rank));
          }
        }
      }
    }
    return r.Barrier(Soon());
  }));
}

TEST(DaemonTest, RanksAsSeparateProcesses) {
  TestCluster cluster({.nodes = 2, .ranks_per_node = 2});
  absl::Status started = cluster.Start();
  ASSERT_TRUE(started.ok()) << started;
  std::vector<pid_t> pids;
  std::vector<int> outs;
  for (int g = 0; g < 4; ++g) {
    int out = -1;
    absl::StatusOr<pid_t> pid = cluster.SpawnRank(g / 2, g % 2, {"ring", "65536", "8"}, &out);
    ASSERT_TRUE(pid.ok()) << pid.status();
    pids.push_back(*pid);
    outs.push_back(out);
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    const int status = testing::WaitExit(pids[i], absl::Seconds(60));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "rank " << i << " wait status " << status;
    ::close(outs[i]);
  }
}

TEST(DaemonTest, BadArgumentsAreInvalidArgumentAndPostNothing) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 2});
  ASSERT_TRUE(cluster.Start().ok());
  ExpectAllOk(RunRanks(cluster, [](RankClient& r) -> absl::Status {
    auto expect_invalid = [](const absl::Status& s, absl::string_view what,
                             absl::string_view needle) -> absl::Status {
      if (s.code() != absl::StatusCode::kInvalidArgument ||
          s.message().find(needle) == absl::string_view::npos) {
        return absl::InternalError(absl::StrCat(what, ": expected InvalidArgument naming '", needle,
                                                "', got ", s.ToString()));
      }
      return absl::OkStatus();
    };
    TR_ASSIGN_OR_RETURN(Region a, r.AllocateSymmetric(4096));
    Region bogus{7, 4096, a.data};
    TR_RETURN_IF_ERROR(
        expect_invalid(r.Put(bogus, 0, 0, a, 0, 8, 1).status(), "bad src region", "region id 7"));
    TR_RETURN_IF_ERROR(
        expect_invalid(r.Put(a, 0, 0, bogus, 0, 8, 1).status(), "bad dst region", "region id 7"));
    Region wrong_size = a;
    wrong_size.size = 8192;
    TR_RETURN_IF_ERROR(
        expect_invalid(r.Put(wrong_size, 0, 0, a, 0, 8, 1).status(), "size mismatch", "8192"));
    TR_RETURN_IF_ERROR(expect_invalid(r.Put(a, 4090, 0, a, 0, 8, 1).status(), "src range", "4090"));
    TR_RETURN_IF_ERROR(
        expect_invalid(r.Put(a, 0, 0, a, 1, 4096, 1).status(), "dst range", "exceeds region"));
    TR_RETURN_IF_ERROR(expect_invalid(r.Put(a, SIZE_MAX, 0, a, 0, 2, 1).status(), "offset overflow",
                                      "exceeds region"));
    TR_RETURN_IF_ERROR(expect_invalid(r.Put(a, 0, 2, a, 0, 8, 1).status(), "rank 2", "rank 2"));
    TR_RETURN_IF_ERROR(expect_invalid(r.Put(a, 0, -1, a, 0, 8, 1).status(), "rank -1", "-1"));
    TR_RETURN_IF_ERROR(expect_invalid(r.Put(a, 0, 0, a, 0, 8, 65536).status(), "tag", "tag 65536"));
    TR_RETURN_IF_ERROR(expect_invalid(r.IsComplete(1).status(), "unknown id", "unknown put id 1"));
    // Nothing was posted: a ping is command 1.
    TR_RETURN_IF_ERROR(r.Ping(Soon()));
    TR_ASSIGN_OR_RETURN(bool done, r.IsComplete(1));
    if (!done) return absl::InternalError("ping not complete");

    // Mismatched symmetric sizes fail on every rank, naming both sizes.
    const size_t mine = r.topology().local_rank == 0 ? 1024 : 2048;
    absl::Status mismatch = r.AllocateSymmetric(mine).status();
    TR_RETURN_IF_ERROR(expect_invalid(mismatch, "size mismatch", "1024"));
    TR_RETURN_IF_ERROR(expect_invalid(mismatch, "size mismatch", "2048"));
    TR_RETURN_IF_ERROR(expect_invalid(r.AllocateSymmetric(0).status(), "zero size", "(0)"));
    absl::Status too_big = r.AllocateSymmetric(size_t{1} << 40).status();
    if (too_big.code() != absl::StatusCode::kResourceExhausted) {
      return absl::InternalError(absl::StrCat("oversize allocation: ", too_big.ToString()));
    }
    // The collective sequence survives failed rounds.
    TR_ASSIGN_OR_RETURN(Region b, r.AllocateSymmetric(512));
    if (b.id != 1) return absl::InternalError(absl::StrCat("second region has id ", b.id));
    return r.Barrier(Soon());
  }));
}

TEST(DaemonTest, SecondAttachOfALocalRankIsRefused) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 2});
  ASSERT_TRUE(cluster.Start().ok());
  auto first = RankClient::Attach(cluster.Attach(0, 1));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->topology().global_rank, 1);
  EXPECT_EQ((*first)->topology().world_size, 2);
  auto second = RankClient::Attach(cluster.Attach(0, 1));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  EXPECT_NE(second.status().message().find("already attached"), std::string::npos);
  auto outside = RankClient::Attach(cluster.Attach(0, 2));
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kInvalidArgument) << outside.status();
  // The refused attempts did not disturb the attached rank.
  EXPECT_TRUE((*first)->Ping(Soon()).ok());
  EXPECT_TRUE((*first)->Detach().ok());
  // After a clean detach the slot can be attached again.
  auto again = RankClient::Attach(cluster.Attach(0, 1));
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST(DaemonTest, DrainLeavesTheJobCleanly) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 1});
  ASSERT_TRUE(cluster.Start().ok());
  {
    auto rank = RankClient::Attach(cluster.Attach(0, 0));
    ASSERT_TRUE(rank.ok());
    ASSERT_TRUE((*rank)->Ping(Soon()).ok());
    ASSERT_TRUE((*rank)->Detach().ok());
  }
  cluster.daemon(0).RequestDrain("test", absl::Seconds(5));
  EXPECT_TRUE(cluster.daemon(0).Wait().ok());
  auto job = cluster.coordinator().WaitForState(cluster.job_id(), v1::JOB_SUCCEEDED);
  EXPECT_TRUE(job.ok()) << job.status();
  // Drained: the socket is gone, new ranks cannot attach.
  AttachOptions late = cluster.Attach(0, 0);
  late.attach_timeout = absl::Milliseconds(200);
  EXPECT_FALSE(RankClient::Attach(late).ok());
}

TEST(DaemonTest, ExitWhenDoneAfterEveryRankDetached) {
  TestCluster cluster({.nodes = 2, .ranks_per_node = 1, .exit_when_done = true});
  ASSERT_TRUE(cluster.Start().ok());
  ExpectAllOk(RunRanks(cluster, [](RankClient& r) { return AllToAll(r, 64, 4); }));
  EXPECT_TRUE(cluster.daemon(0).Wait().ok());
  EXPECT_TRUE(cluster.daemon(1).Wait().ok());
  auto job = cluster.coordinator().WaitForState(cluster.job_id(), v1::JOB_SUCCEEDED);
  EXPECT_TRUE(job.ok()) << job.status();
}

// The rank -> daemon command round trip (issue target: p50 <= 5 us). Printed,
// not asserted: timing targets live in benchmarks, not in tests.
TEST(DaemonTest, PingRoundTrip) {
  TestCluster cluster({.nodes = 1, .ranks_per_node = 1});
  ASSERT_TRUE(cluster.Start().ok());
  auto rank = RankClient::Attach(cluster.Attach(0, 0));
  ASSERT_TRUE(rank.ok());
  constexpr int kWarmup = 2000, kIters = 20000;
  std::vector<int64_t> ns;
  ns.reserve(kIters);
  for (int i = 0; i < kWarmup + kIters; ++i) {
    const int64_t t0 = MonotonicNanos();
    ASSERT_TRUE((*rank)->Ping(Soon()).ok());
    if (i >= kWarmup) ns.push_back(MonotonicNanos() - t0);
  }
  std::sort(ns.begin(), ns.end());
  const double p50 = ns[ns.size() / 2] / 1000.0, p99 = ns[ns.size() * 99 / 100] / 1000.0;
  std::printf("ping round trip over %d iterations: p50 %.2f us, p99 %.2f us\n", kIters, p50, p99);
  RecordProperty("ping_p50_us", absl::StrCat(p50));
  RecordProperty("ping_p99_us", absl::StrCat(p99));
  EXPECT_TRUE((*rank)->Detach().ok());
}

}  // namespace
}  // namespace runtime
}  // namespace tokenrail
