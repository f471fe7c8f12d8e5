// Smoke test of the real `tokenrail-bench` binary, as CI runs it: two
// processes per backend with tiny sizes and iteration counts. Checks that the
// output parses, every row is verified, numbers are positive, the baseline
// is there, and that exit codes tell success, usage errors and corrupted
// data apart. It asserts no timing targets (those live in issue notes).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace {

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string BenchPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr) return "tools/tokenrail-bench";
  return absl::StrCat(srcdir, "/", workspace ? workspace : "tokenrail", "/tools/tokenrail-bench");
}

RunResult RunBench(const std::string& args) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string err_path = absl::StrCat(tmp ? tmp : "/tmp", "/bench_stderr.txt");
  const std::string cmd = absl::StrCat(BenchPath(), " ", args, " 2>", err_path);
  RunResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream err(err_path);
  std::stringstream ss;
  ss << err.rdbuf();
  r.err = ss.str();
  return r;
}

std::vector<Record> ParseRows(const std::string& out) {
  std::vector<Record> rows;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    absl::StatusOr<Record> r = Record::ParseJson(line);
    EXPECT_TRUE(r.ok()) << r.status() << " in line: " << line;
    if (r.ok()) rows.push_back(*std::move(r));
  }
  return rows;
}

// True when `info` reports the backend as usable here; the backend must be
// linked into the binary either way (a missing one is a build bug, not a skip).
bool Available(const std::string& backend) {
  RunResult r = RunBench(absl::StrCat("info --json --backend=", backend));
  EXPECT_EQ(r.exit_code, 0) << backend << " is not linked into tokenrail-bench: " << r.err;
  return r.exit_code == 0 && r.out.find("\"available\":true") != std::string::npos;
}

// Runs a tiny sweep and checks every row; returns the rows.
std::vector<Record> RunAndCheck(const std::string& backend, const std::string& extra) {
  const RunResult r = RunBench(
      absl::StrCat("transport --json --backend=", backend,
                   " --sizes=8,4K,1M --iters=40 --warmup=4 --window=8 --timeout=60s ", extra));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<Record> rows = ParseRows(r.out);
  EXPECT_EQ(rows.size(), 9u) << r.out << r.err;  // 3 sizes x lat, bw, bibw
  for (const Record& row : rows) {
    SCOPED_TRACE(row.ToJson());
    EXPECT_EQ(*row.GetString("bench"), "transport");
    EXPECT_EQ(*row.GetString("backend"), backend);
    EXPECT_TRUE(*row.GetBool("verified"));
    EXPECT_EQ(*row.GetInt("iters"), 40);
    EXPECT_GT(*row.GetDouble("p50_us"), 0);
    EXPECT_GE(*row.GetDouble("p99_us"), *row.GetDouble("p50_us"));
    EXPECT_GT(*row.GetDouble("min_us"), 0);
    EXPECT_GT(*row.GetDouble("gbytes_per_s"), 0);
    // Both sides checked every message, two of them byte by byte at least.
    EXPECT_EQ(*row.GetInt("checked"), *row.GetString("mode") == "bw" ? 44 : 88);
    EXPECT_GE(*row.GetInt("full_checks"), 2);
    const std::string mode = *row.GetString("mode");
    if (mode != "lat") {
      EXPECT_EQ(*row.GetString("baseline"), "memcpy");
      EXPECT_GT(*row.GetDouble("baseline_gbytes_per_s"), 0);
      EXPECT_GT(*row.GetDouble("ratio"), 0);
    }
    if (mode == "bibw") {
      EXPECT_GT(*row.GetDouble("fwd_gbytes_per_s"), 0);
      EXPECT_GT(*row.GetDouble("rev_gbytes_per_s"), 0);
    }
  }
  return rows;
}

TEST(TransportBenchTest, InfoListsBackends) {
  const RunResult json = RunBench("info --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  std::vector<std::string> names;
  for (absl::string_view line : absl::StrSplit(json.out, '\n', absl::SkipEmpty())) {
    EXPECT_EQ(line.substr(0, 12), "{\"backend\":\"");
    EXPECT_NE(line.find("\"params\":["), absl::string_view::npos);
    names.push_back(std::string(line.substr(12, line.find('"', 12) - 12)));
  }
  EXPECT_NE(std::find(names.begin(), names.end(), "shm"), names.end()) << json.out;
  const RunResult text = RunBench("info");
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("# Transport: shm"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("status:"), std::string::npos);
}

TEST(TransportBenchTest, ShmTwoProcesses) {
  ASSERT_TRUE(Available("shm")) << "the shm backend must work on every host";
  RunAndCheck("shm", "");
}

TEST(TransportBenchTest, UcxTwoProcesses) {
  if (!Available("ucx")) GTEST_SKIP() << "ucx backend unavailable here";
  RunAndCheck("ucx", "");
}

TEST(TransportBenchTest, UcxOverTcpTwoProcesses) {
  if (!Available("ucx")) GTEST_SKIP() << "ucx backend unavailable here";
  std::vector<Record> rows = RunAndCheck("ucx", "--params=tls=tcp");
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(*rows[0].GetString("params"), "tls=tcp");
}

// A free TCP port on loopback (bound, then released for the benchmark).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return -1;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(TransportBenchTest, TwoHostModeListenAndConnect) {
  // The two-host flags over loopback: the --listen side follows the plan
  // the --connect side sends (sizes, iterations, backend and params).
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string server_cmd =
      absl::StrCat(BenchPath(), " transport --listen=127.0.0.1:", port, " --timeout=60s 2>&1");
  FILE* server = ::popen(server_cmd.c_str(), "r");
  ASSERT_NE(server, nullptr);
  const RunResult client = RunBench(absl::StrCat(
      "transport --json --backend=shm --sizes=64,64K --tests=lat,bibw --iters=30 --warmup=3 "
      "--connect=127.0.0.1:",
      port));
  std::string server_out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), server)) > 0) server_out.append(buf, n);
  const int status = ::pclose(server);
  EXPECT_EQ(client.exit_code, 0) << client.err;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << server_out;
  EXPECT_NE(server_out.find("follower ran 4 tests"), std::string::npos) << server_out;
  std::vector<Record> rows = ParseRows(client.out);
  ASSERT_EQ(rows.size(), 4u) << client.out;
  for (const Record& row : rows) {
    EXPECT_TRUE(*row.GetBool("verified")) << row.ToJson();
    EXPECT_EQ(*row.GetInt("iters"), 30);
  }
}

TEST(TransportBenchTest, TableIsTheDefault) {
  const RunResult r =
      RunBench("transport --backend=shm --sizes=64 --tests=lat,bw --iters=20 --warmup=2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 6u) << r.out;  // 2 comment lines, header, rule, 2 rows
  EXPECT_EQ(lines[0].substr(0, 16), "# transport shm ");
  EXPECT_NE(lines[2].find("GB/s"), std::string::npos);
  EXPECT_EQ(lines[4].substr(0, 4), "lat ");
  EXPECT_EQ(lines[5].substr(0, 4), "bw  ");
  EXPECT_NE(lines[5].find("yes"), std::string::npos);
}

TEST(TransportBenchTest, CorruptedDataFailsTheRun) {
  const RunResult r = RunBench(
      "transport --json --backend=shm --sizes=4K --tests=bw,lat --iters=20 --warmup=2 "
      "--corrupt_iteration=7");
  EXPECT_EQ(r.exit_code, 1);
  std::vector<Record> rows = ParseRows(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out << r.err;
  for (const Record& row : rows) {
    EXPECT_FALSE(*row.GetBool("verified")) << row.ToJson();
    // Iteration 9 = warmup 2 + timed iteration 7.
    EXPECT_NE(row.GetString("error")->find("iteration 9"), std::string::npos) << row.ToJson();
  }
  EXPECT_NE(r.err.find("failed verification"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("data mismatch"), std::string::npos) << r.err;
}

TEST(TransportBenchTest, UsageAndLookupErrors) {
  EXPECT_EQ(RunBench("transport --sizes=0").exit_code, 2);
  EXPECT_EQ(RunBench("transport --tests=nope").exit_code, 2);
  EXPECT_EQ(RunBench("transport --listen=1.2.3.4:1 --connect=1.2.3.4:2").exit_code, 2);
  EXPECT_EQ(RunBench("nosuchcommand").exit_code, 2);
  EXPECT_EQ(RunBench("").exit_code, 2);
  const RunResult r = RunBench("transport --backend=nosuch --sizes=8 --iters=1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("nosuch"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("shm"), std::string::npos) << r.err;  // lists what exists
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail
