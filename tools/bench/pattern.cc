#include "tools/bench/pattern.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace tokenrail {
namespace bench {
namespace {

// splitmix64's finalizer: a bijective mix, so distinct (seed, k) give
// distinct-looking words.
inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

constexpr uint64_t kOdd = 0x9e3779b97f4a7c15ull;

// Multiplicative inverse of an odd number modulo 2^64 (Newton's iteration
// doubles the correct low bits each step: 5 steps from 3 bits reach 64).
constexpr uint64_t InverseOdd(uint64_t a) {
  uint64_t x = a;
  for (int i = 0; i < 5; ++i) x *= 2 - a * x;
  return x;
}
constexpr uint64_t kOddInverse = InverseOdd(kOdd);
static_assert(kOdd * kOddInverse == 1, "kOddInverse");

inline uint64_t Seed(uint64_t size, uint32_t stream) {
  return Mix64(size * 0xd6e8feb86659fd93ull ^ (uint64_t{stream} << 32) ^ 0x7472626e6368ull);
}
inline uint64_t Body(uint64_t seed, uint64_t k) { return Mix64(seed + k * kOdd); }
inline uint64_t Encode(uint64_t iteration) { return (iteration + 1) * kOdd; }
inline uint64_t Decode(uint64_t delta) { return delta * kOddInverse - 1; }

inline uint64_t Load(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store(char* p, uint64_t v) { std::memcpy(p, &v, sizeof(v)); }

// Calls fn(k) for every stamp word index of a message with `words` full words.
template <typename Fn>
inline void ForEachStamp(uint64_t size, uint64_t words, Fn fn) {
  if (words == 0) return;
  const uint64_t stride = StampStride(size);
  for (uint64_t k = 0; k < words - 1; k += stride) fn(k);
  fn(words - 1);
}

inline bool Acceptable(uint64_t got, const Expectation& e) {
  return got >= e.iteration && got <= e.last_iteration &&
         (got - e.iteration) % (e.period == 0 ? 1 : e.period) == 0;
}

absl::Status Mismatch(const Expectation& e, uint64_t offset, uint64_t expected, uint64_t got,
                      const char* detail) {
  return absl::DataLossError(absl::StrFormat(
      "data mismatch: size %d, stream %d, iteration %d, byte offset %d: expected 0x%016x, "
      "received 0x%016x (%s)",
      e.size, e.stream, e.iteration, offset, expected, got, detail));
}

// True when a later put to the same slot may legitimately be landing while
// the receiver reads (shared-memory peers write concurrently).
inline bool MayBeOverwritten(const Expectation& e) {
  const uint64_t period = e.period == 0 ? 1 : e.period;
  return e.last_iteration >= e.iteration && e.last_iteration - e.iteration >= period;
}

// A stamp read while a later put overwrites it can be torn (half old, half
// new bytes). Re-read for a while: if it settles on a later iteration that
// uses this slot, the first read was torn, not wrong. A stale stamp that later
// turns into the expected iteration is still reported (data came after its
// notification).
constexpr int kRereads = 1 << 16;

uint64_t VolatileLoad(const char* p) {
  return *reinterpret_cast<const volatile uint64_t*>(p);  // 8-aligned: slots are 64-aligned
}

absl::Status CheckStamp(const char* data, uint64_t seed, uint64_t k, const Expectation& e) {
  const uint64_t body = Body(seed, k);
  const uint64_t got = Load(data + 8 * k);
  const uint64_t decoded = Decode(got ^ body);
  if (Acceptable(decoded, e)) return absl::OkStatus();
  if (MayBeOverwritten(e)) {
    for (int i = 0; i < kRereads; ++i) {
      const uint64_t again = Decode(VolatileLoad(data + 8 * k) ^ body);
      if (again > e.iteration && Acceptable(again, e)) return absl::OkStatus();
    }
  }
  const uint64_t expected = body ^ Encode(e.iteration);
  if (decoded < e.iteration) {
    return Mismatch(e, 8 * k, expected, got,
                    absl::StrFormat("stale: written by iteration %d", decoded).c_str());
  }
  if (decoded <= e.last_iteration) {
    return Mismatch(
        e, 8 * k, expected, got,
        absl::StrFormat("written by iteration %d, which does not use this slot", decoded).c_str());
  }
  return Mismatch(e, 8 * k, expected, got, "not this stream's pattern: misplaced or corrupt");
}

// Messages under 8 bytes: the bytes of one stamp word; try the iterations
// allowed to have written them (bounded, these are tiny).
absl::Status CheckShort(const char* data, uint64_t seed, const Expectation& e) {
  uint64_t got = 0;
  std::memcpy(&got, data, e.size);
  const uint64_t mask = (uint64_t{1} << (8 * e.size)) - 1;
  const uint64_t body = Body(seed, 0);
  const uint64_t period = e.period == 0 ? 1 : e.period;
  constexpr uint64_t kMaxCandidates = 1 << 16;
  uint64_t tried = 0;
  for (uint64_t it = e.iteration; it <= e.last_iteration && tried < kMaxCandidates;
       it += period, ++tried) {
    if (((body ^ Encode(it)) & mask) == got) return absl::OkStatus();
  }
  // Possibly torn by a later put to the slot (see CheckStamp): re-read and
  // accept only a later iteration.
  for (int r = 0; MayBeOverwritten(e) && r < kRereads / 64; ++r) {
    uint64_t again = 0;
    for (uint64_t b = 0; b < e.size; ++b) {
      again |= uint64_t{static_cast<unsigned char>(reinterpret_cast<const volatile char*>(data)[b])}
               << (8 * b);
    }
    tried = 0;
    for (uint64_t it = e.iteration + period; it <= e.last_iteration && tried < kMaxCandidates;
         it += period, ++tried) {
      if (((body ^ Encode(it)) & mask) == again) return absl::OkStatus();
    }
  }
  return Mismatch(e, 0, (body ^ Encode(e.iteration)) & mask, got,
                  "short message matches no allowed iteration");
}

}  // namespace

uint64_t StampStride(uint64_t size) {
  uint64_t stride = 512;  // words: one stamp per 4 KiB page at least
  while (size / 8 / stride > 64) stride *= 2;
  return stride;
}

void FillPattern(char* data, uint64_t size, uint32_t stream, uint64_t iteration) {
  const uint64_t seed = Seed(size, stream);
  const uint64_t words = size / 8;
  if (words == 0) {
    const uint64_t v = Body(seed, 0) ^ Encode(iteration);
    std::memcpy(data, &v, size);
    return;
  }
  for (uint64_t k = 0; k < words; ++k) Store(data + 8 * k, Body(seed, k));
  const uint64_t tail = size % 8;
  if (tail != 0) {
    const uint64_t v = Body(seed, words);
    std::memcpy(data + 8 * words, &v, tail);
  }
  StampPattern(data, size, stream, iteration);
}

void StampPattern(char* data, uint64_t size, uint32_t stream, uint64_t iteration) {
  const uint64_t seed = Seed(size, stream);
  const uint64_t words = size / 8;
  if (words == 0) {
    const uint64_t v = Body(seed, 0) ^ Encode(iteration);
    std::memcpy(data, &v, size);
    return;
  }
  const uint64_t enc = Encode(iteration);
  ForEachStamp(size, words, [&](uint64_t k) { Store(data + 8 * k, Body(seed, k) ^ enc); });
}

absl::Status VerifySampled(const char* data, const Expectation& e) {
  const uint64_t seed = Seed(e.size, e.stream);
  const uint64_t words = e.size / 8;
  if (words == 0) return e.size == 0 ? absl::OkStatus() : CheckShort(data, seed, e);
  absl::Status status;
  ForEachStamp(e.size, words, [&](uint64_t k) {
    if (status.ok()) status = CheckStamp(data, seed, k, e);
  });
  return status;
}

absl::Status VerifySpot(const char* data, const Expectation& e) {
  const uint64_t seed = Seed(e.size, e.stream);
  const uint64_t words = e.size / 8;
  if (words == 0) return e.size == 0 ? absl::OkStatus() : CheckShort(data, seed, e);
  const uint64_t stride = StampStride(e.size);
  // Stamps before the last word, as ForEachStamp visits them.
  const uint64_t stamps = (words - 1 + stride - 1) / stride;
  const uint64_t rotating = stamps == 0 ? 0 : (e.iteration % stamps) * stride;
  for (uint64_t k : {uint64_t{0}, rotating, words - 1}) {
    absl::Status s = CheckStamp(data, seed, k, e);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status VerifyFull(const char* data, const Expectation& e) {
  const uint64_t seed = Seed(e.size, e.stream);
  const uint64_t words = e.size / 8;
  if (words == 0) return e.size == 0 ? absl::OkStatus() : CheckShort(data, seed, e);
  const uint64_t stride = StampStride(e.size);
  for (uint64_t k = 0; k < words; ++k) {
    if (k % stride == 0 || k == words - 1) {
      absl::Status s = CheckStamp(data, seed, k, e);
      if (!s.ok()) return s;
      continue;
    }
    const uint64_t want = Body(seed, k);
    const uint64_t got = Load(data + 8 * k);
    if (got != want) return Mismatch(e, 8 * k, want, got, "body word differs");
  }
  const uint64_t tail = e.size % 8;
  if (tail != 0) {
    uint64_t want = Body(seed, words), got = 0;
    std::memcpy(&got, data + 8 * words, tail);
    want &= (uint64_t{1} << (8 * tail)) - 1;
    if (got != want) return Mismatch(e, 8 * words, want, got, "tail bytes differ");
  }
  return absl::OkStatus();
}

}  // namespace bench
}  // namespace tokenrail
