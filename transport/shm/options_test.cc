#include "transport/shm/options.h"

#include "gtest/gtest.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

TEST(ShmOptionsTest, DefaultsWhenNoParams) {
  absl::StatusOr<ShmOptions> o = ParseShmOptions({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->dir, "/tmp");
  EXPECT_EQ(o->ring_entries, 1024u);
  EXPECT_EQ(o->message_ring_bytes, 256u << 10);
  EXPECT_EQ(o->spin, absl::Microseconds(100));
}

TEST(ShmOptionsTest, ParsesEveryKey) {
  absl::StatusOr<ShmOptions> o = ParseShmOptions({{"dir", "/run/user/1000"},
                                                  {"ring_entries", "4"},
                                                  {"message_ring_bytes", "1048576"},
                                                  {"spin_us", "0"}});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->dir, "/run/user/1000");
  EXPECT_EQ(o->ring_entries, 4u);
  EXPECT_EQ(o->message_ring_bytes, 1u << 20);
  EXPECT_EQ(o->spin, absl::ZeroDuration());
}

TEST(ShmOptionsTest, RejectsBadValuesNamingKeyAndValue) {
  const std::pair<std::string, std::string> bad[] = {
      {"ring_entries", "1000"},          // not a power of two
      {"ring_entries", "1"},             // too small
      {"ring_entries", "33554432"},      // too large
      {"ring_entries", "-4"},            // negative
      {"ring_entries", "four"},          // not a number
      {"message_ring_bytes", "131072"},  // below the two-message minimum
      {"message_ring_bytes", "300000"},  // not a power of two
      {"spin_us", "2000000"},            // more than a second
      {"spin_us", ""},                   // empty
      {"dir", "relative/dir"},           // not absolute
      {"dir", ""},
  };
  for (const auto& [key, value] : bad) {
    absl::StatusOr<ShmOptions> o = ParseShmOptions({{key, value}});
    ASSERT_FALSE(o.ok()) << key << "=" << value;
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(o.status().message().find(key), absl::string_view::npos) << o.status();
    EXPECT_NE(o.status().message().find("'" + value + "'"), absl::string_view::npos) << o.status();
  }
}

TEST(ShmOptionsTest, RejectsUnknownKeyNamingIt) {
  absl::StatusOr<ShmOptions> o = ParseShmOptions({{"ring_entires", "8"}});
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("ring_entires"), absl::string_view::npos);
  EXPECT_NE(o.status().message().find("ring_entries"), absl::string_view::npos)
      << "should list the known keys: " << o.status();
}

TEST(ShmOptionsTest, HelpDocumentsEveryKey) {
  const auto help = ShmOptionsHelp();
  ASSERT_EQ(help.size(), 4u);
  for (const auto& [key, text] : help) {
    EXPECT_FALSE(text.empty()) << key;
    // Every documented key is accepted with its default spelled out.
    EXPECT_NE(text.find("default"), std::string::npos) << key;
  }
}

}  // namespace
}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
