// Payload number formats of the expert-parallel exchange: BF16 and FP8 E4M3
// conversions and the per-tile FP8 quantization used by FP8 dispatch.
//
// Storage types: BF16 values are uint16_t (the upper 16 bits of an IEEE-754
// binary32), FP8 values are uint8_t in the OCP / NVIDIA "e4m3fn" encoding.
// Every function is a pure function of its arguments: thread-safe, no
// allocation, no global state; the bulk kernels take plain pointers that must
// not alias between input and output.
//
// Numeric contracts
// -----------------
// BF16 (1 sign, 8 exponent, 7 mantissa bits, same range as float):
//   FloatToBf16 rounds to nearest, ties to even; overflow rounds to +-inf as
//   IEEE does; NaN stays NaN (sign and the top 7 payload bits kept, quiet bit
//   set). Bf16ToFloat is exact. Rounding error |x - bf16(x)| <= Bf16RoundingBound(x)
//   = 2^(floor(log2|x|) - 8) for normal x (relative error <= 2^-8).
//
// FP8 E4M3 (e4m3fn: 1 sign, 4 exponent bits with bias 7, 3 mantissa bits):
//   codes 0x01..0x07 are subnormals m * 2^-9; exponent field e in 1..15 gives
//   (1 + m/8) * 2^(e - 7); the largest finite value is 0x7E = 448; 0x7F and
//   0xFF are NaN; there are no infinities. 0x80 is -0.
//   FloatToFp8E4M3 rounds to nearest, ties to even (the even code), saturates
//   finite and infinite values beyond 448 to +-448 (NVIDIA's __NV_SATFINITE),
//   and maps NaN to 0x7F (0xFF when the sign bit is set).
//
// Per-tile quantization (FP8 dispatch): each row of `hidden` values is cut
// into ceil(hidden / 128) tiles of 128 columns; the last tile is partial when
// hidden % 128 != 0 (its amax covers only the real columns; nothing is padded
// in memory: the FP8 row is exactly `hidden` bytes). Per tile:
//   amax  = max |x| over the tile
//   scale = Fp8TileScale(amax) = amax / 448 in float, except amax == 0 -> 1
//           and scales below FLT_MIN -> FLT_MIN (keeps 1/scale finite)
//   q     = FloatToFp8E4M3(x * (1.0f / scale))   (float multiply by the float
//           reciprocal, as GPU kernels do; never saturates by more than
//           rounding since |x| * (1/scale) <= 448 * (1 + 2^-23))
//   deq   = Fp8E4M3ToFloat(q) * scale            (one float multiply)
// Non-finite inputs (NaN, +-inf) are rejected with InvalidArgument naming the
// row and tile: a scale cannot represent them.
//
// Error bound (Fp8ErrorBound). Let s = scale, t = |x| / s (exact), u = 2^-24.
//   1. y = fl(x * fl(1/s)) carries two float roundings: |y - x/s| <= (2u+u^2) t
//      <= 3u t, so |y| <= t(1 + 3u) < t_up := t (1 + 4u).
//   2. E4M3 rounding of y: with H(v) = max(h(v), v - 448) and
//        h(v) = 2^-10                      for v <  2^-6 (subnormal spacing 2^-9)
//        h(v) = 2^(floor(log2 v) - 4)      for v >= 2^-6 (spacing 2^(e-3) in [2^e, 2^(e+1)))
//      |y - q| <= H(|y|) <= H(t_up), H being non-decreasing. The v - 448 term
//      is the saturation error; it is below h(v) = 16 for v < 464, i.e. for
//      every value of the tile that produced s.
//   3. deq = fl(q * s): |deq - q s| <= u |q s| + 2^-150 (float rounding, and
//      the absolute error if the product underflows), with |q| <= t_up + H.
//   Together: |x - deq| <= s * (H(t_up) (1 + u) + 5 u t) + 2^-149.
// For a normal-range t the bound is within O(u) of 2^-4 of the value's binade
// (relative error <= 2^-4 = 6.25%); below 2^-6 * s it is the absolute s * 2^-10,
// i.e. amax * 2^-10 / 448 ~= 2.2e-6 * amax. Converting deq further to BF16
// adds at most Bf16RoundingBound(deq).
#ifndef TOKENRAIL_RUNTIME_EP_NUMERIC_H_
#define TOKENRAIL_RUNTIME_EP_NUMERIC_H_

#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/status/status.h"

namespace tokenrail {
namespace ep {

inline constexpr int kFp8TileSize = 128;
inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr uint8_t kFp8E4M3MaxCode = 0x7E;
inline constexpr uint8_t kFp8E4M3NanCode = 0x7F;

namespace numeric_internal {

inline uint32_t BitsOf(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}
inline float FloatOf(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

// E4M3 code (without sign) of a finite or infinite magnitude with float bits
// `a` (sign cleared). Branch-free so that bulk loops vectorize.
inline uint32_t Fp8E4M3EncodeMagnitude(uint32_t a) {
  // Normal range: round the 23-bit mantissa to 3 bits (ties to even) at bit
  // 20; a carry moves into the exponent, which is what rounding across a
  // binade needs. Rebias 127 -> 7 and saturate at 0x7E (448): everything from
  // the 464 midpoint up would become 0x7F (NaN) or more.
  uint32_t normal = ((a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20) - (120u << 3);
  normal = normal < kFp8E4M3MaxCode ? normal : kFp8E4M3MaxCode;
  // Subnormal range (|x| < 2^-6): adding 2^14, whose float ulp is 2^-9 (the
  // E4M3 subnormal spacing), rounds |x| to a multiple of 2^-9 with ties to
  // even; the mantissa difference is the code, 8 being the smallest normal.
  const uint32_t sub = BitsOf(FloatOf(a) + 16384.0f) - 0x46800000u;
  return a < 0x3C800000u ? sub : normal;
}

}  // namespace numeric_internal

// ---- BF16 ----

inline uint16_t FloatToBf16(float x) {
  const uint32_t b = numeric_internal::BitsOf(x);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x0040u);
  return static_cast<uint16_t>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

inline float Bf16ToFloat(uint16_t h) {
  return numeric_internal::FloatOf(static_cast<uint32_t>(h) << 16);
}

// Bulk versions of the above; n may be 0.
void FloatToBf16(const float* x, int64_t n, uint16_t* out);
void Bf16ToFloat(const uint16_t* x, int64_t n, float* out);

// Half a BF16 ulp at |x|: the most that FloatToBf16 moves a value that does
// not overflow. +inf for |x| beyond the largest finite BF16 plus half an ulp.
double Bf16RoundingBound(double x);

// ---- FP8 E4M3 ----

inline uint8_t FloatToFp8E4M3(float x) {
  const uint32_t b = numeric_internal::BitsOf(x);
  const uint32_t sign = (b >> 24) & 0x80u;
  const uint32_t a = b & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint8_t>(sign | kFp8E4M3NanCode);
  return static_cast<uint8_t>(sign | numeric_internal::Fp8E4M3EncodeMagnitude(a));
}

inline float Fp8E4M3ToFloat(uint8_t code) {
  const uint32_t c = code & 0x7Fu;
  // Exponent field e >= 1: place e and m in the float fields and rebias
  // (+120). Subnormals m * 2^-9 go through an exact int->float conversion.
  float mag = c >= 8 ? numeric_internal::FloatOf((c << 20) + (120u << 23))
                     : static_cast<float>(c) * (1.0f / 512.0f);
  if (c == kFp8E4M3NanCode) mag = std::numeric_limits<float>::quiet_NaN();
  return numeric_internal::FloatOf(numeric_internal::BitsOf(mag) |
                                   (static_cast<uint32_t>(code & 0x80u) << 24));
}

inline constexpr int64_t Fp8TilesPerRow(int64_t hidden) {
  return (hidden + kFp8TileSize - 1) / kFp8TileSize;
}

// The scale rule stated at the top (amax must be finite and >= 0).
inline float Fp8TileScale(float amax) {
  if (amax == 0.0f) return 1.0f;
  const float s = amax / kFp8E4M3Max;
  return s < std::numeric_limits<float>::min() ? std::numeric_limits<float>::min() : s;
}

// Quantizes one row: x[hidden] -> q[hidden] codes and scales[Fp8TilesPerRow]
// tile scales. InvalidArgument (naming the tile) on a non-finite input; q and
// scales are then unspecified.
absl::Status QuantizeRowFp8(const float* x, int64_t hidden, uint8_t* q, float* scales);
absl::Status QuantizeRowFp8FromBf16(const uint16_t* x, int64_t hidden, uint8_t* q, float* scales);

// Row-major matrices with explicit row strides (in elements), so callers can
// quantize straight into a packed message. The error names row and tile.
absl::Status QuantizeFp8(const float* x, int64_t x_stride, int64_t rows, int64_t hidden, uint8_t* q,
                         int64_t q_stride, float* scales, int64_t scales_stride);
absl::Status QuantizeFp8FromBf16(const uint16_t* x, int64_t x_stride, int64_t rows, int64_t hidden,
                                 uint8_t* q, int64_t q_stride, float* scales,
                                 int64_t scales_stride);

// deq = Fp8E4M3ToFloat(q) * scale of its tile (NaN codes give NaN).
void DequantizeRowFp8(const uint8_t* q, const float* scales, int64_t hidden, float* out);
// The same value rounded to BF16 (one extra FloatToBf16 rounding).
void DequantizeRowFp8ToBf16(const uint8_t* q, const float* scales, int64_t hidden, uint16_t* out);
void DequantizeFp8(const uint8_t* q, int64_t q_stride, const float* scales, int64_t scales_stride,
                   int64_t rows, int64_t hidden, float* out, int64_t out_stride);

// Upper bound on |x - deq| for a value x quantized with tile scale `scale`
// (derivation above). x is the exact input (a float, or a BF16 value widened).
double Fp8ErrorBound(double x, float scale);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_NUMERIC_H_
