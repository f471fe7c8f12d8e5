#include "tools/bench/baseline.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tools/bench/pattern.h"

namespace tokenrail {
namespace bench {
namespace {

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<char, FreeDeleter>;

absl::StatusOr<AlignedBuffer> Allocate(uint64_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, bytes) != 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("memcpy baseline: cannot allocate ", bytes, " bytes"));
  }
  std::memset(p, 0, bytes);  // fault the pages in before timing
  return AlignedBuffer(static_cast<char*>(p));
}

}  // namespace

absl::StatusOr<BaselineResult> RunMemcpyBaseline(const TestSpec& spec) {
  const uint64_t bytes = spec.stride * spec.slots;
  absl::StatusOr<AlignedBuffer> src = Allocate(bytes);
  if (!src.ok()) return src.status();
  absl::StatusOr<AlignedBuffer> dst = Allocate(bytes);
  if (!dst.ok()) return dst.status();
  for (uint32_t s = 0; s < spec.slots; ++s) {
    FillPattern(src->get() + s * spec.stride, spec.size, /*stream=*/0, s);
  }
  const uint64_t chunk = std::max<uint64_t>(1, spec.window);
  auto copy = [&](uint64_t i) {
    const uint64_t off = (i % spec.slots) * spec.stride;
    std::memcpy(dst->get() + off, src->get() + off, spec.size);
    // Keeps the compiler from merging or dropping copies of the loop.
    asm volatile("" : : "r"(dst->get()) : "memory");
  };
  for (uint64_t i = 0; i < spec.warmup; ++i) copy(i);

  std::vector<double> samples;
  samples.reserve(spec.iters / chunk + 1);
  const int64_t start = NowNanos();
  int64_t mark = start;
  uint64_t in_chunk = 0;
  for (uint64_t i = 0; i < spec.iters; ++i) {
    copy(spec.warmup + i);
    if (++in_chunk == chunk) {
      const int64_t now = NowNanos();
      samples.push_back(static_cast<double>(now - mark) / 1e3 / static_cast<double>(chunk));
      mark = now;
      in_chunk = 0;
    }
  }
  const int64_t end = NowNanos();
  if (in_chunk > 0) {
    samples.push_back(static_cast<double>(end - mark) / 1e3 / static_cast<double>(in_chunk));
  }
  // The last copy must really have happened: check it landed intact.
  const uint64_t last = spec.warmup + spec.iters - 1;
  const uint64_t off = (last % spec.slots) * spec.stride;
  if (std::memcmp(dst->get() + off, src->get() + off, spec.size) != 0) {
    return absl::InternalError("memcpy baseline: destination differs from source");
  }

  BaselineResult r;
  r.name = "memcpy";
  r.size = spec.size;
  r.iters = spec.iters;
  r.gbytes_per_s = GigabytesPerSecond(static_cast<double>(spec.size * spec.iters),
                                      static_cast<double>(end - start) / 1e9);
  r.per_op_us = Summarize(&samples);
  return r;
}

}  // namespace bench
}  // namespace tokenrail
