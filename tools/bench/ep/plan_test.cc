#include "tools/bench/ep/plan.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

EpPlan Plan() {
  EpPlan p;
  p.workload.topology = ep::EpTopology{2, 2, 16};
  p.workload.tokens = 4096;
  p.workload.hidden = 2048;
  p.workload.top_k = 4;
  p.workload.max_nodes = 2;
  p.workload.skew = *ParseSkew("hot:3:2.5");
  p.workload.expert = ExpertKind::kLinear;
  p.workload.seed = 99;
  p.cases.push_back({"tokenrail/hier/bf16", Impl::kTokenrail, EngineRouting::kHierarchical,
                     ep::DType::kBFloat16, ep::DType::kBFloat16, ep::DType::kBFloat16});
  p.cases.push_back({"tokenrail/flat/fp8", Impl::kTokenrail, EngineRouting::kFlat,
                     ep::DType::kFp8E4M3, ep::DType::kFloat32, ep::DType::kFloat32});
  p.iters = 30;
  p.warmup = 4;
  p.verify_every = 5;
  p.align = 8;
  p.buffer_bytes = 1 << 20;
  p.network = "netns";
  p.daemon_stats = false;
  p.ucx = true;
  p.ucx_sizes = {65536, 1 << 20};
  p.ucx_params = {{"tls", "tcp"}, {"net_devices", "eth0"}};
  p.hosts = {"10.99.0.1", "10.99.0.2"};
  p.timeout = absl::Seconds(77);
  return p;
}

TEST(PlanTest, RoundTrips) {
  const EpPlan p = Plan();
  ASSERT_TRUE(Validate(p).ok()) << Validate(p);
  const std::string arg = EncodePlan(p);
  EXPECT_TRUE(IsPlanArgument(arg));
  auto q = DecodePlan(arg);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(EncodePlan(*q), arg);
  EXPECT_EQ(q->workload.topology, p.workload.topology);
  EXPECT_EQ(q->workload.skew.hot_expert, 3);
  EXPECT_EQ(q->workload.expert, ExpertKind::kLinear);
  ASSERT_EQ(q->cases.size(), 2u);
  EXPECT_EQ(q->cases[1].name, "tokenrail/flat/fp8");
  EXPECT_EQ(q->cases[1].routing, EngineRouting::kFlat);
  EXPECT_EQ(q->cases[1].dispatch_dtype, ep::DType::kFp8E4M3);
  EXPECT_EQ(q->cases[1].expert_dtype, ep::DType::kFloat32);
  EXPECT_EQ(q->iters, 30u);
  EXPECT_EQ(q->verify_every, 5u);
  EXPECT_EQ(q->align, 8);
  EXPECT_EQ(q->hosts[1], "10.99.0.2");
  EXPECT_EQ(q->ucx_params.at("net_devices"), "eth0");
  EXPECT_EQ(q->timeout, absl::Seconds(77));
}

TEST(PlanTest, RejectsMalformedArguments) {
  const std::string arg = EncodePlan(Plan());
  EXPECT_EQ(DecodePlan("proxy-plan:00").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodePlan("ep-plan:xyz").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodePlan(arg.substr(0, arg.size() - 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Flip one payload nibble: the checksum names the corruption.
  std::string corrupt = arg;
  char& c = corrupt[40];
  c = c == '0' ? '1' : '0';
  EXPECT_EQ(DecodePlan(corrupt).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PlanTest, ValidateNamesTheProblem) {
  EpPlan p = Plan();
  p.cases.push_back(p.cases[0]);
  EXPECT_NE(Validate(p).message().find("repeated"), std::string::npos);
  p = Plan();
  p.cases[0].impl = Impl::kMpi;
  p.cases[0].routing = EngineRouting::kFlat;
  EXPECT_NE(Validate(p).message().find("no routing choice"), std::string::npos);
  p = Plan();
  p.cases[0].expert_dtype = ep::DType::kFloat32;  // bf16 dispatch, fp32 experts
  EXPECT_NE(Validate(p).message().find("not a supported combination"), std::string::npos);
  p = Plan();
  p.iters = 0;
  EXPECT_NE(Validate(p).message().find("iters=0"), std::string::npos);
  p = Plan();
  p.hosts.pop_back();
  EXPECT_NE(Validate(p).message().find("1 given"), std::string::npos);
  p = Plan();
  p.workload.max_nodes = 3;
  EXPECT_EQ(Validate(p).code(), absl::StatusCode::kInvalidArgument);
  p = Plan();
  p.cases.clear();
  EXPECT_NE(Validate(p).message().find("0 cases"), std::string::npos);
}

}  // namespace
}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
