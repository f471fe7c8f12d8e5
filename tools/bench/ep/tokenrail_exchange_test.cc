#include "tools/bench/ep/tokenrail_exchange.h"

#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/ep/buffer.h"
#include "runtime/ep/in_process_comm.h"
#include "runtime/ep/wire.h"
#include "tools/bench/ep/check.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/ep/rank_loop.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

EpPlan TinyPlan(ep::EpTopology topo, int max_nodes) {
  EpPlan p;
  p.workload.topology = topo;
  p.workload.tokens = 64;
  p.workload.hidden = 300;
  p.workload.top_k = 3;
  p.workload.max_nodes = max_nodes;
  p.workload.expert = ExpertKind::kLinear;
  p.workload.skew = *ParseSkew("zipf:0.8");
  p.iters = 3;
  p.warmup = 1;
  p.timeout = absl::Seconds(60);
  p.network = "in-process";
  p.daemon_stats = false;
  return p;
}

// Runs `spec` on every rank of an in-process world; the records by rank.
std::vector<Record> RunWorld(const EpPlan& plan, const CaseSpec& spec) {
  const ep::EpTopology& topo = plan.workload.topology;
  ep::InProcessWorld::Options wo;
  wo.nodes = topo.nodes;
  wo.ranks_per_node = topo.ranks_per_node;
  ep::InProcessWorld world(wo);
  std::vector<absl::StatusOr<Record>> out(topo.world_size(), absl::UnknownError("did not run"));
  std::vector<std::thread> threads;
  for (int r = 0; r < topo.world_size(); ++r) {
    threads.emplace_back([&, r] {
      out[r] = [&]() -> absl::StatusOr<Record> {
        CheckOptions co;
        co.dispatch_dtype = spec.dispatch_dtype;
        co.expert_dtype = spec.expert_dtype;
        co.combine_dtype = spec.combine_dtype;
        co.align = plan.align;
        auto checker = Checker::Create(plan.workload, r, co);
        if (!checker.ok()) return checker.status();
        auto buffer = ep::EpBuffer::Create(world.comm(r), MakeEpConfig(plan, spec));
        if (!buffer.ok()) return buffer.status();
        const ep::DType x =
            spec.dispatch_dtype == ep::DType::kFloat32 ? ep::DType::kFloat32 : ep::DType::kBFloat16;
        TokenrailUnderTest under(**buffer, (*checker)->input(), x, plan.timeout);
        auto rec = RunCase(under, **checker, spec, plan, nullptr);
        if (rec.ok()) under.Report(&*rec);
        if (absl::Status s = under.Barrier(); !s.ok()) return s;
        return rec;
      }();
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<Record> records;
  for (int r = 0; r < topo.world_size(); ++r) {
    EXPECT_TRUE(out[r].ok()) << "rank " << r << ": " << out[r].status();
    if (out[r].ok()) records.push_back(std::move(*out[r]));
  }
  return records;
}

struct Case {
  ep::EpTopology topo;
  int max_nodes;
  EngineRouting routing;
  ep::DType dispatch;
  uint64_t buffer_bytes;  // 0: default; small forces chunking
  int64_t align;
};

TEST(TokenrailExchangeTest, VerifiedWithExactInterNodeBytes) {
  const std::vector<Case> cases = {
      {{2, 2, 8}, 2, EngineRouting::kHierarchical, ep::DType::kBFloat16, 0, 1},
      {{2, 2, 8}, 2, EngineRouting::kFlat, ep::DType::kBFloat16, 0, 1},
      {{2, 2, 8}, 2, EngineRouting::kHierarchical, ep::DType::kFp8E4M3, 0, 4},
      {{2, 2, 8}, 1, EngineRouting::kHierarchical, ep::DType::kFloat32, 64 << 10, 1},
      {{1, 3, 6}, 1, EngineRouting::kHierarchical, ep::DType::kBFloat16, 0, 1},
  };
  for (const Case& c : cases) {
    EpPlan plan = TinyPlan(c.topo, c.max_nodes);
    plan.buffer_bytes = c.buffer_bytes;
    plan.align = c.align;
    const ep::DType expert =
        c.dispatch == ep::DType::kFloat32 ? ep::DType::kFloat32 : ep::DType::kBFloat16;
    CaseSpec spec{"case", Impl::kTokenrail, c.routing, c.dispatch, ep::DType::kBFloat16, expert};
    plan.cases = {spec};
    ASSERT_TRUE(Validate(plan).ok()) << Validate(plan);
    SCOPED_TRACE(absl::StrCat(ep::ToString(c.topo), " ", RoutingName(c.routing), " ",
                              ep::DTypeName(c.dispatch)));
    const std::vector<Record> records = RunWorld(plan, spec);
    ASSERT_EQ(records.size(), static_cast<size_t>(c.topo.world_size()));
    const size_t record_bytes =
        StatedDispatchRecordBytes(plan.workload.top_k, plan.workload.hidden, c.dispatch);
    for (const Record& r : records) {
      SCOPED_TRACE(r.ToJson());
      EXPECT_TRUE(*r.GetBool("verified")) << r.GetString("error").value_or("");
      EXPECT_EQ(*r.GetInt("verified_iters"), 4);
      EXPECT_TRUE(*r.GetBool("stable"));
      // (bytes_constant is not asserted: flow-control credits are batched as
      // timing allows, so the inter-node total varies by a few 8-byte credits.)
      const int64_t copies = *r.GetInt(c.routing == EngineRouting::kFlat ? "remote_rank_copies"
                                                                         : "remote_node_copies");
      EXPECT_EQ(*r.GetInt("dispatch_op_inter_record_bytes"),
                copies * static_cast<int64_t>(record_bytes));
    }
  }
}

TEST(TokenrailExchangeTest, StatedRecordBytesMatchTheWireFormat) {
  for (ep::DType d : {ep::DType::kFloat32, ep::DType::kBFloat16, ep::DType::kFp8E4M3}) {
    for (int k : {1, 4, 8, 16}) {
      for (int64_t h : {1, 100, 128, 2048, 7168}) {
        EXPECT_EQ(StatedDispatchRecordBytes(k, h, d), ep::DispatchRecordLayout::Make(k, h, d).size)
            << ep::DTypeName(d) << " k=" << k << " h=" << h;
      }
    }
  }
  EXPECT_EQ(StatedDispatchRecordBytes(4, 2048, ep::DType::kBFloat16), 4144u);
  EXPECT_EQ(StatedDispatchRecordBytes(4, 2048, ep::DType::kFp8E4M3), 2160u);
  EXPECT_EQ(PayloadBytes(2048, ep::DType::kFp8E4M3), 2048u + 64u);
}

}  // namespace
}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
