// Smoke test of the barrier benchmark: a small run, every payload verified,
// sane statistics, records and table. (Targets are reported, not asserted.)
#include "tools/bench/barrier_bench.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace tokenrail {
namespace bench {
namespace {

TEST(BarrierBenchTest, SmallRunVerifiesEveryPayload) {
  BarrierBenchOptions o;
  o.participants = 8;
  o.rounds = 30;
  o.warmup = 5;
  o.payload_bytes = 64;
  absl::StatusOr<BarrierBenchResult> r = RunBarrierBench(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payloads_verified, 35u * 8 * 8);
  EXPECT_EQ(r->release_us.count, 30u * 8);
  EXPECT_EQ(r->round_us.count, 30u);
  EXPECT_EQ(r->call_us.count, 30u * 8);
  EXPECT_GT(r->release_us.p50, 0);
  EXPECT_GE(r->release_us.p99, r->release_us.p50);
  EXPECT_GE(r->round_us.max, r->round_us.p50);
  // A participant's call spans its wait for the last arrival too.
  EXPECT_GE(r->call_us.max, r->release_us.p50);
  EXPECT_GT(r->rounds_per_second, 0);

  std::vector<Record> records = BarrierRecords(*r);
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(r->baseline_round_us.count, 30u);
  EXPECT_GT(r->baseline_round_us.p50, 0);
  EXPECT_EQ(*records[3].GetString("metric"), "unary_fanout_round");
  EXPECT_EQ(*records[0].GetString("metric"), "release");
  EXPECT_TRUE(records[0].GetBool("meets_target").ok());
  EXPECT_FALSE(records[1].Has("meets_target"));
  EXPECT_EQ(*records[2].GetInt("participants"), 8);
  const std::string json = records[0].ToJson();
  EXPECT_TRUE(absl::StrContains(json, "\"bench\":\"barrier\"")) << json;
  EXPECT_TRUE(Record::ParseJson(json).ok());
  const Table table = BarrierTable();
  EXPECT_TRUE(absl::StrContains(table.Header(), "p50 us"));
  EXPECT_TRUE(absl::StrContains(table.Row(records[0]), "release"));
}

TEST(BarrierBenchTest, SixtyFourParticipantsFewRounds) {
  BarrierBenchOptions o;
  o.rounds = 5;
  o.warmup = 1;
  absl::StatusOr<BarrierBenchResult> r = RunBarrierBench(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payloads_verified, 6u * 64 * 64);
}

TEST(BarrierBenchTest, RejectsBadOptions) {
  BarrierBenchOptions o;
  o.participants = 0;
  EXPECT_EQ(RunBarrierBench(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = BarrierBenchOptions();
  o.payload_bytes = 4;
  absl::Status s = o.Validate();
  EXPECT_TRUE(absl::StrContains(s.message(), "payload_bytes=4")) << s;
  o = BarrierBenchOptions();
  o.payload_bytes = 1 << 20;
  o.participants = 100;
  EXPECT_TRUE(absl::StrContains(o.Validate().message(), "64 MiB")) << o.Validate();
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail

namespace tokenrail {
namespace bench {
namespace {

// The full benchmark (64 participants, 1000 rounds), for a manual run:
//   bazel test //tools/bench:barrier_bench_test --test_output=all
//     --test_arg=--gtest_also_run_disabled_tests --test_arg=--gtest_filter=*FullRun*
TEST(BarrierBenchTest, DISABLED_FullRunPrintsReport) {
  // Debian's abseil is built without NDEBUG, so absl::Mutex (which gRPC uses
  // internally too) runs deadlock detection on every lock: off, as in a
  // production binary.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::StatusOr<BarrierBenchResult> r = RunBarrierBench(BarrierBenchOptions());
  ASSERT_TRUE(r.ok()) << r.status();
  const Table table = BarrierTable();
  std::printf("%s", table.Header().c_str());
  for (const Record& record : BarrierRecords(*r)) std::printf("%s", table.Row(record).c_str());
  for (const Record& record : BarrierRecords(*r)) std::printf("%s\n", record.ToJson().c_str());
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail
