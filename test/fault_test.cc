// Fault injection on a launched 2 x 2 cluster over loopback: SIGKILL a
// rank, or a daemon, mid-transfer (see fault_trial.h). The same under
// --netns is in cluster_netns_test.
//
// The failure-detection measurement is the same test repeated:
//   bazel test //test:fault_test --test_env=TR_FAULT_TRIALS=20 --test_output=streamed
// prints, per victim kind, the median and max over the trials of the time
// from SIGKILL to the error on the last survivor, and the hang count. No
// timing is asserted beyond "within the launcher's failure grace".
#include "gtest/gtest.h"
#include "test/fault_trial.h"

namespace tokenrail {
namespace testing {
namespace {

TEST(FaultTest, SigkilledRankIsReportedToEverySurvivor) {
  EXPECT_EQ(MeasureFailureDetection(Victim::kRank, {}).hangs, 0);
}

TEST(FaultTest, SigkilledDaemonIsReportedToEverySurvivor) {
  EXPECT_EQ(MeasureFailureDetection(Victim::kDaemon, {}).hangs, 0);
}

}  // namespace
}  // namespace testing
}  // namespace tokenrail
