#include "test/fault_trial.h"

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "test/harness.h"

namespace tokenrail {
namespace testing {
namespace {

constexpr int kNodes = 2, kRanksPerNode = 2, kWorld = kNodes * kRanksPerNode;
constexpr int kVictimNode = 1;
constexpr int kVictimRank = 3;  // on node 1

}  // namespace

int FaultTrials() {
  const char* v = std::getenv("TR_FAULT_TRIALS");
  int n = 1;
  if (v != nullptr && absl::SimpleAtoi(v, &n) && n >= 1) return n;
  return 1;
}

FaultTrial RunFaultTrial(Victim victim, int trial, const std::vector<std::string>& flags) {
  FaultTrial t;
  LaunchSpec spec;
  spec.launcher_flags = {absl::StrCat("--nodes=", kNodes),
                         absl::StrCat("--ranks-per-node=", kRanksPerNode), "--timeout=120",
                         "--failure_grace=15"};
  spec.launcher_flags.insert(spec.launcher_flags.end(), flags.begin(), flags.end());
  spec.command = {RankPath(), "--mode=stream", "--stream_seconds=60"};
  auto job = LaunchedJob::Start(spec);
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return t;
  LaunchedJob& j = **job;

  // Mid-transfer: every rank completed a round of puts and keeps posting.
  for (int r = 0; r < kWorld; ++r) {
    const std::string want = absl::StrCat("TR_STREAMING rank=", r);
    if (j.WaitForLine([&](const OutputLine& l) { return l.text == want; },
                      absl::Now() + absl::Seconds(60)) == nullptr) {
      ADD_FAILURE() << "rank " << r << " never streamed\n" << j.Transcript();
      t.hang = true;
      return t;
    }
  }
  const pid_t pid = victim == Victim::kRank ? j.RankPid(kVictimRank) : j.DaemonPid(kVictimNode);
  EXPECT_GT(pid, 0) << j.Transcript();
  if (pid <= 0) return t;
  const int64_t killed_ms = absl::ToUnixMillis(absl::Now());
  ::kill(pid, SIGKILL);

  const int code = j.Wait(absl::Now() + absl::Seconds(90));
  if (code < 0) t.hang = true;
  EXPECT_EQ(code, 1) << j.Transcript();
  const std::string dead = victim == Victim::kRank
                               ? absl::StrCat("rank ", kVictimRank, " (node ", kVictimNode, ")")
                               : absl::StrCat("daemon of node ", kVictimNode);
  bool named = false;
  for (const OutputLine& l : j.lines()) {
    named = named || (l.label == "launch" &&
                      absl::StartsWith(
                          l.text, absl::StrCat("FAILED: ", dead, " killed by signal 9 (Killed)")));
  }
  EXPECT_TRUE(named) << "the launcher must name the dead process first\n" << j.Transcript();

  // What every survivor must name: the dead rank, or the dead node.
  const std::string culprit = victim == Victim::kRank ? absl::StrCat("rank ", kVictimRank)
                                                      : absl::StrCat("node ", kVictimNode);
  std::vector<std::string> latencies;
  for (int r = 0; r < kWorld; ++r) {
    if (victim == Victim::kRank && r == kVictimRank) continue;
    const std::string label = absl::StrCat("n", r / kRanksPerNode, "/r", r);
    const OutputLine* fault = nullptr;
    for (const OutputLine* l : j.Tagged("TR_FAULT")) {
      if (l->label == label) fault = l;
    }
    if (fault == nullptr) {
      t.hang = true;
      ADD_FAILURE() << label << " never reported the failure\n" << j.Transcript();
      continue;
    }
    std::map<std::string, std::string> f = ParseFields(fault->text);
    EXPECT_EQ(f["code"], "UNAVAILABLE") << label << ": " << fault->text;
    EXPECT_TRUE(absl::StrContains(f["msg"], culprit))
        << label << " must name " << culprit << ": " << fault->text;
    int64_t seen_ms = 0;
    EXPECT_TRUE(absl::SimpleAtoi(f["unix_ms"], &seen_ms)) << fault->text;
    const int64_t latency = seen_ms - killed_ms;
    t.detect_ms = std::max(t.detect_ms, latency);
    latencies.push_back(absl::StrCat(label, "=", latency, "ms"));
  }
  std::printf("trial %d, SIGKILL %s: survivors saw the error after %s\n", trial, dead.c_str(),
              absl::StrJoin(latencies, ", ").c_str());
  const std::vector<std::string> left =
      Leftovers(j.job_id(), j.run_dir(), j.netns_prefix(), absl::Seconds(5));
  EXPECT_TRUE(left.empty()) << absl::StrJoin(left, "\n");
  return t;
}

FailureDetection MeasureFailureDetection(Victim victim, const std::vector<std::string>& flags) {
  const char* name = victim == Victim::kRank ? "rank" : "daemon";
  BecomeSubreaper();
  FailureDetection d;
  d.trials = FaultTrials();
  for (int i = 0; i < d.trials; ++i) {
    const FaultTrial t = RunFaultTrial(victim, i, flags);
    if (t.hang) ++d.hangs;
    if (t.detect_ms >= 0) d.detect_ms.push_back(t.detect_ms);
    if (::testing::Test::HasFatalFailure()) break;
  }
  std::sort(d.detect_ms.begin(), d.detect_ms.end());
  const std::vector<int64_t>& times = d.detect_ms;
  const double median = times.empty() ? -1
                        : times.size() % 2 == 1
                            ? times[times.size() / 2]
                            : (times[times.size() / 2 - 1] + times[times.size() / 2]) / 2.0;
  std::printf(
      "FAILURE_DETECTION victim=%s%s trials=%d measured=%zu median_ms=%.1f max_ms=%lld hangs=%d\n",
      name, flags.empty() ? "" : " (netns)", d.trials, times.size(), median,
      static_cast<long long>(times.empty() ? -1 : times.back()), d.hangs);
  return d;
}

}  // namespace testing
}  // namespace tokenrail
