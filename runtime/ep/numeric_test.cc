#include "runtime/ep/numeric.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tokenrail {
namespace ep {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}
float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

// ---- E4M3 from its definition, in double ----

double E4M3Value(int code) {
  const int sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if ((code & 0x7F) == 0x7F) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? m * std::ldexp(1.0, -9) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
  return sign ? -mag : mag;
}

// Nearest finite E4M3 code by exhaustive search; ties to the even code;
// saturating; NaN to 0x7F | sign.
uint8_t SlowEncode(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  if (std::isnan(x)) return sign | 0x7F;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 448.0) return sign | 0x7E;
  int best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (int c = 0; c <= 0x7E; ++c) {
    const double err = std::fabs(E4M3Value(c) - a);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = c;
      best_err = err;
    }
  }
  return static_cast<uint8_t>(sign | best);
}

TEST(Fp8E4M3Test, DecodesAll256CodesExactly) {
  for (int c = 0; c < 256; ++c) {
    const float got = Fp8E4M3ToFloat(static_cast<uint8_t>(c));
    const double want = E4M3Value(c);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
      continue;
    }
    EXPECT_EQ(static_cast<double>(got), want) << "code " << c;
    EXPECT_EQ(std::signbit(got), c >= 0x80) << "code " << c;  // 0x80 is -0
  }
  EXPECT_EQ(Fp8E4M3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(Fp8E4M3ToFloat(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(Fp8E4M3ToFloat(0x38), 1.0f);
}

TEST(Fp8E4M3Test, EveryCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;
    EXPECT_EQ(FloatToFp8E4M3(Fp8E4M3ToFloat(static_cast<uint8_t>(c))), c) << "code " << c;
  }
}

TEST(Fp8E4M3Test, MidpointsRoundToEvenAndNeighboursRoundToNearest) {
  for (int c = 0; c < 0x7E; ++c) {
    const double lo = E4M3Value(c), hi = E4M3Value(c + 1);
    const float mid = static_cast<float>((lo + hi) / 2);  // exact: few significant bits
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);
    const int even = (c & 1) == 0 ? c : c + 1;
    for (float sign : {1.0f, -1.0f}) {
      const uint8_t s = sign < 0 ? 0x80 : 0;
      EXPECT_EQ(FloatToFp8E4M3(sign * mid), s | even) << "midpoint above code " << c;
      EXPECT_EQ(FloatToFp8E4M3(sign * std::nextafter(mid, 0.0f)), s | c) << "below mid " << c;
      EXPECT_EQ(FloatToFp8E4M3(sign * std::nextafter(mid, 1000.0f)), s | (c + 1))
          << "above mid " << c;
    }
  }
  // A few by hand.
  EXPECT_EQ(FloatToFp8E4M3(std::ldexp(1.0f, -10)), 0x00);  // 0.5 ulp: to 0 (even)
  EXPECT_EQ(FloatToFp8E4M3(std::ldexp(1.5f, -9)), 0x02);   // 1.5 -> 2
  EXPECT_EQ(FloatToFp8E4M3(std::ldexp(2.5f, -9)), 0x02);   // 2.5 -> 2
  EXPECT_EQ(FloatToFp8E4M3(std::ldexp(7.5f, -9)), 0x08);   // into the normals
  EXPECT_EQ(FloatToFp8E4M3(1.0625f), 0x38);                // 1 + 1/16 -> 1.0
  EXPECT_EQ(FloatToFp8E4M3(1.1875f), 0x3A);                // -> 1.25
  EXPECT_EQ(FloatToFp8E4M3(15.5f), 0x58);                  // 15 (odd) | 16 -> 16
}

TEST(Fp8E4M3Test, SaturatesAndKeepsNan) {
  for (float v : {448.0f, 449.0f, 463.99f, 464.0f, 465.0f, 480.0f, 1e6f, 3.4e38f,
                  std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(FloatToFp8E4M3(v), 0x7E) << v;
    EXPECT_EQ(FloatToFp8E4M3(-v), 0xFE) << v;
  }
  EXPECT_EQ(FloatToFp8E4M3(std::numeric_limits<float>::quiet_NaN()), 0x7F);
  EXPECT_EQ(FloatToFp8E4M3(-std::numeric_limits<float>::quiet_NaN()), 0xFF);
  EXPECT_EQ(FloatToFp8E4M3(FromBits(0x7F800001u)), 0x7F);  // signalling NaN
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(0x7F)));
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(0xFF)));
  EXPECT_EQ(FloatToFp8E4M3(0.0f), 0x00);
  EXPECT_EQ(FloatToFp8E4M3(-0.0f), 0x80);
  EXPECT_EQ(FloatToFp8E4M3(std::numeric_limits<float>::denorm_min()), 0x00);
}

TEST(Fp8E4M3Test, MatchesExhaustiveSearchOnFloatSweep) {
  // Every 4099th float bit pattern up to 512 (beyond saturation), both
  // signs, plus random values across the binades that matter.
  std::vector<float> values;
  for (uint32_t b = 0; b <= 0x44000000u; b += 4099) values.push_back(FromBits(b));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-14.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) values.push_back(std::exp2(exponent(rng)));
  for (float v : values) {
    ASSERT_EQ(FloatToFp8E4M3(v), SlowEncode(v)) << v;
    ASSERT_EQ(FloatToFp8E4M3(-v), SlowEncode(-v)) << -v;
  }
}

// ---- BF16 ----

uint16_t SlowBf16(float x) {
  const uint32_t b = Bits(x);
  if (std::isnan(x)) return static_cast<uint16_t>((b >> 16) | 0x40);
  const uint16_t lo = static_cast<uint16_t>(b >> 16);  // truncation toward 0
  const double dx = x;
  const double vlo = Bf16ToFloat(lo);
  const uint16_t up = static_cast<uint16_t>(lo + 1);  // next magnitude (may be inf)
  // Past the largest finite value the next step is 2^128 (rounds to inf).
  const double vup = std::isinf(Bf16ToFloat(up)) ? std::copysign(std::ldexp(1.0, 128), dx)
                                                 : static_cast<double>(Bf16ToFloat(up));
  const double elo = std::fabs(dx - vlo), eup = std::fabs(vup - dx);
  if (elo < eup) return lo;
  if (eup < elo) return up;
  return (lo & 1) == 0 ? lo : up;
}

TEST(Bf16Test, AllPatternsRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(h));
    EXPECT_EQ(Bits(f), h << 16);
    const uint16_t back = FloatToBf16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16ToFloat(back))) << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << h;  // sign kept
      EXPECT_EQ(back, h | 0x40) << h;             // payload kept, quiet bit set
    } else {
      EXPECT_EQ(back, h) << h;
    }
  }
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(FromBits(0x3F808000u)), 0x3F80);              // tie, even below
  EXPECT_EQ(FloatToBf16(FromBits(0x3F818000u)), 0x3F82);              // tie, even above
  EXPECT_EQ(FloatToBf16(FromBits(0x3F808001u)), 0x3F81);              // just above the tie
  EXPECT_EQ(FloatToBf16(FromBits(0x3F807FFFu)), 0x3F80);              // just below
  EXPECT_EQ(FloatToBf16(FromBits(0xBF818000u)), 0xBF82);              // negative
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7F80);  // overflow to inf
  EXPECT_EQ(FloatToBf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 200000; ++i) {
    const float f = FromBits(any(rng));
    ASSERT_EQ(FloatToBf16(f), SlowBf16(f)) << std::hex << Bits(f);
    if (std::isfinite(f) && std::isfinite(Bf16ToFloat(FloatToBf16(f)))) {
      ASSERT_LE(std::fabs(static_cast<double>(f) - Bf16ToFloat(FloatToBf16(f))),
                Bf16RoundingBound(f));
    }
  }
}

TEST(Bf16Test, BulkMatchesScalar) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 100.0f);
  for (int64_t n : {0, 1, 255, 256, 257, 1000, 4096}) {
    std::vector<float> x(n), back(n);
    for (float& v : x) v = nd(rng);
    std::vector<uint16_t> h(n);
    FloatToBf16(x.data(), n, h.data());
    Bf16ToFloat(h.data(), n, back.data());
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(h[i], FloatToBf16(x[i]));
      ASSERT_EQ(Bits(back[i]), Bits(Bf16ToFloat(h[i])));
    }
  }
}

// ---- Per-tile quantization ----

// Rows whose tiles span many magnitudes, zeros, float subnormals and huge
// values.
std::vector<float> MakeRows(int64_t rows, int64_t hidden, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> mag(-30.0f, 30.0f);
  std::vector<float> x(rows * hidden);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < hidden; c0 += kFp8TileSize) {
      const int kind = static_cast<int>(rng() % 8);
      const float scale = kind == 0   ? 0.0f
                          : kind == 1 ? 1e-40f
                          : kind == 2 ? 1e37f
                                      : std::pow(10.0f, mag(rng));
      for (int64_t c = c0; c < std::min(hidden, c0 + kFp8TileSize); ++c) {
        x[r * hidden + c] = nd(rng) * scale;
      }
    }
  }
  return x;
}

TEST(Fp8QuantizeTest, FollowsTheStatedRuleAndBound) {
  for (int64_t hidden : {1, 5, 127, 128, 129, 300, 2048, 7168}) {
    SCOPED_TRACE(hidden);
    const int64_t rows = 9, tiles = Fp8TilesPerRow(hidden);
    const std::vector<float> x = MakeRows(rows, hidden, static_cast<uint32_t>(hidden));
    std::vector<uint8_t> q(rows * hidden);
    std::vector<float> scales(rows * tiles), deq(rows * hidden);
    ASSERT_TRUE(
        QuantizeFp8(x.data(), hidden, rows, hidden, q.data(), hidden, scales.data(), tiles).ok());
    DequantizeFp8(q.data(), hidden, scales.data(), tiles, rows, hidden, deq.data(), hidden);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t c0 = t * kFp8TileSize, c1 = std::min(hidden, c0 + kFp8TileSize);
        float amax = 0.0f;
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(x[r * hidden + c]));
        const float s = scales[r * tiles + t];
        const float want_s =
            amax == 0.0f ? 1.0f : std::max(amax / 448.0f, std::numeric_limits<float>::min());
        ASSERT_EQ(s, want_s) << "row " << r << " tile " << t;
        for (int64_t c = c0; c < c1; ++c) {
          const float v = x[r * hidden + c];
          const uint8_t code = q[r * hidden + c];
          ASSERT_EQ(code, FloatToFp8E4M3(v * (1.0f / s))) << v;
          ASSERT_EQ(Bits(deq[r * hidden + c]), Bits(Fp8E4M3ToFloat(code) * s));
          ASSERT_LE(std::fabs(static_cast<double>(v) - deq[r * hidden + c]), Fp8ErrorBound(v, s))
              << "x=" << v << " scale=" << s << " code=" << int{code};
        }
      }
    }
  }
}

TEST(Fp8QuantizeTest, BoundIsTightAndRelativeForNormals) {
  // x at a midpoint between two E4M3 values (times the scale) has the
  // largest error the rounding can make; the bound must cover it, barely.
  const float s = 0.75f;
  double worst_ratio = 0;
  for (int c = 8; c < 0x7E; ++c) {
    const double mid = (E4M3Value(c) + E4M3Value(c + 1)) / 2;
    const float x = static_cast<float>(mid * s);
    uint8_t q;
    float scale;
    ASSERT_TRUE(QuantizeRowFp8(&x, 1, &q, &scale).ok());
    // Force the tile scale to s by quantizing together with the tile max.
    const float tile[2] = {x, 448.0f * s};
    uint8_t q2[2];
    ASSERT_TRUE(QuantizeRowFp8(tile, 2, q2, &scale).ok());
    ASSERT_EQ(scale, s);
    const double err = std::fabs(static_cast<double>(x) - Fp8E4M3ToFloat(q2[0]) * scale);
    const double bound = Fp8ErrorBound(x, scale);
    ASSERT_LE(err, bound);
    worst_ratio = std::max(worst_ratio, err / bound);
    // Relative: 2^-4 of the value's binade, plus the O(2^-24) float terms.
    ASSERT_LE(bound, std::ldexp(1.0, std::ilogb(mid) - 4) * s * (1 + 2e-5) + 1e-44);
  }
  EXPECT_GT(worst_ratio, 0.99);
}

TEST(Fp8QuantizeTest, TileMaxQuantizesTo448) {
  float x[200];
  for (int i = 0; i < 200; ++i) x[i] = 0.001f * i;
  x[77] = -3.5f;
  uint8_t q[200];
  float scales[2];
  ASSERT_TRUE(QuantizeRowFp8(x, 200, q, scales).ok());
  EXPECT_EQ(q[77], 0xFE);
  EXPECT_EQ(scales[0], 3.5f / 448.0f);
  EXPECT_EQ(scales[1], x[199] / 448.0f);  // partial tile: its own amax
  EXPECT_EQ(q[199], 0x7E);
}

TEST(Fp8QuantizeTest, ZeroTileHasScaleOne) {
  std::vector<float> x(300, 0.0f);
  x[200] = 2.0f;
  std::vector<uint8_t> q(300);
  float scales[3];
  ASSERT_TRUE(QuantizeRowFp8(x.data(), 300, q.data(), scales).ok());
  EXPECT_EQ(scales[0], 1.0f);
  EXPECT_EQ(scales[2], 1.0f);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[200], 0x7E);
}

TEST(Fp8QuantizeTest, NonFiniteInputIsRejectedNamingRowAndTile) {
  const int64_t rows = 5, hidden = 300;
  std::vector<float> x(rows * hidden, 1.0f);
  std::vector<uint8_t> q(rows * hidden);
  std::vector<float> scales(rows * 3);
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
    x[3 * hidden + 130] = bad;
    const absl::Status s =
        QuantizeFp8(x.data(), hidden, rows, hidden, q.data(), hidden, scales.data(), 3);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("row 3 tile 1 (columns [128, 256))"), absl::string_view::npos) << s;
  }
}

TEST(Fp8QuantizeTest, Bf16InputEqualsQuantizingTheWidenedValues) {
  const int64_t rows = 4, hidden = 777, tiles = Fp8TilesPerRow(hidden);
  const std::vector<float> x = MakeRows(rows, hidden, 11);
  std::vector<uint16_t> xb(rows * hidden);
  FloatToBf16(x.data(), rows * hidden, xb.data());
  std::vector<float> widened(rows * hidden);
  Bf16ToFloat(xb.data(), rows * hidden, widened.data());
  std::vector<uint8_t> q1(rows * hidden), q2(rows * hidden);
  std::vector<float> s1(rows * tiles), s2(rows * tiles);
  ASSERT_TRUE(
      QuantizeFp8FromBf16(xb.data(), hidden, rows, hidden, q1.data(), hidden, s1.data(), tiles)
          .ok());
  ASSERT_TRUE(
      QuantizeFp8(widened.data(), hidden, rows, hidden, q2.data(), hidden, s2.data(), tiles).ok());
  EXPECT_EQ(q1, q2);
  EXPECT_EQ(s1, s2);
  // The bound holds against the BF16 input value.
  std::vector<float> deq(hidden);
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRowFp8(q1.data() + r * hidden, s1.data() + r * tiles, hidden, deq.data());
    std::vector<uint16_t> deq_bf16(hidden);
    DequantizeRowFp8ToBf16(q1.data() + r * hidden, s1.data() + r * tiles, hidden, deq_bf16.data());
    for (int64_t c = 0; c < hidden; ++c) {
      const float v = widened[r * hidden + c];
      ASSERT_LE(std::fabs(static_cast<double>(v) - deq[c]),
                Fp8ErrorBound(v, s1[r * tiles + c / kFp8TileSize]));
      ASSERT_EQ(deq_bf16[c], FloatToBf16(deq[c]));
    }
  }
  const absl::Status s = QuantizeRowFp8FromBf16(xb.data(), hidden, q1.data(), s1.data());
  EXPECT_TRUE(s.ok()) << s;
}

TEST(Fp8QuantizeTest, StridesLeaveGapsUntouched) {
  const int64_t rows = 3, hidden = 130, x_stride = 140, q_stride = 136, s_stride = 4;
  std::vector<float> x(rows * x_stride, 2.0f);
  std::vector<uint8_t> q(rows * q_stride, 0xAB);
  std::vector<float> scales(rows * s_stride, -1.0f);
  ASSERT_TRUE(
      QuantizeFp8(x.data(), x_stride, rows, hidden, q.data(), q_stride, scales.data(), s_stride)
          .ok());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < q_stride; ++c) {
      EXPECT_EQ(q[r * q_stride + c], c < hidden ? 0x7E : 0xAB);
    }
    EXPECT_EQ(scales[r * s_stride + 0], 2.0f / 448.0f);
    EXPECT_EQ(scales[r * s_stride + 1], 2.0f / 448.0f);
    EXPECT_EQ(scales[r * s_stride + 2], -1.0f);
  }
  std::vector<float> out(rows * x_stride, 7.0f);
  DequantizeFp8(q.data(), q_stride, scales.data(), s_stride, rows, hidden, out.data(), x_stride);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < x_stride; ++c) {
      EXPECT_EQ(out[r * x_stride + c], c < hidden ? 2.0f : 7.0f);
    }
  }
}

}  // namespace
}  // namespace ep
}  // namespace tokenrail
