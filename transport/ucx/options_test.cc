#include "transport/ucx/options.h"

#include "gtest/gtest.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

TEST(UcxOptionsTest, Defaults) {
  absl::StatusOr<UcxOptions> o = ParseUcxOptions({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->tls, "");
  EXPECT_EQ(o->net_devices, "");
  EXPECT_EQ(o->put_mode, PutMode::kAuto);
  EXPECT_EQ(o->rndv_thresh, 64u << 10);
  EXPECT_EQ(o->keepalive_ms, 1000);
  EXPECT_EQ(o->rma_notify, RmaNotify::kFlush);
  EXPECT_EQ(o->max_message_size, 64u << 10);
}

TEST(UcxOptionsTest, ParsesEveryKey) {
  absl::StatusOr<UcxOptions> o = ParseUcxOptions({{"tls", "tcp,self"},
                                                  {"net_devices", "eth0,mlx5_0:1"},
                                                  {"put_mode", "am"},
                                                  {"rndv_thresh", "256K"},
                                                  {"keepalive_ms", "0"},
                                                  {"rma_notify", "fence"},
                                                  {"max_message_size", "1MiB"}});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->tls, "tcp,self");
  EXPECT_EQ(o->net_devices, "eth0,mlx5_0:1");
  EXPECT_EQ(o->put_mode, PutMode::kAm);
  EXPECT_EQ(o->rndv_thresh, 256u << 10);
  EXPECT_EQ(o->keepalive_ms, 0);
  EXPECT_EQ(o->rma_notify, RmaNotify::kFence);
  EXPECT_EQ(o->max_message_size, 1u << 20);

  EXPECT_EQ(ParseUcxOptions({{"put_mode", "rma"}})->put_mode, PutMode::kRma);
  EXPECT_EQ(ParseUcxOptions({{"put_mode", "auto"}})->put_mode, PutMode::kAuto);
  EXPECT_EQ(ParseUcxOptions({{"rndv_thresh", "12345"}})->rndv_thresh, 12345u);
  EXPECT_EQ(ParseUcxOptions({{"rndv_thresh", "2m"}})->rndv_thresh, 2u << 20);
  EXPECT_EQ(ParseUcxOptions({{"tls", "^tcp"}})->tls, "^tcp");
}

TEST(UcxOptionsTest, RejectsUnknownKeyNamingIt) {
  absl::StatusOr<UcxOptions> o = ParseUcxOptions({{"tsl", "tcp"}});
  ASSERT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("'tsl'"), std::string::npos) << o.status();
  EXPECT_NE(o.status().message().find("put_mode"), std::string::npos) << o.status();
}

TEST(UcxOptionsTest, RejectsBadValuesNamingKeyAndValue) {
  const std::map<std::string, std::string> bad[] = {
      {{"put_mode", "fast"}},
      {{"rndv_thresh", "-1"}},
      {{"rndv_thresh", "12Q"}},
      {{"rndv_thresh", ""}},
      {{"rndv_thresh", "99999999999999999999"}},
      {{"keepalive_ms", "-5"}},
      {{"keepalive_ms", "ten"}},
      {{"rma_notify", "barrier"}},
      {{"max_message_size", "100"}},
      {{"max_message_size", "1G"}},
      {{"tls", "tcp\nUCX_LOG_LEVEL=trace"}},
      {{"net_devices", "eth0 lo"}},
  };
  for (const auto& params : bad) {
    absl::StatusOr<UcxOptions> o = ParseUcxOptions(params);
    const std::string& key = params.begin()->first;
    ASSERT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_NE(o.status().message().find(key), std::string::npos) << o.status();
  }
}

TEST(UcxOptionsTest, HelpCoversEveryKey) {
  std::map<std::string, std::string> all;
  for (const auto& [key, help] : UcxOptionsHelp()) {
    EXPECT_FALSE(help.empty()) << key;
    all[key] = key == "put_mode"           ? "auto"
               : key == "rma_notify"       ? "flush"
               : key == "rndv_thresh"      ? "1K"
               : key == "keepalive_ms"     ? "10"
               : key == "max_message_size" ? "4096"
                                           : "tcp";
  }
  EXPECT_TRUE(ParseUcxOptions(all).ok()) << ParseUcxOptions(all).status();
}

}  // namespace
}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
