#include "transport/shm/wait.h"

#include <sched.h>
#include <time.h>

#include <algorithm>

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

constexpr uint32_t kYieldTurns = 32;
constexpr int64_t kFirstSleepNs = 20'000;
constexpr int64_t kMaxSleepNs = 1'000'000;
constexpr uint32_t kTurnsPerDoubling = 8;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace

int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

Backoff::Backoff(absl::Duration spin)
    : spin_ns_(absl::ToInt64Nanoseconds(spin)),
      start_ns_(MonotonicNanos()),
      spinning_(spin_ns_ > 0) {}

bool Backoff::Next() {
  if (!spinning_) {
    Pause();
    return true;
  }
  CpuRelax();
  if (++iterations_ % kSpinsPerSlowTurn != 0) return false;
  if (MonotonicNanos() - start_ns_ >= spin_ns_) spinning_ = false;
  return true;
}

void Backoff::Pause() {
  const uint32_t turn = idle_turns_++;
  if (turn < kYieldTurns) {
    sched_yield();
    return;
  }
  const uint32_t doublings = std::min<uint32_t>((turn - kYieldTurns) / kTurnsPerDoubling, 16);
  const int64_t ns = std::min(kMaxSleepNs, kFirstSleepNs << doublings);
  timespec ts{0, static_cast<long>(ns)};
  nanosleep(&ts, nullptr);
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
