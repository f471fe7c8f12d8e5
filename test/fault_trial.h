// One fault-injection trial on a launched 2 x 2 cluster streaming puts
// between every pair of ranks: SIGKILL rank 3 or the daemon of node 1
// mid-transfer, then check (gtest expectations) that the launcher exits 1
// naming the dead process first, and that every survivor reported
// Unavailable naming the dead rank or node (the rank program prints the
// error with the wall-clock time it saw it), and that nothing is left.
#ifndef TOKENRAIL_TEST_FAULT_TRIAL_H_
#define TOKENRAIL_TEST_FAULT_TRIAL_H_

#include <cstdint>
#include <string>
#include <vector>

namespace tokenrail {
namespace testing {

enum class Victim { kRank, kDaemon };

struct FaultTrial {
  bool hang = false;       // a survivor never reported, or the launcher never exited
  int64_t detect_ms = -1;  // SIGKILL to the error on the last survivor
};

// `flags`: extra launcher flags (e.g. --netns).
FaultTrial RunFaultTrial(Victim victim, int trial, const std::vector<std::string>& flags);

struct FailureDetection {
  int trials = 0;
  int hangs = 0;
  std::vector<int64_t> detect_ms;  // sorted, one per trial that measured
};

// TR_FAULT_TRIALS (default 1) trials; prints "FAILURE_DETECTION victim=..
// trials=.. median_ms=.. max_ms=.. hangs=.." (the caller asserts on hangs).
int FaultTrials();
FailureDetection MeasureFailureDetection(Victim victim, const std::vector<std::string>& flags);

}  // namespace testing
}  // namespace tokenrail

#endif  // TOKENRAIL_TEST_FAULT_TRIAL_H_
