#include "transport/verbs/options.h"

#include "gtest/gtest.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

absl::Status ParseOne(const std::string& key, const std::string& value) {
  return ParseVerbsOptions({{key, value}}).status();
}

TEST(VerbsOptionsTest, Defaults) {
  absl::StatusOr<VerbsOptions> o = ParseVerbsOptions({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->device, "");
  EXPECT_EQ(o->port, 1);
  EXPECT_EQ(o->gid_index, -1);
  EXPECT_EQ(o->mtu, 0);
  EXPECT_EQ(o->qp_depth, 512);
  EXPECT_EQ(o->recv_depth, 512);
  EXPECT_EQ(o->cq_depth, 0);
  EXPECT_EQ(o->timeout, 18);
  EXPECT_EQ(o->retry_cnt, 7);
  EXPECT_EQ(o->rnr_retry, 7);
  EXPECT_EQ(o->inline_threshold, 64);
  EXPECT_EQ(o->listen_host, "127.0.0.1");
  EXPECT_EQ(o->listen_port, 0);
}

TEST(VerbsOptionsTest, ParsesEveryKey) {
  absl::StatusOr<VerbsOptions> o = ParseVerbsOptions({{"device", "mlx5_3"},
                                                      {"port", "2"},
                                                      {"gid_index", "3"},
                                                      {"mtu", "2048"},
                                                      {"qp_depth", "1024"},
                                                      {"recv_depth", "256"},
                                                      {"cq_depth", "4096"},
                                                      {"timeout", "14"},
                                                      {"retry_cnt", "5"},
                                                      {"rnr_retry", "6"},
                                                      {"inline_threshold", "0"},
                                                      {"traffic_class", "106"},
                                                      {"service_level", "3"},
                                                      {"listen", "10.1.2.3:18515"}});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->device, "mlx5_3");
  EXPECT_EQ(o->port, 2);
  EXPECT_EQ(o->gid_index, 3);
  EXPECT_EQ(o->mtu, 2048);
  EXPECT_EQ(o->qp_depth, 1024);
  EXPECT_EQ(o->recv_depth, 256);
  EXPECT_EQ(o->cq_depth, 4096);
  EXPECT_EQ(o->timeout, 14);
  EXPECT_EQ(o->retry_cnt, 5);
  EXPECT_EQ(o->rnr_retry, 6);
  EXPECT_EQ(o->inline_threshold, 0);
  EXPECT_EQ(o->traffic_class, 106);
  EXPECT_EQ(o->service_level, 3);
  EXPECT_EQ(o->listen_host, "10.1.2.3");
  EXPECT_EQ(o->listen_port, 18515);
}

TEST(VerbsOptionsTest, AutoValues) {
  absl::StatusOr<VerbsOptions> o =
      ParseVerbsOptions({{"gid_index", "auto"}, {"mtu", "auto"}, {"cq_depth", "auto"}});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->gid_index, -1);
  EXPECT_EQ(o->mtu, 0);
  EXPECT_EQ(o->cq_depth, 0);
}

TEST(VerbsOptionsTest, UnknownKeyIsNamed) {
  absl::Status s = ParseOne("qp_dpeth", "5");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'qp_dpeth'"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("qp_depth"), absl::string_view::npos) << s;  // lists known keys
}

TEST(VerbsOptionsTest, BadValuesNameKeyAndValue) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"port", "0"},
      {"port", "x"},
      {"gid_index", "-2"},
      {"mtu", "1500"},
      {"mtu", ""},
      {"qp_depth", "8"},
      {"recv_depth", "1e9"},
      {"timeout", "32"},
      {"retry_cnt", "8"},
      {"rnr_retry", "-1"},
      {"inline_threshold", "4096"},
      {"traffic_class", "256"},
      {"service_level", "16"},
      {"cq_depth", "16"},
      {"device", ""},
      {"listen", "nocolon"},
      {"listen", "host:1"},
      {"listen", "1.2.3.4:70000"},
      {"listen", ":5"},
      {"listen", "0.0.0.0:5"},
  };
  for (const auto& [key, value] : bad) {
    absl::Status s = ParseOne(key, value);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << key << "=" << value;
    EXPECT_NE(s.message().find(key), absl::string_view::npos) << s;
  }
  // The wildcard is refused with an explanation: peers cannot dial it.
  EXPECT_NE(ParseOne("listen", "0.0.0.0:0").message().find("cannot be advertised"),
            absl::string_view::npos);
}

TEST(VerbsOptionsTest, CqMustCoverBothQueues) {
  absl::Status s =
      ParseVerbsOptions({{"qp_depth", "512"}, {"recv_depth", "512"}, {"cq_depth", "1000"}})
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("cq_depth=1000"), absl::string_view::npos) << s;
  EXPECT_TRUE(
      ParseVerbsOptions({{"qp_depth", "512"}, {"recv_depth", "512"}, {"cq_depth", "1024"}}).ok());
}

TEST(VerbsOptionsTest, HelpCoversEveryKey) {
  const auto help = VerbsParamsHelp();
  EXPECT_EQ(help.size(), 14u);
  for (const auto& [key, text] : help) {
    EXPECT_FALSE(text.empty()) << key;
  }
}

}  // namespace
}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
