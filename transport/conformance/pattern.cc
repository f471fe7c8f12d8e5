#include "transport/conformance/pattern.h"

#include <cstring>

namespace tokenrail {
namespace transport {
namespace {

inline uint64_t Mix(uint64_t x) {  // splitmix64 finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t Word(uint64_t seed, size_t word_index) {
  return Mix(seed * 0x100000001B3ull + word_index);
}

}  // namespace

void FillPattern(uint8_t* data, size_t len, uint64_t seed) {
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const uint64_t w = Word(seed, i / 8);
    std::memcpy(data + i, &w, 8);
  }
  if (i < len) {
    const uint64_t w = Word(seed, i / 8);
    std::memcpy(data + i, &w, len - i);
  }
}

size_t FirstPatternMismatch(const uint8_t* data, size_t len, uint64_t seed) {
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const uint64_t w = Word(seed, i / 8);
    if (std::memcmp(data + i, &w, 8) != 0) {
      const uint8_t* want = reinterpret_cast<const uint8_t*>(&w);
      for (size_t k = 0; k < 8; ++k) {
        if (data[i + k] != want[k]) return i + k;
      }
    }
  }
  if (i < len) {
    const uint64_t w = Word(seed, i / 8);
    const uint8_t* want = reinterpret_cast<const uint8_t*>(&w);
    for (size_t k = 0; i + k < len; ++k) {
      if (data[i + k] != want[k]) return i + k;
    }
  }
  return len;
}

size_t FirstByteNot(const uint8_t* data, size_t len, uint8_t value) {
  for (size_t i = 0; i < len; ++i) {
    if (data[i] != value) return i;
  }
  return len;
}

}  // namespace transport
}  // namespace tokenrail
