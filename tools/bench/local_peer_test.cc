#include "tools/bench/local_peer.h"

#include <signal.h>

#include "gtest/gtest.h"

namespace tokenrail {
namespace bench {
namespace {

TEST(ChildProcessTest, ReportsExitCodes) {
  absl::StatusOr<ChildProcess> ok = ChildProcess::Spawn({"/bin/sh", "-c", "exit 0"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok->Wait(absl::Now() + absl::Seconds(10)), 0);
  absl::StatusOr<ChildProcess> three = ChildProcess::Spawn({"/bin/sh", "-c", "exit 3"});
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(*three->Wait(absl::Now() + absl::Seconds(10)), 3);
}

TEST(ChildProcessTest, ExecFailureIsAnError) {
  absl::StatusOr<ChildProcess> c = ChildProcess::Spawn({"/nonexistent/tokenrail-bench"});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound) << c.status();
  EXPECT_NE(c.status().message().find("/nonexistent/tokenrail-bench"), absl::string_view::npos);
}

TEST(ChildProcessTest, DestructorTerminatesARunningChild) {
  pid_t pid = 0;
  {
    absl::StatusOr<ChildProcess> c = ChildProcess::Spawn({"/bin/sleep", "60"});
    ASSERT_TRUE(c.ok());
    pid = c->pid();
    EXPECT_FALSE(c->TryWait().has_value());
    EXPECT_EQ(c->Wait(absl::Now() + absl::Milliseconds(50)).status().code(),
              absl::StatusCode::kDeadlineExceeded);
  }
  // Reaped: the pid no longer names our child.
  EXPECT_NE(::kill(pid, 0), 0);
}

TEST(AcceptFromChildTest, ChildThatDiesEarlyFailsFast) {
  absl::StatusOr<transport::OobListener> l = transport::OobListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(l.ok());
  absl::StatusOr<ChildProcess> c = ChildProcess::Spawn({"/bin/sh", "-c", "exit 7"});
  ASSERT_TRUE(c.ok());
  const absl::Time start = absl::Now();
  absl::StatusOr<transport::OobChannel> ch =
      AcceptFromChild(*l, *c, absl::Now() + absl::Seconds(30));
  EXPECT_EQ(ch.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(ch.status().message().find("exited with code 7"), absl::string_view::npos);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(SelfExecutableTest, NamesThisTest) {
  absl::StatusOr<std::string> self = SelfExecutable();
  ASSERT_TRUE(self.ok());
  EXPECT_NE(self->find("local_peer_test"), std::string::npos) << *self;
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail
