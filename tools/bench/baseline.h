// Baselines measured in the same run as the transport, so every result comes
// with the number it should be judged against. The memcpy baseline copies the
// same sizes with the same slot rotation as the puts (source and destination
// reused across iterations exactly like the put buffers), single-threaded, so
// cache state is comparable: put GB/s / memcpy GB/s is the transport's
// efficiency relative to the copy it fundamentally performs.
//
// Thread safety: runs on the calling thread; no shared state.
#ifndef TOKENRAIL_TOOLS_BENCH_BASELINE_H_
#define TOKENRAIL_TOOLS_BENCH_BASELINE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "tools/bench/plan.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {

struct BaselineResult {
  std::string name;  // "memcpy"
  uint64_t size = 0;
  uint64_t iters = 0;
  double gbytes_per_s = 0;  // bytes / time, 1 GB = 1e9 B
  Summary per_op_us;        // per-copy time, from chunks of `window` copies
};

// Copies spec.size bytes from source slot i % slots to destination slot
// i % slots, spec.warmup untimed then spec.iters timed times. ResourceExhausted
// if the buffers cannot be allocated.
absl::StatusOr<BaselineResult> RunMemcpyBaseline(const TestSpec& spec);

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_BASELINE_H_
