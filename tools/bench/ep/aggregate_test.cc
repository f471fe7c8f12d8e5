#include "tools/bench/ep/aggregate.h"

#include "gtest/gtest.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

EpPlan Plan() {
  EpPlan p;
  p.workload.topology = ep::EpTopology{2, 1, 4};
  p.workload.tokens = 10;
  p.workload.hidden = 128;
  p.workload.top_k = 2;
  p.workload.max_nodes = 2;
  p.iters = 3;
  p.network = "loopback";
  p.cases = {{"tokenrail/hier/bf16", Impl::kTokenrail, EngineRouting::kHierarchical,
              ep::DType::kBFloat16, ep::DType::kBFloat16, ep::DType::kBFloat16}};
  return p;
}

Record RankRecord(int rank, const std::string& d, const std::string& c, int64_t remote_nodes) {
  Record r;
  r.Set("case", "tokenrail/hier/bf16").Set("rank", rank);
  r.Set("dispatch_us", d).Set("combine_us", c);
  r.Set("verified", true).Set("stable", true).Set("recv_tokens", int64_t{8});
  r.Set("dispatch_intra_bytes", int64_t{0}).Set("dispatch_inter_bytes", int64_t{1000});
  r.Set("combine_intra_bytes", int64_t{0}).Set("combine_inter_bytes", int64_t{500});
  const int64_t rec = static_cast<int64_t>(StatedDispatchRecordBytes(2, 128, ep::DType::kBFloat16));
  r.Set("remote_node_copies", remote_nodes);
  r.Set("dispatch_op_inter_record_bytes", remote_nodes * rec);
  r.Set("dispatch_op_inter_metadata_bytes", int64_t{64});
  r.Set("dispatch_op_inter_credit_bytes", int64_t{8});
  r.Set("tokens_per_expert", "4,2,2,0");
  return r;
}

TEST(AggregateTest, FoldsRanks) {
  const EpPlan p = Plan();
  std::vector<Record> recs = {RankRecord(1, "10,20,30", "5,5,5", 4),
                              RankRecord(0, "15,10,40", "1,9,2", 3)};
  Record r0 = recs[1];
  r0.Set("daemon_dispatch_inter_bytes",
         int64_t{2 * 72} + 7 * int64_t(StatedDispatchRecordBytes(2, 128, ep::DType::kBFloat16)));
  r0.Set("daemon_combine_inter_bytes", int64_t{9});
  recs[1] = r0;
  auto row = AggregateCase(p, p.cases[0], recs);
  ASSERT_TRUE(row.ok()) << row.status();
  // Per iteration max: dispatch 15,20,40 -> p50 20; combine 5,9,5 -> p50 5;
  // round trip 20,29,45 -> p50 29.
  EXPECT_DOUBLE_EQ(*row->GetDouble("dispatch_p50_us"), 20);
  EXPECT_DOUBLE_EQ(*row->GetDouble("combine_p50_us"), 5);
  EXPECT_DOUBLE_EQ(*row->GetDouble("roundtrip_p50_us"), 29);
  // 8 tokens x 256 B / 20 us.
  EXPECT_NEAR(*row->GetDouble("dispatch_gbps"), 8 * 256 / 20e3, 1e-12);
  EXPECT_TRUE(*row->GetBool("internode_exact"));
  EXPECT_EQ(*row->GetInt("internode_metadata_bytes"), 2 * 72);
  EXPECT_TRUE(*row->GetBool("daemon_match"));
  // 2000 inter-node bytes over 2 nodes per 20 us.
  EXPECT_NEAR(*row->GetDouble("internode_gbps"), 1000 / 20e3, 1e-12);
  EXPECT_DOUBLE_EQ(*row->GetDouble("imbalance"), 8.0 / 4.0);
  EXPECT_TRUE(*row->GetBool("verified"));

  // A wrong record count is not exact.
  recs[0].Set("dispatch_op_inter_record_bytes", int64_t{1});
  EXPECT_FALSE(*AggregateCase(p, p.cases[0], recs)->GetBool("internode_exact"));
  // A failed rank fails the row and names it.
  recs[0].Set("verified", false).Set("error", "DATA_LOSS: row 3");
  auto bad = AggregateCase(p, p.cases[0], recs);
  EXPECT_FALSE(*bad->GetBool("verified"));
  EXPECT_NE(bad->GetString("error")->find("rank 1: DATA_LOSS: row 3"), std::string::npos);
}

TEST(AggregateTest, SaysWhyDaemonStatsAreMissing) {
  const EpPlan p = Plan();
  // Rank 0 (the querier) could not reach the daemons: the row passes its
  // reason on and compares nothing.
  std::vector<Record> recs = {RankRecord(1, "10,20,30", "5,5,5", 4),
                              RankRecord(0, "15,10,40", "1,9,2", 3)};
  recs[1].Set("daemon_stats", "unavailable: no coordinator port");
  auto row = AggregateCase(p, p.cases[0], recs);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(*row->GetString("daemon_stats"), "unavailable: no coordinator port");
  EXPECT_FALSE(row->Has("daemon_match"));
  EXPECT_FALSE(row->Has("daemon_dispatch_inter_bytes"));
  // Only rank 0's record speaks for the daemons.
  recs[1] = RankRecord(0, "15,10,40", "1,9,2", 3);
  recs[0].Set("daemon_stats", "unavailable: rank 1");
  row = AggregateCase(p, p.cases[0], recs);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_FALSE(row->Has("daemon_stats"));
  EXPECT_FALSE(row->Has("daemon_match"));
}

TEST(AggregateTest, RejectsMissingOrDisagreeingRanks) {
  const EpPlan p = Plan();
  EXPECT_FALSE(AggregateCase(p, p.cases[0], {RankRecord(0, "1,2,3", "1,2,3", 1)}).ok());
  EXPECT_FALSE(
      AggregateCase(p, p.cases[0],
                    {RankRecord(0, "1,2,3", "1,2,3", 1), RankRecord(0, "1,2,3", "1,2,3", 1)})
          .ok());
  auto s = AggregateCase(p, p.cases[0],
                         {RankRecord(0, "1,2,3", "1,2,3", 1), RankRecord(1, "1,2", "1,2", 1)});
  EXPECT_NE(s.status().message().find("2 dispatch_us samples, expected 3"), std::string::npos)
      << s.status();
}

Record Row(const std::string& topo, const std::string& impl, const std::string& routing,
           const std::string& dtype, double rt, int64_t bytes) {
  Record r;
  r.Set("topology", topo).Set("impl", impl).Set("routing", routing).Set("dtype", dtype);
  r.Set("roundtrip_p50_us", rt).Set("dispatch_p50_us", rt / 2).Set("combine_p50_us", rt / 2);
  r.Set("dispatch_bytes", bytes).Set("internode_record_bytes", bytes / 2);
  r.Set("internode_gbps", 1.4);
  return r;
}

TEST(AggregateTest, RatiosWithTargets) {
  const std::vector<Record> rows = {Row("1x4", "mpi", "-", "bf16", 140, 100),
                                    Row("1x4", "tokenrail", "hier", "bf16", 100, 100),
                                    Row("2x2", "tokenrail", "hier", "bf16", 100, 1000),
                                    Row("2x2", "tokenrail", "flat", "bf16", 110, 1500),
                                    Row("2x2", "tokenrail", "hier", "fp8_e4m3", 80, 520)};
  Record u1, u2;
  u1.Set("topology", "2x2").Set("mode", "bw").Set("gbytes_per_s", 2.0);
  u2.Set("topology", "2x2").Set("mode", "bibw").Set("gbytes_per_s", 3.0);
  const std::vector<Record> ratios = Ratios(rows, {u1, u2});
  std::map<std::string, const Record*> by;
  for (const Record& r : ratios) {
    by[*r.GetString("what") + "/" + *r.GetString("topology") + "/" + *r.GetString("dtype")] = &r;
  }
  const Record* mpi = by["roundtrip speedup vs MPI_Alltoallv/1x4/bf16"];
  ASSERT_NE(mpi, nullptr);
  EXPECT_DOUBLE_EQ(*mpi->GetDouble("value"), 1.4);
  EXPECT_TRUE(*mpi->GetBool("met"));
  const Record* flat = by["roundtrip speedup vs flat routing/2x2/bf16"];
  ASSERT_NE(flat, nullptr);
  EXPECT_NEAR(*flat->GetDouble("value"), 1.1, 1e-12);
  EXPECT_FALSE(*flat->GetBool("met"));
  const Record* bytes = by["inter-node bytes hier / flat/2x2/bf16"];
  ASSERT_NE(bytes, nullptr);
  EXPECT_NEAR(*bytes->GetDouble("value"), 1000.0 / 1500.0, 1e-12);
  const Record* fp8 = by["fp8 / bf16 dispatch bytes/2x2/fp8_e4m3"];
  ASSERT_NE(fp8, nullptr);
  EXPECT_NEAR(*fp8->GetDouble("value"), 0.52, 1e-12);
  EXPECT_TRUE(*fp8->GetBool("met"));
  const Record* ucx = by["inter-node GB/s during dispatch / UCX tcp put bw/2x2/bf16"];
  ASSERT_NE(ucx, nullptr);
  EXPECT_NEAR(*ucx->GetDouble("value"), 0.7, 1e-12);
  EXPECT_TRUE(*ucx->GetBool("met"));
  EXPECT_NE(by["inter-node GB/s during dispatch / (UCX tcp bibw / 2)/2x2/bf16"], nullptr);
}

}  // namespace
}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
