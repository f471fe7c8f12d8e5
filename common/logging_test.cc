#include "common/logging.h"

#include "gtest/gtest.h"

namespace tokenrail {
namespace {

TEST(LoggingTest, PerSubsystemVerbosity) {
  ASSERT_TRUE(SetLogVerbosity("ucx=2,shm=1,*=0").ok());
  EXPECT_EQ(LogVerbosity("ucx"), 2);
  EXPECT_EQ(LogVerbosity("shm"), 1);
  EXPECT_EQ(LogVerbosity("other"), 0);
  EXPECT_TRUE(logging_internal::VlogOn("ucx", 2));
  EXPECT_FALSE(logging_internal::VlogOn("shm", 2));
  ASSERT_TRUE(SetLogVerbosity("*=3").ok());
  EXPECT_EQ(LogVerbosity("anything"), 3);
  ASSERT_TRUE(SetLogVerbosity("").ok());
  EXPECT_FALSE(logging_internal::VlogOn("ucx", 1));
}

TEST(LoggingTest, RejectsMalformedSpec) {
  EXPECT_EQ(SetLogVerbosity("ucx").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SetLogVerbosity("ucx=abc").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SetLogVerbosity("ucx=-1").code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoggingTest, LogOnceLogsOnce) {
  int evaluated = 0;
  for (int i = 0; i < 3; ++i) {
    TR_LOG_ONCE(INFO, "test") << "degraded " << ++evaluated;
  }
  EXPECT_EQ(evaluated, 1);
}

TEST(LoggingDeathTest, CheckAborts) {
  EXPECT_DEATH(TR_CHECK(1 + 1 == 3) << "math", "Check failed: 1 \\+ 1 == 3 math");
}

}  // namespace
}  // namespace tokenrail
