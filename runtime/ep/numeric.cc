#include "runtime/ep/numeric.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"

namespace tokenrail {
namespace ep {
namespace {

using numeric_internal::BitsOf;
using numeric_internal::FloatOf;
using numeric_internal::Fp8E4M3EncodeMagnitude;

// Loops over a compile-time block size: GCC's default -O2 vectorizer (cost
// model "very-cheap") only vectorizes loops whose trip count needs no scalar
// epilogue, so full blocks take the vector path and the tail the scalar one
// even where this package's -fvect-cost-model=dynamic is not in effect.
constexpr int64_t kBlock = 256;

// The bulk kernels are compiled for baseline x86-64 (SSE2), AVX2 (8 lanes,
// unsigned 32-bit min/max) and x86-64-v4 (AVX-512, 16 lanes), and the best
// the CPU supports is picked at load time (ifunc), so a generic build runs
// at full width where the hardware has it. Every clone performs the same
// IEEE operations, so results are identical whichever runs. The BF16 bulk
// conversions stop at AVX2: their AVX-512 narrowing (vpmovdw) measured
// slower on AMD Zen 4.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(TR_EP_NO_SIMD_CLONES)
#define TR_EP_WIDE_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#define TR_EP_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TR_EP_WIDE_CLONES
#define TR_EP_SIMD_CLONES
#endif

// Max of |x| as float bits: for non-negative floats the integer order of the
// bit patterns is the numeric order, and NaN/inf show up as >= 0x7F800000, so
// one integer max both finds amax and detects non-finite input.
template <int64_t kN>
inline uint32_t AbsMaxBits(const float* __restrict x) {
  uint32_t m = 0;
  for (int64_t i = 0; i < kN; ++i) m = std::max(m, BitsOf(x[i]) & 0x7FFFFFFFu);
  return m;
}
inline uint32_t AbsMaxBits(const float* __restrict x, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, BitsOf(x[i]) & 0x7FFFFFFFu);
  return m;
}

inline uint8_t EncodeScaled(float x, float inv_scale) {
  const uint32_t b = BitsOf(x * inv_scale);
  return static_cast<uint8_t>(((b >> 24) & 0x80u) | Fp8E4M3EncodeMagnitude(b & 0x7FFFFFFFu));
}

template <int64_t kN>
inline void EncodeTile(const float* __restrict x, float inv_scale, uint8_t* __restrict q) {
  for (int64_t i = 0; i < kN; ++i) q[i] = EncodeScaled(x[i], inv_scale);
}
inline void EncodeTile(const float* __restrict x, int64_t n, float inv_scale,
                       uint8_t* __restrict q) {
  for (int64_t i = 0; i < n; ++i) q[i] = EncodeScaled(x[i], inv_scale);
}

// One tile of n <= 128 values; `row` and `tile` only name the error.
__attribute__((always_inline)) inline absl::Status QuantizeTile(const float* __restrict x,
                                                                int64_t n, uint8_t* __restrict q,
                                                                float* scale, int64_t row,
                                                                int64_t tile) {
  const uint32_t amax_bits = n == kFp8TileSize ? AbsMaxBits<kFp8TileSize>(x) : AbsMaxBits(x, n);
  if (amax_bits >= 0x7F800000u) {
    const int64_t col = tile * kFp8TileSize;
    return absl::InvalidArgumentError(absl::StrCat("FP8 quantization: row ", row, " tile ", tile,
                                                   " (columns [", col, ", ", col + n,
                                                   ")) holds a non-finite value (NaN or inf)"));
  }
  const float s = Fp8TileScale(FloatOf(amax_bits));
  const float inv = 1.0f / s;
  if (n == kFp8TileSize) {
    EncodeTile<kFp8TileSize>(x, inv, q);
  } else {
    EncodeTile(x, n, inv, q);
  }
  *scale = s;
  return absl::OkStatus();
}

TR_EP_WIDE_CLONES absl::Status QuantizeRowImpl(const float* x, int64_t hidden, uint8_t* q,
                                               float* scales, int64_t row) {
  for (int64_t t = 0, c = 0; c < hidden; ++t, c += kFp8TileSize) {
    const int64_t n = std::min<int64_t>(kFp8TileSize, hidden - c);
    absl::Status s = QuantizeTile(x + c, n, q + c, scales + t, row, t);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

TR_EP_WIDE_CLONES absl::Status QuantizeRowFromBf16Impl(const uint16_t* x, int64_t hidden,
                                                       uint8_t* q, float* scales, int64_t row) {
  alignas(64) float tile[kFp8TileSize];
  for (int64_t t = 0, c = 0; c < hidden; ++t, c += kFp8TileSize) {
    const int64_t n = std::min<int64_t>(kFp8TileSize, hidden - c);
    // Widening BF16 is exact, so the result equals quantizing the float value.
    if (n == kFp8TileSize) {
      for (int64_t i = 0; i < kFp8TileSize; ++i) tile[i] = Bf16ToFloat(x[c + i]);
    } else {
      for (int64_t i = 0; i < n; ++i) tile[i] = Bf16ToFloat(x[c + i]);
    }
    absl::Status s = QuantizeTile(tile, n, q + c, scales + t, row, t);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Branch-free decode (Fp8E4M3ToFloat) times the tile scale.
inline float DecodeScaled(uint8_t code, float scale) { return Fp8E4M3ToFloat(code) * scale; }

template <int64_t kN>
inline void DecodeTile(const uint8_t* __restrict q, float scale, float* __restrict out) {
  for (int64_t i = 0; i < kN; ++i) out[i] = DecodeScaled(q[i], scale);
}

}  // namespace

TR_EP_SIMD_CLONES void FloatToBf16(const float* __restrict x, int64_t n, uint16_t* __restrict out) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) out[i + j] = FloatToBf16(x[i + j]);
  }
  for (; i < n; ++i) out[i] = FloatToBf16(x[i]);
}

TR_EP_SIMD_CLONES void Bf16ToFloat(const uint16_t* __restrict x, int64_t n, float* __restrict out) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) out[i + j] = Bf16ToFloat(x[i + j]);
  }
  for (; i < n; ++i) out[i] = Bf16ToFloat(x[i]);
}

double Bf16RoundingBound(double x) {
  const double a = std::fabs(x);
  if (std::isnan(a)) return std::numeric_limits<double>::quiet_NaN();
  // Largest finite BF16 is (2 - 2^-7) * 2^127; from there plus half an ulp
  // (2^119) the value rounds to infinity.
  if (a >= std::ldexp(2.0 - 0x1p-8, 127)) return std::numeric_limits<double>::infinity();
  if (a < 0x1p-126) return 0x1p-134;  // BF16 subnormal spacing 2^-133
  return std::ldexp(1.0, std::ilogb(a) - 8);
}

absl::Status QuantizeRowFp8(const float* x, int64_t hidden, uint8_t* q, float* scales) {
  return QuantizeRowImpl(x, hidden, q, scales, /*row=*/0);
}

absl::Status QuantizeRowFp8FromBf16(const uint16_t* x, int64_t hidden, uint8_t* q, float* scales) {
  return QuantizeRowFromBf16Impl(x, hidden, q, scales, /*row=*/0);
}

absl::Status QuantizeFp8(const float* x, int64_t x_stride, int64_t rows, int64_t hidden, uint8_t* q,
                         int64_t q_stride, float* scales, int64_t scales_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    absl::Status s =
        QuantizeRowImpl(x + r * x_stride, hidden, q + r * q_stride, scales + r * scales_stride, r);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status QuantizeFp8FromBf16(const uint16_t* x, int64_t x_stride, int64_t rows, int64_t hidden,
                                 uint8_t* q, int64_t q_stride, float* scales,
                                 int64_t scales_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    absl::Status s = QuantizeRowFromBf16Impl(x + r * x_stride, hidden, q + r * q_stride,
                                             scales + r * scales_stride, r);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

TR_EP_WIDE_CLONES void DequantizeRowFp8(const uint8_t* __restrict q, const float* __restrict scales,
                                        int64_t hidden, float* __restrict out) {
  for (int64_t t = 0, c = 0; c < hidden; ++t, c += kFp8TileSize) {
    const int64_t n = std::min<int64_t>(kFp8TileSize, hidden - c);
    if (n == kFp8TileSize) {
      DecodeTile<kFp8TileSize>(q + c, scales[t], out + c);
    } else {
      for (int64_t i = 0; i < n; ++i) out[c + i] = DecodeScaled(q[c + i], scales[t]);
    }
  }
}

TR_EP_WIDE_CLONES void DequantizeRowFp8ToBf16(const uint8_t* __restrict q,
                                              const float* __restrict scales, int64_t hidden,
                                              uint16_t* __restrict out) {
  alignas(64) float tile[kFp8TileSize];
  for (int64_t t = 0, c = 0; c < hidden; ++t, c += kFp8TileSize) {
    const int64_t n = std::min<int64_t>(kFp8TileSize, hidden - c);
    if (n == kFp8TileSize) {
      DecodeTile<kFp8TileSize>(q + c, scales[t], tile);
      for (int64_t i = 0; i < kFp8TileSize; ++i) out[c + i] = FloatToBf16(tile[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) out[c + i] = FloatToBf16(DecodeScaled(q[c + i], scales[t]));
    }
  }
}

void DequantizeFp8(const uint8_t* q, int64_t q_stride, const float* scales, int64_t scales_stride,
                   int64_t rows, int64_t hidden, float* out, int64_t out_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRowFp8(q + r * q_stride, scales + r * scales_stride, hidden, out + r * out_stride);
  }
}

double Fp8ErrorBound(double x, float scale) {
  constexpr double u = 0x1p-24;  // unit roundoff of float
  const double s = scale;
  const double t = std::fabs(x) / s;
  const double t_up = t * (1.0 + 4.0 * u);
  // Half the E4M3 spacing at t_up, or the saturation error when larger.
  double h = t_up < 0x1p-6 ? 0x1p-10 : std::ldexp(1.0, std::ilogb(t_up) - 4);
  h = std::max(h, t_up - static_cast<double>(kFp8E4M3Max));
  return s * (h * (1.0 + u) + 5.0 * u * t) + 0x1p-149;
}

}  // namespace ep
}  // namespace tokenrail
