#include "tools/launch/janitor.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/logging.h"
#include "common/proc_file.h"
#include "tools/launch/netns.h"
#include "tools/launch/output.h"
#include "tools/launch/run_dir.h"

namespace tokenrail {
namespace launch {
namespace {

struct Watched {
  std::set<pid_t> groups;
  std::vector<std::string> dirs;
  std::vector<std::string> namespaces;
};

// Live (non-zombie) processes whose process group is in `groups`.
int CountLiveMembers(const std::set<pid_t>& groups) {
  int live = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* e = ::readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    const std::string stat = ReadProcFile(absl::StrCat("/proc/", pid, "/stat"));
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    int pgrp = 0;
    if (f.size() < 3 || !absl::SimpleAtoi(f[2], &pgrp)) continue;
    if (f[0] != "Z" && f[0] != "X" && groups.count(pgrp) > 0) ++live;
  }
  ::closedir(proc);
  return live;
}

// Everything after the launcher died.
void CleanUp(const Watched& w) {
  for (pid_t g : w.groups) ::kill(-g, SIGKILL);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  int live = CountLiveMembers(w.groups);
  while (live > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    live = CountLiveMembers(w.groups);
  }
  std::string report = absl::StrCat("janitor: the launcher exited without cleaning up; killed ",
                                    w.groups.size(), " process groups");
  if (live > 0) absl::StrAppend(&report, " (", live, " processes still exiting)");
  const absl::Status ns = DeleteNamespaces(w.namespaces);
  absl::StrAppend(&report,
                  ns.ok() ? absl::StrCat(", deleted ", w.namespaces.size(), " network namespaces")
                          : absl::StrCat(", ", ns.ToString()));
  for (const std::string& dir : w.dirs) {
    const absl::Status s = RemoveTree(dir);
    absl::StrAppend(&report, s.ok() ? absl::StrCat(", removed ", dir) : s.ToString());
  }
  absl::StrAppend(&report, "\n");
  WriteAll(STDERR_FILENO, absl::StrCat("[launch] ", report));
}

[[noreturn]] void JanitorMain(int pipe_fd) {
  ::setsid();
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) ::signal(sig, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Keep stdin/stdout/stderr and the pipe; drop every other inherited fd.
  if (pipe_fd != 3) {
    ::dup2(pipe_fd, 3);
    ::close(pipe_fd);
  }
  ::syscall(SYS_close_range, 4u, ~0u, 0u);
  Watched w;
  std::string buf;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(3, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the launcher is gone
    buf.append(chunk, n);
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      const std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line == "done") ::_exit(0);
      const size_t sp = line.find(' ');
      if (sp == std::string::npos) continue;
      const std::string kind = line.substr(0, sp), arg = line.substr(sp + 1);
      int pgid = 0;
      if (kind == "pgid" && absl::SimpleAtoi(arg, &pgid) && pgid > 1) w.groups.insert(pgid);
      if (kind == "dir") w.dirs.push_back(arg);
      if (kind == "netns") w.namespaces.push_back(arg);
    }
  }
  CleanUp(w);
  ::_exit(0);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Janitor>> Janitor::Start() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return StatusFromErrno(errno, "pipe2 for the janitor");
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  std::fflush(nullptr);  // no duplicated stdio buffers in the fork
  const pid_t pid = ::fork();
  if (pid < 0) return StatusFromErrno(errno, "fork the janitor");
  if (pid == 0) {
    write_end.Reset();
    JanitorMain(read_end.Release());
  }
  return std::unique_ptr<Janitor>(new Janitor(pid, std::move(write_end)));
}

Janitor::~Janitor() {
  pipe_.Reset();  // EOF: without a prior "done" the janitor cleans up now
  Reap();
}

void Janitor::Send(absl::string_view line) {
  if (!pipe_.valid()) return;
  if (!WriteAll(pipe_.get(), absl::StrCat(line, "\n")) && !warned_) {
    warned_ = true;
    TR_LOG(WARNING, "launch") << "janitor unreachable (" << StatusFromErrno(errno, "write")
                              << "): cleanup after a launcher crash is not guaranteed";
  }
}

void Janitor::WatchProcessGroup(pid_t pgid) { Send(absl::StrCat("pgid ", pgid)); }
void Janitor::WatchDirectory(const std::string& path) { Send(absl::StrCat("dir ", path)); }
void Janitor::WatchNamespace(const std::string& name) { Send(absl::StrCat("netns ", name)); }

void Janitor::Dismiss() {
  Send("done");
  pipe_.Reset();
  Reap();
}

void Janitor::Reap() {
  if (pid_ <= 0) return;
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

}  // namespace launch
}  // namespace tokenrail
