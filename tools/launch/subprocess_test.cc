#include "tools/launch/subprocess.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/proc_file.h"
#include "gtest/gtest.h"
#include "tools/launch/janitor.h"
#include "tools/launch/run_dir.h"

namespace tokenrail {
namespace launch {
namespace {

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

std::string ReadAllFrom(UniqueFd& fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, n);
    } else if (n == 0) {
      return out;
    } else if (errno == EAGAIN) {
      ::usleep(1000);
    } else if (errno != EINTR) {
      return out;
    }
  }
}

bool ProcessAlive(pid_t pid) {
  const std::string stat = ReadProcFile(absl::StrCat("/proc/", pid, "/stat"));
  if (stat.empty()) return false;
  const size_t close = stat.rfind(')');
  return close != std::string::npos && stat[close + 2] != 'Z';
}

TEST(SubprocessTest, CapturesOutputEnvironmentAndExitStatus) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "echo out $GREETING; echo err >&2; exit 3"};
  o.env = {"GREETING=hello", "PATH=/usr/bin:/bin"};
  auto p = Subprocess::Spawn(o);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(ReadAllFrom((*p)->stdout_fd()), "out hello\n");
  EXPECT_EQ(ReadAllFrom((*p)->stderr_fd()), "err\n");
  ASSERT_TRUE((*p)->WaitUntil(Soon()));
  EXPECT_FALSE((*p)->succeeded());
  EXPECT_EQ(DescribeWaitStatus((*p)->wait_status()), "exited with status 3");
}

TEST(SubprocessTest, MissingProgramIsAClearError) {
  SpawnOptions o;
  o.argv = {"no-such-program-tokenrail"};
  o.env = {"PATH=/usr/bin:/bin"};
  auto p = Subprocess::Spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(absl::IsNotFound(p.status())) << p.status();
  EXPECT_NE(p.status().message().find("no-such-program-tokenrail"), std::string::npos);

  o.argv = {"/etc/passwd"};  // exists, not executable
  p = Subprocess::Spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(p.status())) << p.status();
}

TEST(SubprocessTest, OwnProcessGroupAndSignalReachesGrandchildren) {
  SpawnOptions o;
  // The child starts a grandchild that would outlive it, prints its pid and waits.
  o.argv = {"/bin/sh", "-c", "sleep 100 & echo $!; wait"};
  o.env = {"PATH=/usr/bin:/bin"};
  auto p = Subprocess::Spawn(o);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(::getpgid((*p)->pid()), (*p)->pid());
  std::string line;
  char c;
  while (line.find('\n') == std::string::npos) {
    if (::read((*p)->stdout_fd().get(), &c, 1) == 1) line.push_back(c);
  }
  pid_t grandchild = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &grandchild)) << line;
  EXPECT_EQ(::getpgid(grandchild), (*p)->pid());
  (*p)->Signal(SIGTERM);
  ASSERT_TRUE((*p)->WaitUntil(Soon()));
  EXPECT_EQ(DescribeWaitStatus((*p)->wait_status()), "killed by signal 15 (Terminated)");
  const absl::Time deadline = Soon();
  while (ProcessAlive(grandchild) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_FALSE(ProcessAlive(grandchild));
}

TEST(SubprocessTest, ChildDiesWithItsParent) {
  // An intermediate process spawns a long sleeper through Subprocess (so the
  // sleeper gets PR_SET_PDEATHSIG) and is then SIGKILLed.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t middle = ::fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    ::close(fds[0]);
    SpawnOptions o;
    o.argv = {"/bin/sleep", "100"};
    o.env = {"PATH=/usr/bin:/bin"};
    o.capture_output = false;
    auto p = Subprocess::Spawn(o);
    const pid_t pid = p.ok() ? (*p)->pid() : -1;
    [[maybe_unused]] ssize_t n = ::write(fds[1], &pid, sizeof(pid));
    ::pause();
    ::_exit(0);
  }
  ::close(fds[1]);
  pid_t sleeper = 0;
  ASSERT_EQ(::read(fds[0], &sleeper, sizeof(sleeper)), static_cast<ssize_t>(sizeof(sleeper)));
  ::close(fds[0]);
  ASSERT_GT(sleeper, 0);
  EXPECT_TRUE(ProcessAlive(sleeper));
  ::kill(middle, SIGKILL);
  int status;
  ::waitpid(middle, &status, 0);
  const absl::Time deadline = Soon();
  while (ProcessAlive(sleeper) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_FALSE(ProcessAlive(sleeper)) << "pid " << sleeper << " outlived its parent";
}

TEST(SubprocessTest, RunCommandReportsOutputAndFailures) {
  auto out = RunCommand({"/bin/cat"}, "batch input\n", Soon());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "batch input\n");
  out = RunCommand({"/bin/sh", "-c", "echo bad thing >&2; exit 4"}, "", Soon());
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("exited with status 4"), std::string::npos);
  EXPECT_NE(out.status().message().find("bad thing"), std::string::npos);
  out = RunCommand({"/bin/sleep", "30"}, "", absl::Now() + absl::Milliseconds(100));
  EXPECT_TRUE(absl::IsDeadlineExceeded(out.status())) << out.status();
}

TEST(SubprocessTest, EnvHelpers) {
  std::vector<std::string> env = {"A=1", "AB=2"};
  SetEnv(&env, "A", "3");
  SetEnv(&env, "C", "x=y");
  EXPECT_EQ(GetEnv(env, "A"), "3");
  EXPECT_EQ(GetEnv(env, "AB"), "2");
  EXPECT_EQ(GetEnv(env, "C"), "x=y");
  EXPECT_EQ(GetEnv(env, "D"), "");
}

TEST(RunDirTest, PrivateDirectoryAndTokenAreRemoved) {
  auto dir = RunDir::Create("");
  ASSERT_TRUE(dir.ok()) << dir.status();
  struct stat st;
  ASSERT_EQ(::stat((*dir)->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto token = (*dir)->WriteToken();
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->size(), 64u);
  ASSERT_EQ(::stat((*dir)->token_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string path = (*dir)->path();
  ASSERT_EQ(::mkdir((*dir)->File("sub").c_str(), 0700), 0);
  std::ofstream((*dir)->File("sub/file")) << "x";
  dir->reset();
  EXPECT_NE(::stat(path.c_str(), &st), 0);
}

TEST(RunDirTest, RefusesParentsTooLongForSockets) {
  auto dir = RunDir::Create(std::string(100, 'x'));
  ASSERT_FALSE(dir.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(dir.status())) << dir.status();
}

TEST(JanitorTest, CleansUpWhenItsLauncherDies) {
  // A stand-in launcher process registers a directory and a process group
  // with its janitor, then is SIGKILLed.
  auto dir = RunDir::Create("");
  ASSERT_TRUE(dir.ok());
  const std::string path = (*dir)->path();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t launcher = ::fork();
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    ::close(fds[0]);
    auto janitor = Janitor::Start();
    if (!janitor.ok()) ::_exit(1);
    SpawnOptions o;
    o.argv = {"/bin/sleep", "100"};
    o.env = {"PATH=/usr/bin:/bin"};
    o.capture_output = false;
    o.parent_death_signal = 0;  // only the janitor can stop it
    auto p = Subprocess::Spawn(o);
    if (!p.ok()) ::_exit(1);
    (*janitor)->WatchProcessGroup((*p)->pid());
    (*janitor)->WatchDirectory(path);
    const pid_t pids[2] = {(*p)->pid(), (*janitor)->pid()};
    [[maybe_unused]] ssize_t n = ::write(fds[1], pids, sizeof(pids));
    ::pause();
    ::_exit(0);
  }
  ::close(fds[1]);
  pid_t pids[2] = {0, 0};
  ASSERT_EQ(::read(fds[0], pids, sizeof(pids)), static_cast<ssize_t>(sizeof(pids)));
  ::close(fds[0]);
  EXPECT_TRUE(ProcessAlive(pids[0]));
  ::kill(launcher, SIGKILL);
  int status;
  ::waitpid(launcher, &status, 0);
  const absl::Time deadline = Soon();
  struct stat st;
  while ((ProcessAlive(pids[0]) || ProcessAlive(pids[1]) || ::stat(path.c_str(), &st) == 0) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_FALSE(ProcessAlive(pids[0])) << "the launched process survived";
  EXPECT_FALSE(ProcessAlive(pids[1])) << "the janitor did not exit";
  EXPECT_NE(::stat(path.c_str(), &st), 0) << path << " left behind";
  (*dir)->Remove().IgnoreError();
}

TEST(JanitorTest, DismissedJanitorTouchesNothing) {
  auto dir = RunDir::Create("");
  ASSERT_TRUE(dir.ok());
  {
    auto janitor = Janitor::Start();
    ASSERT_TRUE(janitor.ok()) << janitor.status();
    (*janitor)->WatchDirectory((*dir)->path());
    (*janitor)->Dismiss();
  }
  struct stat st;
  EXPECT_EQ(::stat((*dir)->path().c_str(), &st), 0);
}

}  // namespace
}  // namespace launch
}  // namespace tokenrail
