// Smoke test of `tokenrail-bench proxy`'s library: a real 2-node x 1-rank
// cluster on loopback (this test binary is also the rank program: its main
// runs RunProxyRank when given a plan argument), tiny sizes, rows parsed and
// checked; plus the plan blob's validation.
#include "tools/bench/proxy_bench.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace {

std::string SelfPath() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : "";
}

TEST(ProxyPlanTest, RoundTripsAndRejectsDamage) {
  ProxyPlan p;
  p.sizes = {8, 1 << 20};
  p.iters = 100;
  p.min_iters = 5;
  p.max_bytes = 1 << 24;
  p.warmup = 3;
  p.ping_iters = 7;
  p.window = 8;
  p.rounds = 3;
  p.network = "netns";
  p.hosts[0] = "10.99.0.1";
  p.hosts[1] = "10.99.0.2";
  p.params = {{"tls", "tcp"}};
  p.timeout = absl::Seconds(9);
  const std::string arg = EncodeProxyPlan(p);
  EXPECT_TRUE(IsProxyRankArgument(arg));
  auto q = DecodeProxyPlan(arg);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->sizes, p.sizes);
  EXPECT_EQ(q->iters, 100u);
  EXPECT_EQ(q->window, 8u);
  EXPECT_EQ(q->rounds, 3u);
  EXPECT_EQ(q->hosts[1], "10.99.0.2");
  EXPECT_EQ(q->params.at("tls"), "tcp");
  EXPECT_EQ(q->timeout, absl::Seconds(9));

  std::string bad = arg;
  bad[bad.size() - 12] = bad[bad.size() - 12] == '0' ? '1' : '0';  // inside the payload
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeProxyPlan(bad).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeProxyPlan(arg.substr(0, arg.size() - 8)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeProxyPlan("proxy-plan:zz").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeProxyPlan("nonsense").status()));
  p.latency = false;
  q = DecodeProxyPlan(EncodeProxyPlan(p));
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_FALSE(q->latency);
  EXPECT_TRUE(q->bandwidth);
  p.bandwidth = false;  // no test at all
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeProxyPlan(EncodeProxyPlan(p)).status()));
  p.bandwidth = true;
  p.rounds = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeProxyPlan(EncodeProxyPlan(p)).status()));
}

TEST(ProxyBenchTest, ReportsVerifiedProxyAndDirectRows) {
  ProxyBenchOptions o;
  o.sizes = {8, 65536, 1 << 20};
  o.iters = 50;
  o.min_iters = 5;
  o.warmup = 5;
  o.window = 8;
  o.rounds = 2;
  o.ping_iters = 200;
  o.network = ProxyNetwork::kLoopback;
  o.timeout = absl::Seconds(60);
  const char* daemon = std::getenv("TR_DAEMON");
  ASSERT_NE(daemon, nullptr);
  o.daemon_path = daemon;
  char* buf = nullptr;
  size_t len = 0;
  std::FILE* out = ::open_memstream(&buf, &len);
  absl::Status s;
  {
    Printer printer(ProxyTable(), /*json=*/true, out);
    s = RunProxyBench(o, {SelfPath()}, printer);
  }
  std::fclose(out);
  const std::string text(buf, len);
  std::free(buf);
  ASSERT_TRUE(s.ok()) << s << "\n" << text;
  int lat = 0, bw = 0, ping = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    auto r = Record::ParseJson(line);
    ASSERT_TRUE(r.ok()) << r.status() << ": " << line;
    EXPECT_EQ(r->GetString("network").value_or(""), "loopback");
    EXPECT_TRUE(r->GetBool("verified").value_or(false)) << line;
    const std::string mode = r->GetString("mode").value_or("");
    EXPECT_GT(r->GetDouble("proxy_p50_us").value_or(0), 0) << line;
    if (mode == "ping") ++ping;
    if (mode == "lat") {
      ++lat;
      EXPECT_GT(r->GetDouble("direct_p50_us").value_or(0), 0) << line;
      EXPECT_GT(r->GetDouble("ratio").value_or(0), 0) << line;
    }
    if (mode == "bw") {
      ++bw;
      EXPECT_GT(r->GetDouble("proxy_gbytes_per_s").value_or(0), 0) << line;
      EXPECT_GT(r->GetDouble("direct_gbytes_per_s").value_or(0), 0) << line;
      EXPECT_GT(r->GetDouble("ratio").value_or(0), 0) << line;
      EXPECT_EQ(r->GetInt("rounds").value_or(0), 2) << line;
      EXPECT_GT(r->GetDouble("pair_ratio_min").value_or(0), 0) << line;
      EXPECT_LE(r->GetDouble("pair_ratio_min").value_or(0),
                r->GetDouble("pair_ratio_max").value_or(0))
          << line;
    }
  }
  EXPECT_EQ(ping, 1) << text;
  EXPECT_EQ(lat, 3) << text;
  EXPECT_EQ(bw, 3) << text;
  std::printf("%s", text.c_str());
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail

int main(int argc, char** argv) {
  // Launched as a rank of the benchmark cluster.
  if (argc > 1 && tokenrail::bench::IsProxyRankArgument(argv[argc - 1])) {
    const absl::Status s = tokenrail::bench::RunProxyRank(argv[argc - 1]);
    if (!s.ok()) std::fprintf(stderr, "proxy rank: %s\n", s.ToString().c_str());
    return s.ok() ? 0 : 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
