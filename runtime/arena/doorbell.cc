#include "runtime/arena/doorbell.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>

namespace tokenrail {
namespace runtime {
namespace {

// Non-private futex operations: the word is in memory shared between processes.
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns) {
  timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000),
              static_cast<long>(timeout_ns % 1'000'000'000)};
  // EAGAIN (value changed), EINTR and ETIMEDOUT all mean "re-check": ignored.
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace

void SpinYield() { sched_yield(); }

int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void RingDoorbell(Doorbell& bell) {
  // Orders the caller's publication (a release store of a ring index) before
  // the read of `sleepers`; pairs with the sleeper's seq_cst increment.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (bell.sleepers.load(std::memory_order_relaxed) == 0) return;
  bell.seq.fetch_add(1, std::memory_order_release);
  FutexWakeAll(&bell.seq);
}

void RingDoorbellAll(Doorbell& bell) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bell.seq.fetch_add(1, std::memory_order_release);
  FutexWakeAll(&bell.seq);
}

bool SleepOnDoorbell(Doorbell& bell, absl::FunctionRef<bool()> ready, int64_t max_sleep_ns) {
  const uint32_t seen = bell.seq.load(std::memory_order_acquire);
  bell.sleepers.fetch_add(1, std::memory_order_seq_cst);
  bool ok = ready();
  if (!ok && max_sleep_ns > 0) {
    FutexWait(&bell.seq, seen, max_sleep_ns);
    ok = ready();
  }
  bell.sleepers.fetch_sub(1, std::memory_order_relaxed);
  return ok;
}

bool SpinThenSleep(Doorbell& bell, absl::FunctionRef<bool()> ready, int64_t spin_ns,
                   int64_t slice_ns) {
  if (ready()) return true;
  if (spin_ns > 0) {
    const int64_t end = MonotonicNanos() + spin_ns;
    uint32_t n = 0;
    for (;;) {
      CpuRelax();
      if (ready()) return true;
      if ((++n % kPollsPerYield) == 0) {
        if (MonotonicNanos() >= end) break;
        SpinYield();
      }
    }
  }
  return SleepOnDoorbell(bell, ready, slice_ns);
}

}  // namespace runtime
}  // namespace tokenrail
