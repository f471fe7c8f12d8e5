// Position-dependent byte patterns for verifying moved data: every byte depends
// on (seed, position), so a misplaced, stale or truncated byte is caught.
#ifndef TOKENRAIL_TRANSPORT_CONFORMANCE_PATTERN_H_
#define TOKENRAIL_TRANSPORT_CONFORMANCE_PATTERN_H_

#include <cstddef>
#include <cstdint>

namespace tokenrail {
namespace transport {

void FillPattern(uint8_t* data, size_t len, uint64_t seed);

// Index of the first byte that differs from the pattern, or `len` if none.
size_t FirstPatternMismatch(const uint8_t* data, size_t len, uint64_t seed);

// Index of the first byte not equal to `value`, or `len`.
size_t FirstByteNot(const uint8_t* data, size_t len, uint8_t value);

}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_CONFORMANCE_PATTERN_H_
