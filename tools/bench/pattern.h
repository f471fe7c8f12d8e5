// Data patterns that benchmark puts carry, so receivers can prove that what
// arrived is what was sent, for this size and this iteration, at this place.
//
// A message of `size` bytes is seen as 64-bit words (plus a tail of size % 8
// bytes). Every word is derived from (size, stream, word index):
//   body word k  = Mix(size, stream, k)                  (same every iteration)
//   stamp word k = body word k ^ Encode(iteration)       (changes every iteration)
// Stamp words sit at word 0, the last full word and every `StampStride` words
// in between (at most ~64 per message), so a sender restamps a reused source
// slot for a new iteration by writing a few words, not the whole message, and
// a receiver checks a sample of every message cheaply. A stamp decodes back to
// the iteration that wrote it, which tells "stale data" (an older iteration:
// the notification overtook the data), "misplaced data" (garbage: a stamp
// from another offset or size) and "overwritten by a later put to the same
// slot" (allowed when slots are reused) apart. Messages shorter than 8 bytes
// are a single partial stamp.
//
// Streams separate the two directions of a run (and its modes), so a put that
// lands in the wrong peer's buffer or the pong that echoes the ping is caught.
//
// Thread safety: pure functions.
#ifndef TOKENRAIL_TOOLS_BENCH_PATTERN_H_
#define TOKENRAIL_TOOLS_BENCH_PATTERN_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace tokenrail {
namespace bench {

// Writes the complete pattern of (size, stream, iteration) to data[0, size).
void FillPattern(char* data, uint64_t size, uint32_t stream, uint64_t iteration);

// Rewrites only the stamp words of data[0, size), which must already hold the
// pattern of some iteration of the same (size, stream).
void StampPattern(char* data, uint64_t size, uint32_t stream, uint64_t iteration);

// What a receiver expects in a slot after the notification of `iteration`.
// A slot is reused every `period` iterations, so a later put to the same slot
// (iteration + k*period, up to `last_iteration`) may already have overwritten
// the stamps; such stamps are accepted. For an exact check pass
// last_iteration = iteration.
struct Expectation {
  uint64_t size = 0;
  uint32_t stream = 0;
  uint64_t iteration = 0;
  uint64_t period = 1;
  uint64_t last_iteration = 0;
};

// Checks the stamp words (the sampled check; O(64) reads). DataLoss naming
// the size, iteration, byte offset, expected and received values and what the
// received stamp decodes to.
absl::Status VerifySampled(const char* data, const Expectation& expect);

// Checks three stamp words: the first, the last and one that rotates with
// the iteration (over a run every stamp position is visited). For bandwidth
// loops, where the receiver reads while the sender keeps writing the same
// slots: each line the receiver reads must be taken back by the sender's next
// write to it, and with shared memory reading all 64 stamps of every 1 MiB
// put cost the sender about a third of its bandwidth on our 2-core machine.
absl::Status VerifySpot(const char* data, const Expectation& expect);

// Checks every byte: body words and tail exactly, stamps as VerifySampled.
absl::Status VerifyFull(const char* data, const Expectation& expect);

// Distance in words between stamps for a message of `size` bytes (a power of
// two, at least 512 words = 4 KiB).
uint64_t StampStride(uint64_t size);

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_PATTERN_H_
