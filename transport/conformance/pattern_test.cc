#include "transport/conformance/pattern.h"

#include <vector>

#include "gtest/gtest.h"
#include "transport/conformance/peer_protocol.h"

namespace tokenrail {
namespace transport {
namespace {

TEST(PatternTest, DetectsEveryMisplacedByte) {
  std::vector<uint8_t> buf(1003);
  FillPattern(buf.data(), buf.size(), 7);
  EXPECT_EQ(FirstPatternMismatch(buf.data(), buf.size(), 7), buf.size());
  EXPECT_EQ(FirstPatternMismatch(buf.data(), buf.size(), 8), 0u);  // seed matters
  for (size_t pos : {0, 5, 8, 999, 1002}) {
    buf[pos] ^= 1;
    EXPECT_EQ(FirstPatternMismatch(buf.data(), buf.size(), 7), pos);
    buf[pos] ^= 1;
  }
  // A shifted copy (misplaced by one byte) is caught.
  std::vector<uint8_t> shifted(buf.begin() + 1, buf.end());
  EXPECT_LT(FirstPatternMismatch(shifted.data(), shifted.size(), 7), 8u);
}

TEST(PatternTest, FirstByteNot) {
  std::vector<uint8_t> buf(100, 0xAB);
  EXPECT_EQ(FirstByteNot(buf.data(), buf.size(), 0xAB), 100u);
  buf[42] = 0;
  EXPECT_EQ(FirstByteNot(buf.data(), buf.size(), 0xAB), 42u);
}

TEST(PeerProtocolTest, CommandsAndRepliesRoundTrip) {
  PeerCommand c;
  c.op = PeerOp::kPutMany;
  c.count = 3;
  c.size = 1 << 20;
  c.seed = 99;
  c.key = std::string("\0key", 4);
  absl::StatusOr<PeerCommand> d = DecodeCommand(EncodeCommand(c));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->op, PeerOp::kPutMany);
  EXPECT_EQ(d->size, c.size);
  EXPECT_EQ(d->key, c.key);
  EXPECT_FALSE(DecodeCommand("x").ok());
  EXPECT_EQ(*DecodeReply(EncodeReply(std::string("ok"))), "ok");
  absl::StatusOr<std::string> err = DecodeReply(EncodeReply(absl::NotFoundError("gone")));
  EXPECT_EQ(err.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(err.status().message(), "peer: gone");
}

}  // namespace
}  // namespace transport
}  // namespace tokenrail
