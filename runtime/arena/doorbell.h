// Doorbells between processes that share an arena: the consumer of a ring
// spins briefly, then sleeps on a futex word inside the shared mapping; the
// producer pays a syscall only when a consumer is actually asleep.
//
// Protocol (an event count). The sleeper reads `seq`, announces itself in
// `sleepers` (seq_cst), re-checks its condition and only then calls
// FUTEX_WAIT(seq, value read). The ringer publishes its data, issues a seq_cst
// fence and reads `sleepers`; when non-zero it bumps `seq` and FUTEX_WAKEs.
// Either the ringer sees the sleeper or the sleeper sees the data (Dekker),
// and a bump between the sleeper's read of `seq` and its FUTEX_WAIT makes the
// wait return at once, so no wake-up is lost.
//
// The futex is non-private (FUTEX_WAIT without FUTEX_PRIVATE_FLAG) because the
// word lives in a MAP_SHARED memfd mapped by several processes. A peer that
// scribbles on a doorbell can only cause spurious wake-ups or extra wake
// syscalls: every wait is bounded by a timeout and re-checks its condition.
//
// Thread safety: any number of ringers and sleepers, in any processes.
#ifndef TOKENRAIL_RUNTIME_ARENA_DOORBELL_H_
#define TOKENRAIL_RUNTIME_ARENA_DOORBELL_H_

#include <atomic>
#include <cstdint>

#include "absl/functional/function_ref.h"

namespace tokenrail {
namespace runtime {

struct Doorbell {
  std::atomic<uint32_t> seq;
  std::atomic<uint32_t> sleepers;
};
static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex words must be lock-free");
static_assert(sizeof(Doorbell) == 8, "doorbell layout");

// Wakes sleepers, if any. Call after publishing the data they wait for.
// Syscall-free when nobody sleeps.
void RingDoorbell(Doorbell& bell);

// Wakes every sleeper unconditionally (failure broadcast, shutdown).
void RingDoorbellAll(Doorbell& bell);

// Sleeps on `bell` for at most `max_sleep_ns` unless `ready()` holds after the
// sleeper announced itself. Returns ready() as evaluated last. Spurious
// returns are possible; callers loop. Does not spin: see SpinThenSleep.
bool SleepOnDoorbell(Doorbell& bell, absl::FunctionRef<bool()> ready, int64_t max_sleep_ns);

// Monotonic nanoseconds (vDSO clock, no syscall).
int64_t MonotonicNanos();

// Pause instruction for spin loops.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Spinning waiters yield the CPU every kPollsPerYield polls. On an
// oversubscribed host (2 cores, several processes) the thread a spinner
// waits for is often queued on the spinner's own core: pure spinning then
// costs a whole spin window per hop (measured: 157 us ping p50 on this
// host), yielding costs a context switch (4.4 us p50 with both threads
// pinned to one core). With an idle core each, a yield returns at once.
inline constexpr uint32_t kPollsPerYield = 4;
void SpinYield();

// The standard waiting policy: poll `ready()` for `spin_ns` (the latency
// path: no syscalls but sched_yield), then sleep on `bell` in slices of at most `slice_ns`,
// returning after each slice so the caller can check deadlines and liveness.
// Returns true when ready() held, false when a sleep slice ended without it.
// `spin_ns` applies only once per call; callers that loop pass 0 afterwards.
bool SpinThenSleep(Doorbell& bell, absl::FunctionRef<bool()> ready, int64_t spin_ns,
                   int64_t slice_ns);

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_ARENA_DOORBELL_H_
