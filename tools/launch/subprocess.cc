#include "tools/launch/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/errno_status.h"
#include "common/status.h"

extern char** environ;

namespace tokenrail {
namespace launch {
namespace {

// What the child reports through the exec-error pipe when a step before (or
// the) exec fails. Only async-signal-safe calls run between fork and exec.
enum ChildStep : int {
  kStepStdio = 1,
  kStepNetnsOpen,
  kStepSetns,
  kStepUnshareMounts,
  kStepRemountSys,
  kStepExec,
  kStepParentGone,
};

const char* StepName(int step) {
  switch (step) {
    case kStepStdio:
      return "redirecting stdio";
    case kStepNetnsOpen:
      return "opening the network namespace";
    case kStepSetns:
      return "entering the network namespace (setns)";
    case kStepUnshareMounts:
      return "creating a mount namespace";
    case kStepRemountSys:
      return "mounting /sys for the network namespace";
    case kStepExec:
      return "exec";
    case kStepParentGone:
      return "starting (the launcher exited)";
    default:
      return "starting";
  }
}

struct ChildError {
  int step;
  int err;
};

[[noreturn]] void ChildFail(int error_fd, int step) {
  const ChildError e{step, errno};
  // Best effort: the parent treats a short read as "exec failed, unknown".
  [[maybe_unused]] ssize_t n = ::write(error_fd, &e, sizeof(e));
  ::_exit(127);
}

// Runs in the child between fork and exec: async-signal-safe calls only.
[[noreturn]] void ChildMain(const SpawnOptions& o, pid_t parent, const char* path, char** argv,
                            char** envp, int out_w, int err_w, int error_fd, int stdin_fd,
                            int netns_fd) {
  if (o.own_process_group) ::setpgid(0, 0);
  if (o.parent_death_signal != 0) {
    ::prctl(PR_SET_PDEATHSIG, o.parent_death_signal);
    // The launcher may have died before prctl took effect.
    if (::getppid() != parent) ChildFail(error_fd, kStepParentGone);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGQUIT}) ::signal(sig, SIG_DFL);

  if (netns_fd >= 0) {
    if (::setns(netns_fd, CLONE_NEWNET) != 0) ChildFail(error_fd, kStepSetns);
    // /sys shows the network devices of the namespace that mounted it; give
    // the child its own mount namespace with a /sys of the new one.
    if (::unshare(CLONE_NEWNS) != 0) ChildFail(error_fd, kStepUnshareMounts);
    if (::mount("", "/", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) {
      ChildFail(error_fd, kStepUnshareMounts);
    }
    ::umount2("/sys", MNT_DETACH);
    if (::mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0) ChildFail(error_fd, kStepRemountSys);
    ::close(netns_fd);
  }

  if (::dup2(stdin_fd, STDIN_FILENO) < 0) ChildFail(error_fd, kStepStdio);
  if (out_w >= 0 && ::dup2(out_w, STDOUT_FILENO) < 0) ChildFail(error_fd, kStepStdio);
  if (err_w >= 0 && ::dup2(err_w, STDERR_FILENO) < 0) ChildFail(error_fd, kStepStdio);
  ::execve(path, argv, envp);
  ChildFail(error_fd, kStepExec);
}

absl::Status MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return StatusFromErrno(errno, "pipe2");
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ResolveProgram(absl::string_view program, absl::string_view path_list) {
  if (program.empty()) return absl::InvalidArgumentError("empty command");
  if (program.find('/') != absl::string_view::npos) {
    const std::string path(program);
    if (::access(path.c_str(), X_OK) != 0) {
      return StatusFromErrno(errno, absl::StrCat("command '", program, "'"));
    }
    return path;
  }
  for (absl::string_view dir : absl::StrSplit(path_list, ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", program);
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("command '", program, "' not found in PATH '", path_list, "'"));
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Spawn(const SpawnOptions& o) {
  if (o.argv.empty()) return absl::InvalidArgumentError("spawn: empty argv");
  std::string path_list = GetEnv(o.env, "PATH");
  if (path_list.empty()) path_list = "/usr/local/bin:/usr/bin:/bin";
  TR_ASSIGN_OR_RETURN(const std::string path, ResolveProgram(o.argv[0], path_list));

  // Everything the child needs is prepared before fork: no allocation after.
  std::vector<std::string> args = o.argv;
  std::vector<std::string> envs = o.env;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);

  UniqueFd out_r, out_w, err_r, err_w, error_r, error_w;
  if (o.capture_output) {
    TR_RETURN_IF_ERROR(MakePipe(&out_r, &out_w));
    TR_RETURN_IF_ERROR(MakePipe(&err_r, &err_w));
  }
  TR_RETURN_IF_ERROR(MakePipe(&error_r, &error_w));
  UniqueFd devnull;
  int stdin_fd = o.stdin_fd;
  if (stdin_fd < 0) {
    devnull.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull.valid()) return StatusFromErrno(errno, "open /dev/null");
    stdin_fd = devnull.get();
  }
  UniqueFd netns;
  if (!o.netns_path.empty()) {
    netns.Reset(::open(o.netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns.valid()) {
      return StatusFromErrno(errno, absl::StrCat("network namespace ", o.netns_path));
    }
  }

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return StatusFromErrno(errno, absl::StrCat("fork for ", path));
  if (pid == 0) {
    ChildMain(o, parent, path.c_str(), argv.data(), envp.data(), out_w.get(), err_w.get(),
              error_w.get(), stdin_fd, netns.get());
  }
  // Also from the parent, so the group exists before anyone signals it.
  if (o.own_process_group) ::setpgid(pid, pid);
  std::unique_ptr<Subprocess> child(new Subprocess(pid, o.own_process_group));
  out_w.Reset();
  err_w.Reset();
  error_w.Reset();

  // EOF (exec closed the pipe) means the exec succeeded.
  ChildError e{0, 0};
  ssize_t n;
  do {
    n = ::read(error_r.get(), &e, sizeof(e));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    child->WaitUntil(absl::InfiniteFuture());  // it _exits right after writing
    const std::string what = absl::StrCat(StepName(e.step), " for '", path, "'");
    if (n != sizeof(e)) return absl::InternalError(absl::StrCat(what, ": failed"));
    return StatusFromErrno(e.err, what);
  }
  for (UniqueFd* fd : {&out_r, &err_r}) {
    if (fd->valid()) ::fcntl(fd->get(), F_SETFL, ::fcntl(fd->get(), F_GETFL) | O_NONBLOCK);
  }
  child->stdout_ = std::move(out_r);
  child->stderr_ = std::move(err_r);
  return child;
}

Subprocess::~Subprocess() {
  if (!exited_) {
    Signal(SIGKILL);
    WaitUntil(absl::InfiniteFuture());
  }
}

void Subprocess::Signal(int sig) {
  if (own_group_) {
    // ESRCH: the whole group is gone; nothing to do.
    if (::kill(-pid_, sig) == 0 || exited_) return;
  }
  if (!exited_) ::kill(pid_, sig);
}

bool Subprocess::Poll() {
  if (exited_) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    exited_ = true;
    // ECHILD: someone else reaped it (should not happen); report as killed.
    wait_status_ = r == pid_ ? status : SIGKILL;
  }
  return exited_;
}

bool Subprocess::WaitUntil(absl::Time deadline) {
  absl::Duration sleep = absl::Microseconds(200);
  while (!Poll()) {
    const absl::Time now = absl::Now();
    if (now >= deadline) return false;
    absl::SleepFor(std::min(sleep, deadline - now));
    sleep = std::min(sleep * 2, absl::Milliseconds(20));
  }
  return true;
}

bool Subprocess::succeeded() const {
  return exited_ && WIFEXITED(wait_status_) && WEXITSTATUS(wait_status_) == 0;
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return absl::StrCat("exited with status ", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    const char* name = ::strsignal(sig);
    return absl::StrCat("killed by signal ", sig, " (", name != nullptr ? name : "?", ")",
                        WCOREDUMP(wait_status) ? ", core dumped" : "");
  }
  return absl::StrCat("stopped (wait status ", wait_status, ")");
}

absl::StatusOr<std::string> RunCommand(const std::vector<std::string>& argv,
                                       absl::string_view input, absl::Time deadline) {
  UniqueFd in_r, in_w;
  TR_RETURN_IF_ERROR(MakePipe(&in_r, &in_w));
  SpawnOptions o;
  o.argv = argv;
  o.env = CurrentEnvironment();
  o.stdin_fd = in_r.get();
  TR_ASSIGN_OR_RETURN(std::unique_ptr<Subprocess> child, Subprocess::Spawn(o));
  in_r.Reset();
  // Helper inputs are small (a batch of `ip` lines); larger ones would need
  // to be interleaved with reading the output.
  const std::string cmdline = absl::StrJoin(argv, " ");
  if (input.size() > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat(cmdline, ": input of ", input.size(), " bytes exceeds 65536"));
  }
  size_t written = 0;
  while (written < input.size()) {
    const ssize_t n = ::write(in_w.get(), input.data() + written, input.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;  // the command exited early; its status says why
    written += n;
  }
  in_w.Reset();

  std::string output;
  std::vector<UniqueFd*> open = {&child->stdout_fd(), &child->stderr_fd()};
  char buf[4096];
  while (open[0]->valid() || open[1]->valid()) {
    pollfd p[2];
    int count = 0;
    for (UniqueFd* fd : open) {
      if (fd->valid()) p[count++] = pollfd{fd->get(), POLLIN, 0};
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      child->Signal(SIGKILL);
      return absl::DeadlineExceededError(absl::StrCat(cmdline, ": timed out; output: ", output));
    }
    const int rc = ::poll(p, count, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (rc < 0 && errno != EINTR) return StatusFromErrno(errno, "poll");
    for (UniqueFd* fd : open) {
      if (!fd->valid()) continue;
      const ssize_t n = ::read(fd->get(), buf, sizeof(buf));
      if (n > 0) {
        output.append(buf, n);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        fd->Reset();
      }
    }
  }
  if (!child->WaitUntil(deadline)) {
    child->Signal(SIGKILL);
    return absl::DeadlineExceededError(absl::StrCat(cmdline, ": timed out"));
  }
  if (!child->succeeded()) {
    return absl::InternalError(absl::StrCat(cmdline, ": ", DescribeWaitStatus(child->wait_status()),
                                            ": ", absl::StripTrailingAsciiWhitespace(output)));
  }
  return output;
}

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

void SetEnv(std::vector<std::string>* env, absl::string_view name, absl::string_view value) {
  const std::string prefix = absl::StrCat(name, "=");
  for (std::string& e : *env) {
    if (absl::StartsWith(e, prefix)) {
      e = absl::StrCat(prefix, value);
      return;
    }
  }
  env->push_back(absl::StrCat(prefix, value));
}

std::string GetEnv(const std::vector<std::string>& env, absl::string_view name) {
  const std::string prefix = absl::StrCat(name, "=");
  for (const std::string& e : env) {
    if (absl::StartsWith(e, prefix)) return e.substr(prefix.size());
  }
  return "";
}

}  // namespace launch
}  // namespace tokenrail
