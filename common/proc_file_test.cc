#include "common/proc_file.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tokenrail {
namespace {

TEST(ProcFileTest, ReadsALiveProcessesStat) {
  const std::string stat = ReadProcFile(absl::StrCat("/proc/", ::getpid(), "/stat"));
  EXPECT_EQ(stat.rfind(absl::StrCat(::getpid(), " ("), 0), 0u) << stat;
  EXPECT_NE(stat.find(')'), std::string::npos);
}

TEST(ProcFileTest, MissingFilesAndReapedProcessesReadAsEmpty) {
  EXPECT_EQ(ReadProcFile("/proc/this-does-not-exist/stat"), "");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_FALSE(ReadProcFile(absl::StrCat("/proc/", child, "/stat")).empty());
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_EQ(ReadProcFile(absl::StrCat("/proc/", child, "/stat")), "");
}

}  // namespace
}  // namespace tokenrail
