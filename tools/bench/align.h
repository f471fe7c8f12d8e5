// Rounding helper shared by the benchmarks' buffer layouts (common/bytes.h
// has none).
#ifndef TOKENRAIL_TOOLS_BENCH_ALIGN_H_
#define TOKENRAIL_TOOLS_BENCH_ALIGN_H_

#include <cstdint>

namespace tokenrail {
namespace bench {

// `v` rounded up to a multiple of `align` (> 0).
inline constexpr uint64_t RoundUp(uint64_t v, uint64_t align) {
  return (v + align - 1) / align * align;
}

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_ALIGN_H_
