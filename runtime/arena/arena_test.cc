#include "runtime/arena/arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr uint64_t kArenaBytes = 8 << 20;

TEST(ArenaLayoutTest, PartitionsHeapsAfterControlBlocks) {
  auto l = ComputeArenaLayout(kArenaBytes, 3);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->control_offset % kArenaPage, 0u);
  EXPECT_GE(l->control_offset, sizeof(ArenaHeader));
  EXPECT_GE(l->control_stride, l->notify_slots + kNotifyEntries * sizeof(NotificationEntry));
  EXPECT_EQ(l->heap_offset, l->control_offset + 3 * l->control_stride);
  EXPECT_EQ(l->heap_stride % kArenaPage, 0u);
  EXPECT_LE(l->heap_at(2) + l->heap_stride, kArenaBytes);
  EXPECT_GT(l->heap_stride, 0u);
}

TEST(ArenaLayoutTest, RejectsBadSizesNamingThem) {
  auto small = ComputeArenaLayout(64 << 10, 4);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("65536"), std::string::npos) << small.status();
  auto odd = ComputeArenaLayout(kArenaBytes + 1, 1);
  EXPECT_EQ(odd.status().code(), absl::StatusCode::kInvalidArgument);
  auto zero = ComputeArenaLayout(kArenaBytes, 0);
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  auto many = ComputeArenaLayout(kArenaBytes, 256);
  EXPECT_EQ(many.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ArenaTest, MapValidatesSealsSizeAndHeader) {
  auto arena = Arena::Create(kArenaBytes, 2, 7);
  ASSERT_TRUE(arena.ok()) << arena.status();
  // A second mapping of the same file sees the same memory.
  auto mapped = Arena::Map(UniqueFd(::dup((*arena)->fd())), 2);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ((*mapped)->header().node_id, 7);
  (*arena)->heap(1)[5] = 42;
  EXPECT_EQ((*mapped)->heap(1)[5], 42);

  // Wrong rank count: the layout differs.
  auto wrong = Arena::Map(UniqueFd(::dup((*arena)->fd())), 3);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition) << wrong.status();

  // An unsealed file is refused before it is mapped.
  UniqueFd plain(::memfd_create("plain", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(plain.get(), kArenaBytes), 0);
  auto unsealed = Arena::Map(std::move(plain), 2);
  EXPECT_EQ(unsealed.status().code(), absl::StatusCode::kInvalidArgument) << unsealed.status();

  // A sealed file of the right size without a header: bad magic.
  UniqueFd junk(::memfd_create("junk", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_EQ(::ftruncate(junk.get(), kArenaBytes), 0);
  ASSERT_EQ(::fcntl(junk.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  auto nomagic = Arena::Map(std::move(junk), 2);
  EXPECT_EQ(nomagic.status().code(), absl::StatusCode::kInvalidArgument) << nomagic.status();
  EXPECT_NE(nomagic.status().message().find("magic"), std::string::npos);

  // The daemon's memfd cannot be shrunk by a rank.
  EXPECT_NE(::ftruncate((*arena)->fd(), 4096), 0);
}

TEST(ArenaTest, FirstFailureWinsAndKeepsCode) {
  auto arena = Arena::Create(kArenaBytes, 1, 0);
  ASSERT_TRUE(arena.ok());
  const Arena& a = **arena;
  EXPECT_TRUE(a.failure().ok());
  EXPECT_TRUE(a.PublishFailure(absl::UnavailableError("rank 3 died"), {1, 3}));
  EXPECT_FALSE(a.PublishFailure(absl::InternalError("later"), {0, -1}));
  EXPECT_TRUE(a.failed());
  EXPECT_EQ(a.failure().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(a.failure().message(), "rank 3 died");
  EXPECT_EQ(a.failure_origin().node_id, 1);
  EXPECT_EQ(a.failure_origin().global_rank, 3);
}

// Exit codes of the forked child, so the parent can say what went wrong.
enum ChildExit { kChildOk = 0, kChildMapFailed = 10, kChildBadCompletion, kChildNoFailure };

// Two processes: the child plays a rank (maps the fd it inherited, posts
// commands, sleeps on its completion doorbell), the parent plays the daemon.
TEST(ArenaTest, ForkedRankAndDaemonExchangeThroughRings) {
  constexpr uint64_t kCommands = 200'000;
  auto created = Arena::Create(kArenaBytes, 2, 0);
  ASSERT_TRUE(created.ok()) << created.status();
  const Arena& daemon = **created;
  const int fd = daemon.fd();

  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto mapped = Arena::Map(UniqueFd(::dup(fd)), 2);
    if (!mapped.ok()) ::_exit(kChildMapFailed);
    const Arena& rank = **mapped;
    auto cmds = rank.command_producer(1);
    auto comps = rank.completion_consumer(1);
    uint64_t next = 1, done = 0;
    while (done < kCommands) {
      // Post while there are credits (at most a ring's worth in flight).
      while (next <= kCommands && next - 1 - done < kCommandEntries) {
        Command c{};
        c.id = next;
        c.op = static_cast<uint8_t>(CommandOp::kNop);
        c.length = next * 3;
        if (cmds.TryPush(c) != RingResult::kOk) break;
        ++next;
        RingDoorbell(rank.header().proxy_bell);
      }
      Completion done_entry;
      RingResult r = comps.TryPop(&done_entry);
      if (r == RingResult::kEmpty) {
        SpinThenSleep(
            rank.control(1).completion_bell, [&] { return comps.HasData(); }, 2000, 1'000'000);
        continue;
      }
      if (r != RingResult::kOk || done_entry.id != done + 1 ||
          done_entry.code != static_cast<int>(done_entry.id % 5)) {
        ::_exit(kChildBadCompletion);
      }
      ++done;
    }
    // Then wait (asleep) for the daemon to publish a failure.
    while (!rank.failed()) {
      SleepOnDoorbell(
          rank.control(1).notify_bell, [&] { return rank.failed(); }, 100'000'000);
    }
    ::_exit(rank.failure().message() == "node 0 drained" ? kChildOk : kChildNoFailure);
  }

  auto cmds = daemon.command_consumer(1);
  auto comps = daemon.completion_producer(1);
  for (uint64_t got = 0; got < kCommands;) {
    Command c;
    RingResult r = cmds.TryPop(&c);
    if (r == RingResult::kEmpty) {
      SpinThenSleep(
          daemon.header().proxy_bell, [&] { return cmds.HasData(); }, 2000, 1'000'000);
      continue;
    }
    ASSERT_EQ(r, RingResult::kOk);
    ASSERT_EQ(c.id, got + 1);
    ASSERT_EQ(c.length, c.id * 3);
    Completion done{};
    done.id = c.id;
    done.code = static_cast<int>(c.id % 5);
    ASSERT_EQ(comps.TryPush(done), RingResult::kOk);  // credits guarantee room
    RingDoorbell(daemon.control(1).completion_bell);
    ++got;
  }
  // Give the child time to fall asleep on its doorbell, then fail the job.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  daemon.PublishFailure(absl::UnavailableError("node 0 drained"), {0, -1});
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), kChildOk);
}

// The expert-parallel counters a rank publishes for the daemon's stats.
TEST(ArenaTest, EpStatsRoundTripAndReset) {
  absl::StatusOr<std::unique_ptr<Arena>> a = Arena::Create(1 << 22, 2, 0);
  ASSERT_TRUE(a.ok()) << a.status();
  RankControl& c = (*a)->control(1);
  const uint64_t tokens[3] = {5, 0, 9};
  WriteEpStats(c.ep_stats, 1234, tokens, 3);
  EpStatsSnapshot s;
  ASSERT_TRUE(ReadEpStats(c.ep_stats, &s));
  EXPECT_EQ(s.direct_bytes_intra_node, 1234u);
  EXPECT_EQ(s.tokens_per_expert, (std::vector<uint64_t>{5, 0, 9}));
  // More experts than the block holds: the first kMaxEpStatsExperts.
  std::vector<uint64_t> many(kMaxEpStatsExperts + 10, 1);
  WriteEpStats(c.ep_stats, 1, many.data(), static_cast<int>(many.size()));
  ASSERT_TRUE(ReadEpStats(c.ep_stats, &s));
  EXPECT_EQ(s.tokens_per_expert.size(), static_cast<size_t>(kMaxEpStatsExperts));
  // A writer stuck mid-update (odd sequence) is never read as consistent.
  c.ep_stats.seq.fetch_add(1);
  EXPECT_FALSE(ReadEpStats(c.ep_stats, &s));
  (*a)->ResetRank(1);  // a new rank starts from zero
  ASSERT_TRUE(ReadEpStats(c.ep_stats, &s));
  EXPECT_EQ(s.direct_bytes_intra_node, 0u);
  EXPECT_TRUE(s.tokens_per_expert.empty());
}

}  // namespace
}  // namespace runtime
}  // namespace tokenrail
