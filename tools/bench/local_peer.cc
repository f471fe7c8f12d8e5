#include "tools/bench/local_peer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/fd.h"
#include "common/logging.h"
#include "common/status.h"

namespace tokenrail {
namespace bench {
namespace {

int ExitCode(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return -1;
}

}  // namespace

absl::StatusOr<std::string> SelfExecutable() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n < 0) return StatusFromErrno(errno, "readlink /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

absl::StatusOr<ChildProcess> ChildProcess::Spawn(const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("spawn: empty argv");
  // The child reports an exec failure's errno through a close-on-exec pipe:
  // EOF means exec succeeded.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return StatusFromErrno(errno, "spawn: pipe2");
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return StatusFromErrno(errno, "spawn: fork");
  if (pid == 0) {
    // Only async-signal-safe calls from here on.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    ::execv(args[0], args.data());
    const int err = errno;
    (void)!::write(write_end.get(), &err, sizeof(err));
    ::_exit(127);
  }
  write_end.Reset();
  ChildProcess child(pid);
  int err = 0;
  ssize_t n;
  do {
    n = ::read(read_end.get(), &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(err))) {
    child.Wait(absl::InfiniteFuture()).IgnoreError();
    return StatusFromErrno(err, absl::StrCat("spawn: exec ", argv[0]));
  }
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), exit_code_(other.exit_code_) {}

ChildProcess::~ChildProcess() {
  if (pid_ <= 0 || exit_code_.has_value()) return;
  if (TryWait().has_value()) return;
  ::kill(pid_, SIGTERM);
  if (Wait(absl::Now() + absl::Seconds(2)).ok()) return;
  TR_LOG(WARNING, "bench") << "peer process " << pid_ << " ignored SIGTERM; killing it";
  ::kill(pid_, SIGKILL);
  Wait(absl::InfiniteFuture()).IgnoreError();
}

std::optional<int> ChildProcess::TryWait() {
  if (exit_code_.has_value() || pid_ <= 0) return exit_code_;
  int wstatus = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &wstatus, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) exit_code_ = ExitCode(wstatus);
  if (r < 0) exit_code_ = -1;  // not our child any more (ECHILD): nothing to reap
  return exit_code_;
}

absl::StatusOr<int> ChildProcess::Wait(absl::Time deadline) {
  absl::Duration nap = absl::Microseconds(100);
  while (true) {
    if (std::optional<int> code = TryWait()) return *code;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("process ", pid_, " still running"));
    }
    absl::SleepFor(nap);
    nap = std::min(nap * 2, absl::Milliseconds(20));
  }
}

absl::StatusOr<transport::OobChannel> AcceptFromChild(transport::OobListener& listener,
                                                      ChildProcess& child, absl::Time deadline) {
  while (true) {
    absl::StatusOr<transport::OobChannel> ch =
        listener.Accept(std::min(deadline, absl::Now() + absl::Milliseconds(100)));
    if (ch.ok()) return ch;
    if (!absl::IsDeadlineExceeded(ch.status())) return ch.status();
    if (std::optional<int> code = child.TryWait()) {
      return absl::UnavailableError(absl::StrCat("peer process ", child.pid(), " exited with code ",
                                                 *code,
                                                 " before connecting (see its messages above)"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError("peer process did not connect in time");
    }
  }
}

}  // namespace bench
}  // namespace tokenrail
