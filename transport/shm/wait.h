// Pacing of shm waits: busy-poll for a configured time (the latency path,
// no syscalls), then yield and sleep with growing pauses so that a waiting
// process leaves the CPU to others (small hosts run several ranks per core).
#ifndef TOKENRAIL_TRANSPORT_SHM_WAIT_H_
#define TOKENRAIL_TRANSPORT_SHM_WAIT_H_

#include <cstdint>

#include "absl/time/time.h"

namespace tokenrail {
namespace transport {
namespace shm {

class Backoff {
 public:
  // Spin iterations between slow-path turns while spinning: a side-channel
  // check costs about a microsecond, a spin iteration a few nanoseconds.
  static constexpr uint32_t kSpinsPerSlowTurn = 1024;

  explicit Backoff(absl::Duration spin);

  // Call after every poll that found nothing. Returns true when the caller
  // should take its slow path (service side channels, check the deadline):
  // every kSpinsPerSlowTurn calls while spinning, every call afterwards, each
  // of which first yields or sleeps (20 us doubling up to 1 ms).
  bool Next();

 private:
  void Pause();

  int64_t spin_ns_;
  int64_t start_ns_;
  uint32_t iterations_ = 0;
  uint32_t idle_turns_ = 0;
  bool spinning_;
};

// Monotonic nanoseconds (vDSO clock, no syscall).
int64_t MonotonicNanos();

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_SHM_WAIT_H_
