// Smoke test of `tokenrail-bench ep` end to end (CI): the real binary, a
// tiny shape, a 1x2 and a 2x1 loopback cluster, the MPI baseline with 2
// processes when mpirun is installed. Checks that every case ran verified,
// that the output parses, and that the byte accounting is exact.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace {

bool HaveMpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

struct BenchRun {
  int exit_code = -1;
  std::vector<Record> records;
  std::string text;
};

BenchRun RunBench(const std::vector<std::string>& flags) {
  const char* bin = std::getenv("TR_BENCH");
  std::string cmd = absl::StrCat(bin != nullptr ? bin : "tools/tokenrail-bench", " ep");
  for (const std::string& f : flags) absl::StrAppend(&cmd, " '", f, "'");
  BenchRun run;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return run;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) run.text.append(buf, n);
  const int status = ::pclose(p);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  for (absl::string_view line : absl::StrSplit(run.text, '\n', absl::SkipWhitespace())) {
    absl::StatusOr<Record> r = Record::ParseJson(line);
    EXPECT_TRUE(r.ok()) << "unparsable output line: " << line;
    if (r.ok()) run.records.push_back(std::move(*r));
  }
  return run;
}

TEST(EpBenchTest, TinyClustersVerifiedAndParsed) {
  const bool mpi = HaveMpirun();
  const BenchRun run = RunBench(
      {"--json", "--topologies=1x2,2x1", "--tokens=64", "--hidden=256", "--experts=4", "--top_k=2",
       "--max_nodes=2", "--dtypes=bf16,fp8", "--expert_fn=linear", "--skew=zipf:1", "--ep_iters=3",
       "--ep_warmup=1", "--ep_network=loopback", "--ucx_sizes=64K", "--timeout=60s",
       mpi ? "--ep_baselines=mpi,flat,ucx" : "--ep_baselines=flat,ucx"});
  ASSERT_EQ(run.exit_code, 0) << run.text;
  std::map<std::string, const Record*> cases;
  int ucx = 0;
  std::map<std::string, const Record*> ratios;
  for (const Record& r : run.records) {
    const std::string bench = r.GetString("bench").value_or("");
    if (bench == "ep") {
      const std::string key = absl::StrCat(*r.GetString("topology"), "/", *r.GetString("impl"), "/",
                                           *r.GetString("routing"), "/", *r.GetString("dtype"));
      cases[key] = &r;
      EXPECT_TRUE(*r.GetBool("verified")) << r.ToJson();
      EXPECT_TRUE(r.GetBool("stable").value_or(false)) << r.ToJson();
      EXPECT_GT(*r.GetDouble("roundtrip_p50_us"), 0) << r.ToJson();
      EXPECT_GT(*r.GetDouble("dispatch_gbps"), 0) << r.ToJson();
      if (*r.GetString("topology") == "2x1") {
        EXPECT_TRUE(*r.GetBool("internode_exact")) << r.ToJson();
        EXPECT_GT(*r.GetInt("internode_record_bytes"), 0) << r.ToJson();
      }
    } else if (bench == "ep_ucx") {
      ++ucx;
      EXPECT_GT(*r.GetDouble("gbytes_per_s"), 0) << r.ToJson();
    } else if (bench == "ep_ratio") {
      ratios[absl::StrCat(*r.GetString("what"), "/", *r.GetString("topology"))] = &r;
    }
  }
  for (const char* key :
       {"1x2/tokenrail/hier/bf16", "1x2/tokenrail/hier/fp8_e4m3", "2x1/tokenrail/hier/bf16",
        "2x1/tokenrail/hier/fp8_e4m3", "2x1/tokenrail/flat/bf16"}) {
    EXPECT_EQ(cases.count(key), 1u) << key << "\n" << run.text;
  }
  if (mpi) {
    EXPECT_EQ(cases.count("1x2/mpi/-/bf16"), 1u) << run.text;
    EXPECT_EQ(cases.count("1x2/mpi/-/fp8_e4m3"), 1u) << run.text;
    EXPECT_EQ(ratios.count("roundtrip speedup vs MPI_Alltoallv/1x2"), 1u) << run.text;
  }
  EXPECT_EQ(ucx, 2) << run.text;  // bw and bibw at 64K
  EXPECT_EQ(ratios.count("roundtrip speedup vs flat routing/2x1"), 1u) << run.text;
  EXPECT_EQ(ratios.count("fp8 / bf16 dispatch bytes/2x1"), 1u) << run.text;
  EXPECT_EQ(ratios.count("inter-node GB/s during dispatch / UCX tcp put bw/2x1"), 1u) << run.text;
  // Records: 256 FP8 codes + 8 B of scales vs 512 B of BF16 per token, 288
  // vs 544 B with their headers (0.529); chunk headers, counts and credits,
  // the same for both, weigh more at 64 tokens than at the target shape.
  const Record* fp8 = ratios["fp8 / bf16 dispatch bytes/2x1"];
  ASSERT_NE(fp8, nullptr);
  EXPECT_GT(*fp8->GetDouble("value"), 0.529);
  EXPECT_LT(*fp8->GetDouble("value"), 0.6);
}

TEST(EpBenchTest, UsageErrors) {
  EXPECT_EQ(RunBench({"--topologies=2y2"}).exit_code, 2);
  // A repeated topology would run twice and mix its rows in the ratios.
  EXPECT_EQ(RunBench({"--topologies=1x2,2x1,1x2"}).exit_code, 2);
  EXPECT_EQ(RunBench({"--experts=5", "--topologies=2x2"}).exit_code, 1);  // not divisible
  EXPECT_EQ(RunBench({"--dtypes=int8"}).exit_code, 2);
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail
