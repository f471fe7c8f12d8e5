#include "tools/bench/plan.h"

#include "gtest/gtest.h"
#include "tools/bench/baseline.h"
#include "tools/bench/session.h"

namespace tokenrail {
namespace bench {
namespace {

TEST(ParseSizeListTest, RangesListsAndMixes) {
  EXPECT_EQ(*ParseSizeList("8:64"), (std::vector<uint64_t>{8, 16, 32, 64}));
  EXPECT_EQ(ParseSizeList("8:64M")->size(), 24u);
  EXPECT_EQ(ParseSizeList("8:64M")->back(), 64u << 20);
  EXPECT_EQ(*ParseSizeList("1M,8,4K,8"), (std::vector<uint64_t>{8, 4096, 1 << 20}));
  EXPECT_EQ(*ParseSizeList("3:20"), (std::vector<uint64_t>{3, 6, 12, 20}));
  EXPECT_EQ(*ParseSizeList("1,8:16,3000"), (std::vector<uint64_t>{1, 8, 16, 3000}));
  for (const char* bad : {"", "0", "64:8", "8:2G", "1:2:3", "x", "8,,y"}) {
    EXPECT_EQ(ParseSizeList(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParseModesTest, AnyOrderRunsInCanonicalOrder) {
  EXPECT_EQ(*ParseModes("bibw,lat"), (std::vector<Mode>{Mode::kLatency, Mode::kBidirectional}));
  absl::Status s = ParseModes("lat,pingpong").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("pingpong"), absl::string_view::npos);
  EXPECT_FALSE(ParseModes("").ok());
}

TEST(ParseParamsTest, KeyValuePairs) {
  auto p = ParseParams("tls=tcp,net_devices=veth0");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->at("tls"), "tcp");
  EXPECT_EQ(FormatParams(*p), "net_devices=veth0,tls=tcp");
  EXPECT_TRUE(ParseParams("")->empty());
  EXPECT_EQ(ParseParams("a=b=c")->at("a"), "b=c");
  for (const char* bad : {"tls", "=x", "a=1,a=2"}) {
    EXPECT_EQ(ParseParams(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TransportBenchOptions Options() {
  TransportBenchOptions o;
  o.sizes = {8, 1 << 20, 64 << 20};
  o.params = {{"tls", "tcp"}};
  return o;
}

TEST(MakePlanTest, ResolvesIterationsAndSlots) {
  absl::StatusOr<Plan> plan = MakePlan(Options(), "ucx", "lead");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->tests.size(), 9u);
  const TestSpec& lat8 = plan->tests[0];
  EXPECT_EQ(lat8.mode, Mode::kLatency);
  EXPECT_EQ(lat8.iters, 1000u);
  EXPECT_EQ(lat8.warmup, 100u);
  EXPECT_EQ(lat8.slots, 2u);
  EXPECT_EQ(lat8.window, 1u);
  const TestSpec& bw8 = plan->tests[1];
  EXPECT_EQ(bw8.slots, 64u);
  EXPECT_EQ(bw8.window, 64u);
  EXPECT_EQ(bw8.stride, 64u);
  const TestSpec& bw1m = plan->tests[4];
  EXPECT_EQ(bw1m.mode, Mode::kBandwidth);
  EXPECT_EQ(bw1m.iters, 1000u);  // 1 GiB budget
  EXPECT_EQ(bw1m.slots, 8u);     // 8 MiB slot budget
  EXPECT_EQ(bw1m.window, 8u);
  const TestSpec& bw64m = plan->tests[7];
  EXPECT_EQ(bw64m.iters, 16u);
  EXPECT_EQ(bw64m.warmup, 1u);
  EXPECT_EQ(bw64m.slots, 2u);
  EXPECT_EQ(plan->region_bytes, 128u << 20);
}

TEST(MakePlanTest, MinItersBoundsTheReduction) {
  TransportBenchOptions o = Options();
  o.max_bytes = 1 << 20;
  o.min_iters = 25;
  absl::StatusOr<Plan> plan = MakePlan(o, "shm", "lead");
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->tests.back().iters, 25u);
  o.window = 0;
  EXPECT_EQ(MakePlan(o, "shm", "lead").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PlanWireTest, RoundTrips) {
  Plan plan = *MakePlan(Options(), "ucx", "lead");
  plan.corrupt_iteration = 3;
  absl::StatusOr<Plan> back = UnpackPlan(PackPlan(plan));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->backend, "ucx");
  EXPECT_EQ(back->leader_name, "lead");
  EXPECT_EQ(back->params, plan.params);
  EXPECT_EQ(back->region_bytes, plan.region_bytes);
  EXPECT_EQ(back->corrupt_iteration, 3);
  EXPECT_EQ(back->timeout, plan.timeout);
  ASSERT_EQ(back->tests.size(), plan.tests.size());
  for (size_t i = 0; i < plan.tests.size(); ++i) {
    EXPECT_EQ(back->tests[i].mode, plan.tests[i].mode);
    EXPECT_EQ(back->tests[i].size, plan.tests[i].size);
    EXPECT_EQ(back->tests[i].iters, plan.tests[i].iters);
    EXPECT_EQ(back->tests[i].warmup, plan.tests[i].warmup);
    EXPECT_EQ(back->tests[i].window, plan.tests[i].window);
    EXPECT_EQ(back->tests[i].slots, plan.tests[i].slots);
    EXPECT_EQ(back->tests[i].stride, plan.tests[i].stride);
  }
}

TEST(PlanWireTest, RejectsCorruptTruncatedAndInconsistent) {
  Plan plan = *MakePlan(Options(), "ucx", "lead");
  const std::string blob = PackPlan(plan);
  std::string flipped = blob;
  flipped[blob.size() / 2] ^= 0x10;
  EXPECT_EQ(UnpackPlan(flipped).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnpackPlan(blob.substr(0, blob.size() - 3)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnpackPlan("").status().code(), absl::StatusCode::kInvalidArgument);
  // A well-formed plan whose slots would overrun its region.
  Plan bad = plan;
  bad.tests[4].slots = 1000;
  absl::Status s = UnpackPlan(PackPlan(bad)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("inconsistent test 4"), absl::string_view::npos) << s;
}

TEST(ResultWireTest, RoundTripsStatusAndCounts) {
  SideResult r;
  r.verify = absl::DataLossError("data mismatch: size 8");
  r.received = 1100;
  r.full_checks = 2;
  r.send_ns = 123456789;
  absl::StatusOr<SideResult> back = UnpackSideResult(PackSideResult(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->verify, r.verify);
  EXPECT_EQ(back->received, 1100u);
  EXPECT_EQ(back->full_checks, 2u);
  EXPECT_EQ(back->send_ns, 123456789);
  std::string blob = PackSideResult(r);
  blob[20] ^= 1;
  EXPECT_EQ(UnpackSideResult(blob).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(UnpackStatus(PackStatus(absl::OkStatus()))->ok());
}

TEST(MemcpyBaselineTest, MeasuresPositiveBandwidth) {
  TestSpec t;
  t.mode = Mode::kBandwidth;
  t.size = 256 << 10;
  t.stride = t.size;
  t.slots = 4;
  t.window = 4;
  t.warmup = 4;
  t.iters = 64;
  absl::StatusOr<BaselineResult> r = RunMemcpyBaseline(t);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->name, "memcpy");
  EXPECT_GT(r->gbytes_per_s, 0.1);
  EXPECT_EQ(r->per_op_us.count, 16u);
  EXPECT_GT(r->per_op_us.p50, 0);
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail
