#include "runtime/arena/ring.h"

#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/arena/doorbell.h"

namespace tokenrail {
namespace runtime {
namespace {

struct Entry {
  uint64_t seq;
  uint64_t check;
};

struct TestRing {
  explicit TestRing(uint32_t n) : entries(n), slots(n) { ResetRing(&idx); }
  RingIndexes idx;
  Doorbell bell{};
  uint32_t entries;
  std::vector<Entry> slots;
  RingProducer<Entry> producer() { return {&idx, slots.data(), entries}; }
  RingConsumer<Entry> consumer() { return {&idx, slots.data(), entries}; }
};

TEST(RingTest, FillsDrainsAndReportsFullAndEmpty) {
  TestRing ring(8);
  auto p = ring.producer();
  auto c = ring.consumer();
  Entry e;
  EXPECT_EQ(c.TryPop(&e), RingResult::kEmpty);
  EXPECT_FALSE(c.HasData());
  for (uint64_t i = 0; i < 8; ++i) ASSERT_EQ(p.TryPush({i, ~i}), RingResult::kOk);
  EXPECT_EQ(p.TryPush({99, 0}), RingResult::kFull);
  EXPECT_EQ(p.InFlight(), 8u);
  EXPECT_TRUE(c.HasData());
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_EQ(c.TryPop(&e), RingResult::kOk);
    EXPECT_EQ(e.seq, i);
    EXPECT_EQ(e.check, ~i);
  }
  EXPECT_EQ(c.TryPop(&e), RingResult::kEmpty);
  EXPECT_EQ(p.InFlight(), 0u);
  // Wraps around.
  for (uint64_t i = 0; i < 20; ++i) {
    ASSERT_EQ(p.TryPush({i, ~i}), RingResult::kOk);
    ASSERT_EQ(c.TryPop(&e), RingResult::kOk);
    EXPECT_EQ(e.seq, i);
  }
}

TEST(RingTest, ImpossibleIndexesAreCorruptNotFollowed) {
  TestRing ring(8);
  auto c = ring.consumer();
  Entry e;
  ring.idx.head.store(1000);  // producer claims 1000 entries in an 8-entry ring
  EXPECT_EQ(c.TryPop(&e), RingResult::kCorrupt);
  EXPECT_TRUE(c.HasData());  // so that the caller's next TryPop reports it

  TestRing ring2(8);
  auto p = ring2.producer();
  for (uint64_t i = 0; i < 8; ++i) ASSERT_EQ(p.TryPush({i, 0}), RingResult::kOk);
  ring2.idx.tail.store(12);  // consumer ahead of the producer
  EXPECT_EQ(p.TryPush({9, 0}), RingResult::kCorrupt);
}

// A producer and a consumer thread stream a million entries through a small
// ring; the consumer sleeps on the doorbell whenever the ring is empty, so
// both the spin path and the futex path carry traffic.
TEST(RingTest, ThreadsStreamInOrderWithDoorbell) {
  constexpr uint64_t kCount = 1'000'000;
  TestRing ring(64);
  std::thread consumer([&] {
    auto c = ring.consumer();
    Entry e;
    for (uint64_t want = 0; want < kCount;) {
      RingResult r = c.TryPop(&e);
      if (r == RingResult::kEmpty) {
        SpinThenSleep(
            ring.bell, [&] { return c.HasData(); }, 1000, 1'000'000);
        continue;
      }
      ASSERT_EQ(r, RingResult::kOk);
      ASSERT_EQ(e.seq, want);
      ASSERT_EQ(e.check, want * 7 + 1);
      ++want;
    }
  });
  auto p = ring.producer();
  for (uint64_t i = 0; i < kCount;) {
    RingResult r = p.TryPush({i, i * 7 + 1});
    if (r == RingResult::kFull) {
      CpuRelax();
      continue;
    }
    ASSERT_EQ(r, RingResult::kOk);
    ++i;
    if ((i & 15) == 0 || i == kCount) RingDoorbell(ring.bell);
  }
  consumer.join();
}

TEST(DoorbellTest, SleeperWakesOnRingAndTimesOutWithoutIt) {
  Doorbell bell{};
  std::atomic<bool> flag{false};
  int64_t t0 = MonotonicNanos();
  EXPECT_FALSE(SleepOnDoorbell(
      bell, [&] { return flag.load(); }, 20'000'000));
  EXPECT_GE(MonotonicNanos() - t0, 15'000'000);  // slept about the slice

  std::thread waker([&] {
    while (bell.sleepers.load() == 0) std::this_thread::yield();
    flag.store(true, std::memory_order_release);
    RingDoorbell(bell);
  });
  t0 = MonotonicNanos();
  bool ok = false;
  while (!ok)
    ok = SleepOnDoorbell(
        bell, [&] { return flag.load(); }, 5'000'000'000);
  EXPECT_LT(MonotonicNanos() - t0, 2'000'000'000);  // woken, not timed out
  waker.join();
  EXPECT_EQ(bell.sleepers.load(), 0u);
}

TEST(DoorbellTest, RingWithoutSleepersMakesNoWakeup) {
  Doorbell bell{};
  RingDoorbell(bell);
  EXPECT_EQ(bell.seq.load(), 0u);  // fast path: nobody sleeping, nothing bumped
  RingDoorbellAll(bell);
  EXPECT_EQ(bell.seq.load(), 1u);
}

}  // namespace
}  // namespace runtime
}  // namespace tokenrail
