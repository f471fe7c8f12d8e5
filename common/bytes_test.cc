#include "common/bytes.h"

#include "gtest/gtest.h"

namespace tokenrail {
namespace {

TEST(BytesTest, WriterReaderRoundTrip) {
  ByteWriter w;
  w.Put<uint64_t>(0x1122334455667788ull);
  w.PutBytes("hello");
  w.Put<uint8_t>(7);
  ByteReader r(w.data(), "test blob");
  EXPECT_EQ(*r.Get<uint64_t>(), 0x1122334455667788ull);
  EXPECT_EQ(*r.GetBytes(16), "hello");
  EXPECT_EQ(*r.Get<uint8_t>(), 7);
  EXPECT_TRUE(r.ExpectEnd().ok());
}

TEST(BytesTest, ReaderRejectsTruncationAndOversize) {
  ByteWriter w;
  w.PutBytes("0123456789");
  ByteReader too_small_limit(w.data(), "blob");
  absl::StatusOr<absl::string_view> b = too_small_limit.GetBytes(4);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("exceeds limit"), absl::string_view::npos);

  ByteReader truncated(absl::string_view(w.data()).substr(0, 8), "blob");
  EXPECT_EQ(truncated.GetBytes(100).status().code(), absl::StatusCode::kInvalidArgument);
  ByteReader empty("", "blob");
  EXPECT_FALSE(empty.Get<uint32_t>().ok());
}

TEST(BytesTest, Crc32cKnownValue) {
  // Standard CRC-32C check value.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
}

TEST(BytesTest, SealedBlobDetectsEveryKindOfDamage) {
  const std::string blob = SealBlob(0xC0FFEE, 3, "payload");
  EXPECT_EQ(*UnsealBlob(blob, 0xC0FFEE, 3, "addr"), "payload");

  EXPECT_NE(UnsealBlob(blob, 0xBEEF, 3, "addr").status().message().find("bad magic"),
            absl::string_view::npos);
  EXPECT_NE(UnsealBlob(blob, 0xC0FFEE, 4, "addr").status().message().find("version 3"),
            absl::string_view::npos);
  std::string corrupt = blob;
  corrupt[13] ^= 1;
  EXPECT_NE(UnsealBlob(corrupt, 0xC0FFEE, 3, "addr").status().message().find("checksum"),
            absl::string_view::npos);
  EXPECT_FALSE(UnsealBlob(blob.substr(0, blob.size() - 1), 0xC0FFEE, 3, "addr").ok());
  EXPECT_FALSE(UnsealBlob("xyz", 0xC0FFEE, 3, "addr").ok());
}

}  // namespace
}  // namespace tokenrail
