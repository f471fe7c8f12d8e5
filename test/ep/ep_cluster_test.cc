// The expert-parallel engine between processes: tokenrail-launch starts real
// daemons (coordinator, proxies, shared arenas, UCX between nodes) and runs
// ep_rank on every rank, which checks dispatch and combine against the
// single-process reference (see ep_rank.cc for the suites). Here: the
// topologies the issue names, determinism across launches, a rank that dies
// between dispatches (before issuing the one its peers then wait for), and
// (ep_cluster_netns_test) 2x2 across network namespaces.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace tokenrail {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

struct Launch {
  int exit_code = -1;
  std::vector<std::string> lines;
  std::string Transcript() const { return absl::StrJoin(lines, "\n"); }
  // Lines of one tag ("TR_EP_RESULT") as key=value maps; "label" holds the
  // "[n0/r1]" prefix's label, "msg" the rest of the line after msg=.
  std::vector<std::map<std::string, std::string>> Tagged(const std::string& tag) const {
    std::vector<std::map<std::string, std::string>> out;
    for (const std::string& line : lines) {
      const size_t close = line.find("] ");
      if (line.empty() || line[0] != '[' || close == std::string::npos) continue;
      const std::string text = line.substr(close + 2);
      if (!absl::StartsWith(text, tag + " ")) continue;
      std::map<std::string, std::string> f;
      f["label"] = line.substr(1, close - 1);
      const size_t msg = text.find(" msg=");
      if (msg != std::string::npos) f["msg"] = text.substr(msg + 5);
      for (absl::string_view kv : absl::StrSplit(text.substr(0, msg), ' ')) {
        const size_t eq = kv.find('=');
        if (eq != absl::string_view::npos)
          f[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
      }
      out.push_back(std::move(f));
    }
    return out;
  }
};

// Runs tokenrail-launch with `flags`, then ep_rank with `args`; collects
// every output line. The launcher's --timeout bounds it.
Launch RunLaunch(const std::vector<std::string>& flags, const std::vector<std::string>& args) {
  std::vector<std::string> cmd = {Env("TR_LAUNCH"), "--daemon=" + Env("TR_DAEMON"), "--timeout=240",
                                  "--failure_grace=8"};
  cmd.insert(cmd.end(), flags.begin(), flags.end());
  cmd.push_back("--");
  cmd.push_back(Env("TR_EP_RANK"));
  cmd.insert(cmd.end(), args.begin(), args.end());
  std::string shell;
  for (const std::string& a : cmd) absl::StrAppend(&shell, "'", a, "' ");
  absl::StrAppend(&shell, "2>&1");
  Launch out;
  FILE* f = popen(shell.c_str(), "r");
  if (f == nullptr) return out;
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) >= 0) {
    std::string s(line, static_cast<size_t>(n));
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    out.lines.push_back(std::move(s));
  }
  free(line);
  const int status = pclose(f);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return out;
}

struct Topology {
  int nodes, rpn, experts, top_k, max_nodes;
  std::string Name() const { return absl::StrCat(nodes, "x", rpn); }
};

std::vector<std::string> LaunchFlags(const Topology& t) {
  return {absl::StrCat("--nodes=", t.nodes),
          absl::StrCat("--ranks_per_node=", t.rpn),
          absl::StrCat("--experts=", t.experts),
          absl::StrCat("--top_k=", t.top_k),
          absl::StrCat("--max_nodes_per_token=", t.max_nodes),
          "--arena_bytes=128M"};
}

std::vector<std::string> RankArgs(const Topology& t, int determinism_runs) {
  return {absl::StrCat("--experts=", t.experts),
          absl::StrCat("--top_k=", t.top_k),
          absl::StrCat("--max_nodes=", t.max_nodes),
          "--tokens=64",
          "--hidden=96",
          absl::StrCat("--determinism_runs=", determinism_runs)};
}

// Every rank passed the whole suite. Returns y hashes by "rank/case".
std::map<std::string, std::string> ExpectSuitePassed(const Topology& t, const Launch& l) {
  std::map<std::string, std::string> hashes;
  EXPECT_EQ(l.exit_code, 0) << l.Transcript();
  const auto results = l.Tagged("TR_EP_RESULT");
  EXPECT_EQ(results.size(), static_cast<size_t>(t.nodes * t.rpn)) << l.Transcript();
  for (const auto& r : results) {
    EXPECT_EQ(r.at("ok"), "1");
    const int rank = std::stoi(r.at("rank"));
    EXPECT_EQ(r.at("label"), absl::StrCat("n", rank / t.rpn, "/r", rank));
  }
  for (const auto& e : l.Tagged("TR_EP_ERROR")) {
    ADD_FAILURE() << "rank " << e.at("rank") << " case " << e.at("case") << ": " << e.at("code")
                  << " " << (e.count("msg") ? e.at("msg") : "");
  }
  for (const auto& c : l.Tagged("TR_EP_CASE")) {
    if (c.count("y_hash")) hashes[c.at("rank") + "/" + c.at("case")] = c.at("y_hash");
  }
  return hashes;
}

class EpClusterTest : public ::testing::TestWithParam<Topology> {};

TEST_P(EpClusterTest, FullSuite) {
  const Topology t = GetParam();
  const Launch l = RunLaunch(LaunchFlags(t), RankArgs(t, 20));
  const auto hashes = ExpectSuitePassed(t, l);
  EXPECT_FALSE(hashes.empty());
}

INSTANTIATE_TEST_SUITE_P(Topologies, EpClusterTest,
                         ::testing::Values(Topology{1, 1, 4, 2, 1}, Topology{1, 4, 16, 4, 1},
                                           Topology{2, 2, 16, 4, 2}, Topology{4, 1, 8, 3, 2},
                                           Topology{3, 2, 12, 4, 2}),
                         [](const ::testing::TestParamInfo<Topology>& i) {
                           return "n" + i.param.Name().replace(1, 1, "_r");
                         });

TEST(EpClusterDeterminismTest, IdenticalBitsAcrossLaunches) {
  const Topology t{2, 2, 16, 4, 2};
  const auto first = ExpectSuitePassed(t, RunLaunch(LaunchFlags(t), RankArgs(t, 1)));
  const auto second = ExpectSuitePassed(t, RunLaunch(LaunchFlags(t), RankArgs(t, 1)));
  EXPECT_FALSE(first.empty());
  EXPECT_EQ(first, second);
}

TEST(EpClusterFaultTest, DeadRankIsNamedByEverySurvivor) {
  const Topology t{2, 2, 16, 4, 2};
  std::vector<std::string> flags = LaunchFlags(t);
  flags.push_back("--heartbeat_timeout_ms=2000");
  std::vector<std::string> args = RankArgs(t, 1);
  args.push_back("--suite=fault");
  args.push_back("--die_rank=3");
  const Launch l = RunLaunch(flags, args);
  EXPECT_NE(l.exit_code, 0);
  const auto dying = l.Tagged("TR_EP_DYING");
  ASSERT_EQ(dying.size(), 1u) << l.Transcript();
  int64_t died_ms = 0;
  ASSERT_TRUE(absl::SimpleAtoi(dying[0].at("unix_ms"), &died_ms));
  const auto faults = l.Tagged("TR_EP_FAULT");
  EXPECT_EQ(faults.size(), 3u) << l.Transcript();
  for (const auto& f : faults) {
    EXPECT_EQ(f.at("code"), "UNAVAILABLE") << f.at("msg");
    EXPECT_TRUE(absl::StrContains(f.at("msg"), "rank 3")) << f.at("msg");
    int64_t seen_ms = 0;
    ASSERT_TRUE(absl::SimpleAtoi(f.at("unix_ms"), &seen_ms));
    // Detected within the heartbeat timeout (plus scheduling slack).
    EXPECT_LT(seen_ms - died_ms, 2000 + 1500) << f.at("label");
  }
}

// UCX over TCP between network namespaces (root only).
TEST(EpClusterNetnsTest, TwoByTwoAcrossNamespaces) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces";
  const Topology t{2, 2, 16, 4, 2};
  std::vector<std::string> flags = LaunchFlags(t);
  flags.push_back("--netns");
  ExpectSuitePassed(t, RunLaunch(flags, RankArgs(t, 3)));
}

}  // namespace
}  // namespace tokenrail
