#include "tools/bench/ep/mpi_baseline.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/ep/rank_loop.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

bool HaveMpirun() {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    if (::access((dirs.substr(start, end - start) + "/mpirun").c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

EpPlan TinyPlan() {
  EpPlan p;
  p.workload.topology = ep::EpTopology{1, 2, 4};
  p.workload.tokens = 48;
  // Not a multiple of the FP8 tile, and a size where padding the whole
  // record (not the header first) would give a smaller record: 624 B
  // instead of tokenrail's 640 B for BF16 with top-2.
  p.workload.hidden = 300;
  p.workload.top_k = 2;
  p.workload.max_nodes = 1;
  p.workload.expert = ExpertKind::kLinear;
  p.workload.skew = *ParseSkew("zipf:1");
  p.cases = {
      {"mpi/bf16", Impl::kMpi, EngineRouting::kHierarchical, ep::DType::kBFloat16,
       ep::DType::kBFloat16, ep::DType::kBFloat16},
      {"mpi/fp8", Impl::kMpi, EngineRouting::kHierarchical, ep::DType::kFp8E4M3,
       ep::DType::kBFloat16, ep::DType::kBFloat16},
      {"mpi/fp32", Impl::kMpi, EngineRouting::kHierarchical, ep::DType::kFloat32,
       ep::DType::kFloat32, ep::DType::kFloat32},
  };
  p.iters = 3;
  p.warmup = 1;
  p.align = 4;
  p.network = "shm";
  p.timeout = absl::Seconds(60);
  return p;
}

MpiRunOptions Options() {
  MpiRunOptions o;
  const char* rank = std::getenv("TR_EP_MPI_RANK");
  if (rank != nullptr) o.rank_path = rank;
  o.timeout = absl::Seconds(120);
  return o;
}

TEST(MpiBaselineTest, RunsEveryDtypeVerified) {
  if (!HaveMpirun()) GTEST_SKIP() << "mpirun not installed (Debian package openmpi-bin)";
  const EpPlan plan = TinyPlan();
  absl::StatusOr<std::vector<Record>> records = RunMpiBaseline(plan, Options());
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 6u);
  for (size_t i = 0; i < records->size(); ++i) {
    const Record& r = (*records)[i];
    SCOPED_TRACE(r.ToJson());
    EXPECT_EQ(*r.GetString("case"), plan.cases[i / 2].name);
    EXPECT_EQ(*r.GetInt("rank"), static_cast<int64_t>(i % 2));
    EXPECT_TRUE(*r.GetBool("verified")) << r.GetString("error").value_or("");
    EXPECT_EQ(*r.GetInt("verified_iters"), 4);  // every iteration (verify_every = 1)
    EXPECT_GT(*r.GetInt("rows"), 0);
    EXPECT_GT(*r.GetInt("rows_checked"), 0);
    EXPECT_EQ(*r.GetInt("fp8_inexact_rows"), 0);
    EXPECT_TRUE(*r.GetBool("stable"));
    EXPECT_TRUE(*r.GetBool("bytes_constant"));
    auto d = SplitSamples(*r.GetString("dispatch_us"));
    auto c = SplitSamples(*r.GetString("combine_us"));
    ASSERT_TRUE(d.ok() && c.ok());
    EXPECT_EQ(d->size(), 3u);
    EXPECT_EQ(c->size(), 3u);
    for (double v : *d) EXPECT_GT(v, 0);
    EXPECT_GT(*r.GetInt("dispatch_intra_bytes"), 0);
    EXPECT_EQ(*r.GetInt("dispatch_inter_bytes"), 0);
    // The MPI records are as large as tokenrail's: both move the same bytes.
    const CaseSpec& spec = plan.cases[i / 2];
    EXPECT_EQ(*r.GetInt("record_bytes"),
              static_cast<int64_t>(StatedDispatchRecordBytes(
                  plan.workload.top_k, plan.workload.hidden, spec.dispatch_dtype)));
  }
  EXPECT_EQ(*(*records)[0].GetInt("record_bytes"), 640);  // bf16
  // FP8 records are smaller than BF16 ones: 300 codes + 3 scales vs 600 B.
  EXPECT_EQ(*(*records)[2].GetInt("record_bytes"), 352);
}

TEST(MpiBaselineTest, CommandPinsSharedMemory) {
  const std::vector<std::string> argv = MpiCommand(TinyPlan(), "mpirun", "rank");
  const std::string line = absl::StrJoin(argv, " ");
  EXPECT_NE(line.find("-np 2"), std::string::npos);
  EXPECT_NE(line.find("--mca btl vader,self"), std::string::npos);
  EXPECT_NE(line.find("--oversubscribe"), std::string::npos);
  EXPECT_EQ(argv[argv.size() - 2], "rank");
  EXPECT_TRUE(IsPlanArgument(argv.back()));
}

TEST(MpiBaselineTest, MissingRankProgramIsUnavailable) {
  if (!HaveMpirun()) GTEST_SKIP() << "mpirun not installed";
  MpiRunOptions o = Options();
  o.rank_path = "/nonexistent/ep_mpi_rank";
  EXPECT_EQ(RunMpiBaseline(TinyPlan(), o).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
