#include "tools/bench/pattern.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tokenrail {
namespace bench {
namespace {

Expectation Exact(uint64_t size, uint32_t stream, uint64_t iteration) {
  Expectation e;
  e.size = size;
  e.stream = stream;
  e.iteration = iteration;
  e.period = 1;
  e.last_iteration = iteration;
  return e;
}

class PatternTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(PatternTest, FilledMessageVerifies) {
  const uint64_t size = GetParam();
  std::vector<char> buf(size + 8);
  FillPattern(buf.data(), size, 3, 17);
  EXPECT_TRUE(VerifyFull(buf.data(), Exact(size, 3, 17)).ok());
  EXPECT_TRUE(VerifySampled(buf.data(), Exact(size, 3, 17)).ok());
}

TEST_P(PatternTest, RestampEqualsFreshFill) {
  const uint64_t size = GetParam();
  std::vector<char> a(size), b(size);
  FillPattern(a.data(), size, 1, 5);
  StampPattern(a.data(), size, 1, 900);
  FillPattern(b.data(), size, 1, 900);
  EXPECT_EQ(a, b);
}

TEST_P(PatternTest, DetectsWrongIterationStreamAndSize) {
  const uint64_t size = GetParam();
  std::vector<char> buf(size);
  FillPattern(buf.data(), size, 0, 10);
  EXPECT_EQ(VerifySampled(buf.data(), Exact(size, 0, 11)).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(VerifySampled(buf.data(), Exact(size, 1, 10)).code(), absl::StatusCode::kDataLoss);
  if (size > 1) {
    EXPECT_EQ(VerifyFull(buf.data(), Exact(size - 1, 0, 10)).code(), absl::StatusCode::kDataLoss);
  }
}

TEST_P(PatternTest, FullCheckCatchesEveryFlippedByte) {
  const uint64_t size = GetParam();
  std::vector<char> buf(size);
  FillPattern(buf.data(), size, 2, 4);
  // A spread of positions, including the first, last and tail bytes.
  for (uint64_t pos : {uint64_t{0}, size / 3, size / 2 + 1, size - 1}) {
    pos = std::min(pos, size - 1);
    buf[pos] ^= 0x01;
    absl::Status s = VerifyFull(buf.data(), Exact(size, 2, 4));
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << "byte " << pos;
    EXPECT_NE(s.message().find("iteration 4"), absl::string_view::npos) << s;
    buf[pos] ^= 0x01;
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, PatternTest,
                         ::testing::Values(1, 3, 7, 8, 9, 15, 64, 4096, 4097, 65536, (1 << 20) + 5,
                                           8 << 20));

TEST(PatternTest, StaleDataIsNamed) {
  std::vector<char> buf(4096);
  FillPattern(buf.data(), buf.size(), 0, 3);
  Expectation e = Exact(4096, 0, 7);
  e.period = 4;
  e.last_iteration = 100;
  absl::Status s = VerifySampled(buf.data(), e);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("stale: written by iteration 3"), absl::string_view::npos) << s;
}

TEST(PatternTest, AcceptsLaterPutToTheSameSlot) {
  std::vector<char> buf(1 << 16);
  FillPattern(buf.data(), buf.size(), 0, 7 + 2 * 8);  // iteration 23 reused the slot
  Expectation e = Exact(buf.size(), 0, 7);
  e.period = 8;
  e.last_iteration = 40;
  EXPECT_TRUE(VerifySampled(buf.data(), e).ok());
  EXPECT_TRUE(VerifyFull(buf.data(), e).ok());
  // ... but not an iteration that maps to another slot, nor one past the end.
  FillPattern(buf.data(), buf.size(), 0, 8);
  EXPECT_EQ(VerifySampled(buf.data(), e).code(), absl::StatusCode::kDataLoss);
  FillPattern(buf.data(), buf.size(), 0, 47);
  EXPECT_EQ(VerifySampled(buf.data(), e).code(), absl::StatusCode::kDataLoss);
}

TEST(PatternTest, ShortMessagesAcceptLaterIterations) {
  std::vector<char> buf(4);
  FillPattern(buf.data(), 4, 0, 12);
  Expectation e = Exact(4, 0, 2);
  e.period = 5;
  e.last_iteration = 20;
  EXPECT_TRUE(VerifySampled(buf.data(), e).ok());
  e.period = 3;
  EXPECT_EQ(VerifySampled(buf.data(), e).code(), absl::StatusCode::kDataLoss);
}

TEST(PatternTest, MisplacedDataIsDetectedBySampling) {
  // The right message at the wrong offset: the stamps decode to garbage.
  const uint64_t size = 64 << 10;
  std::vector<char> src(size), dst(size + 8, 0);
  FillPattern(src.data(), size, 0, 1);
  std::memcpy(dst.data() + 8, src.data(), size);
  absl::Status s = VerifySampled(dst.data(), Exact(size, 0, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
}

TEST(PatternTest, SpotCheckRotatesOverEveryStamp) {
  // A stale middle stamp is found by the iteration whose rotating stamp it
  // is, and a misplaced message by every iteration (first and last words).
  const uint64_t size = 1 << 20;
  const uint64_t stride = StampStride(size);
  const uint64_t stamps = (size / 8 - 1 + stride - 1) / stride;
  std::vector<char> buf(size);
  FillPattern(buf.data(), size, 0, 0);
  int caught = 0;
  const uint64_t stale_at = 5 * stride * 8;  // byte offset of stamp 5
  for (uint64_t it = 1; it <= stamps; ++it) {
    const std::vector<char> prev = buf;
    StampPattern(buf.data(), size, 0, it);
    EXPECT_TRUE(VerifySpot(buf.data(), Exact(size, 0, it)).ok()) << it;
    std::vector<char> bad = buf;
    std::memcpy(bad.data() + stale_at, prev.data() + stale_at, 8);
    if (!VerifySpot(bad.data(), Exact(size, 0, it)).ok()) ++caught;
  }
  EXPECT_EQ(caught, 1);
  std::vector<char> dst(size + 8, 0);
  std::memcpy(dst.data() + 8, buf.data(), size);
  EXPECT_EQ(VerifySpot(dst.data(), Exact(size, 0, stamps)).code(), absl::StatusCode::kDataLoss);
}

TEST(PatternTest, StampsAreSparse) {
  EXPECT_EQ(StampStride(8), 512u);
  EXPECT_EQ(StampStride(1 << 20), 2048u);  // 64 stamps + the last word
  EXPECT_EQ(StampStride(64 << 20), 131072u);
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail
