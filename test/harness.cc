#include "test/harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/proc_file.h"
#include "tools/launch/run_dir.h"

namespace tokenrail {
namespace testing {
namespace {

std::string RequiredEnv(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    std::fprintf(stderr, "harness: environment variable %s is not set (see test/BUILD)\n", name);
    std::abort();
  }
  // Runfiles paths are relative to the test's working directory; make them
  // absolute so they survive the launcher's children changing nothing.
  if (v[0] == '/') return v;
  char cwd[4096];
  return absl::StrCat(::getcwd(cwd, sizeof(cwd)) != nullptr ? cwd : ".", "/", v);
}

// "pid (comm) S ..." -> state character, or 0 when the process is gone.
char ProcessState(const std::string& pid) {
  const std::string stat = ReadProcFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return 0;
  return stat[close + 2];
}

std::vector<std::string> Scan(const std::string& job_id, const std::string& run_dir,
                              const std::string& netns_prefix) {
  std::vector<std::string> found;
  const std::string self = absl::StrCat(::getpid());
  if (DIR* proc = ::opendir("/proc")) {
    while (dirent* e = ::readdir(proc)) {
      int pid = 0;
      if (!absl::SimpleAtoi(e->d_name, &pid) || e->d_name == self) continue;
      const char state = ProcessState(e->d_name);
      if (state == 0 || state == 'Z' || state == 'X') continue;
      const std::string cmdline = ReadProcFile(absl::StrCat("/proc/", pid, "/cmdline"));
      const std::string environ = ReadProcFile(absl::StrCat("/proc/", pid, "/environ"));
      const bool mentions_job = !job_id.empty() && (absl::StrContains(cmdline, job_id) ||
                                                    absl::StrContains(environ, job_id));
      const bool mentions_dir = !run_dir.empty() && (absl::StrContains(cmdline, run_dir) ||
                                                     absl::StrContains(environ, run_dir));
      if (mentions_job || mentions_dir) {
        std::string shown = cmdline.substr(0, 160);
        for (char& c : shown) {
          if (c == '\0') c = ' ';
        }
        found.push_back(absl::StrCat("process ", pid, " (", std::string(1, state), "): ", shown));
      }
    }
    ::closedir(proc);
  }
  struct stat st;
  if (!run_dir.empty() && ::stat(run_dir.c_str(), &st) == 0) {
    found.push_back(absl::StrCat("run directory ", run_dir));
  }
  if (!netns_prefix.empty()) {
    if (DIR* ns = ::opendir("/run/netns")) {
      while (dirent* e = ::readdir(ns)) {
        if (absl::StartsWith(e->d_name, netns_prefix + "-")) {
          found.push_back(absl::StrCat("network namespace ", e->d_name));
        }
      }
      ::closedir(ns);
    }
  }
  // Sockets of a per-rank cluster launch live outside the run directory.
  if (!job_id.empty()) {
    if (DIR* tmp = ::opendir("/tmp")) {
      while (dirent* e = ::readdir(tmp)) {
        if (absl::StrContains(e->d_name, job_id)) {
          found.push_back(absl::StrCat("file /tmp/", e->d_name));
        }
      }
      ::closedir(tmp);
    }
  }
  return found;
}

std::set<pid_t>& OwnedPids() {
  static auto* pids = new std::set<pid_t>;
  return *pids;
}

}  // namespace

std::map<std::string, std::string> ParseFields(absl::string_view text) {
  std::map<std::string, std::string> out;
  const size_t msg = text.find(" msg=");
  if (msg != absl::string_view::npos) {
    out["msg"] = std::string(text.substr(msg + 5));
    text = text.substr(0, msg);
  }
  for (absl::string_view item : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    const size_t eq = item.find('=');
    if (eq != absl::string_view::npos)
      out[std::string(item.substr(0, eq))] = std::string(item.substr(eq + 1));
  }
  return out;
}

class LaunchedJob::Collector : public launch::OutputSink {
 public:
  explicit Collector(LaunchedJob* job) : job_(job) {}
  void Line(absl::string_view, launch::Stream, absl::string_view line) override {
    OutputLine l;
    l.time = absl::Now();
    if (absl::StartsWith(line, "[")) {
      const size_t close = line.find("] ");
      if (close != absl::string_view::npos) {
        l.label = std::string(line.substr(1, close - 1));
        l.text = std::string(line.substr(close + 2));
        job_->lines_.push_back(std::move(l));
        job_->Absorb(job_->lines_.back());
        return;
      }
    }
    l.text = std::string(line);
    job_->lines_.push_back(std::move(l));
  }

 private:
  LaunchedJob* job_;
};

void LaunchedJob::Absorb(const OutputLine& line) {
  if (line.label != "launch") return;
  absl::string_view t = line.text;
  if (absl::ConsumePrefix(&t, "started ")) {
    const size_t pid_at = t.find(" pid ");
    if (pid_at == absl::string_view::npos) return;
    absl::string_view who = t.substr(0, pid_at);
    absl::string_view rest = t.substr(pid_at + 5);
    int pid = 0, n = 0;
    if (!absl::SimpleAtoi(rest.substr(0, rest.find_first_of(": ")), &pid)) return;
    if (absl::ConsumePrefix(&who, "daemon of node ") && absl::SimpleAtoi(who, &n)) {
      daemon_pids_[n] = pid;
    } else if (absl::ConsumePrefix(&who, "rank ") &&
               absl::SimpleAtoi(who.substr(0, who.find(' ')), &n)) {
      rank_pids_[n] = pid;
    }
    return;
  }
  if (run_dir_.empty() && absl::StartsWith(t, "job ")) {
    job_id_ = std::string(t.substr(4, t.find(':') - 4));
    const size_t dir = t.find("run dir ");
    if (dir != absl::string_view::npos) run_dir_ = std::string(t.substr(dir + 8));
    const size_t ns = t.find("network namespaces ");
    if (ns != absl::string_view::npos) {
      absl::string_view name = t.substr(ns + 19);
      netns_prefix_ = std::string(name.substr(0, name.find("-{")));
    }
  }
}

absl::StatusOr<std::unique_ptr<LaunchedJob>> LaunchedJob::Start(const LaunchSpec& spec) {
  std::unique_ptr<LaunchedJob> job(new LaunchedJob());
  job->job_id_ = spec.job_id;
  const bool derive = job->job_id_ == "derive";  // cluster mode derives it
  if (job->job_id_.empty()) {
    absl::StatusOr<std::string> hex = launch::RandomHex(4);
    if (!hex.ok()) return hex.status();
    job->job_id_ = absl::StrCat("t-", *hex);
  }
  launch::SpawnOptions o;
  o.argv = {LauncherPath(), absl::StrCat("--daemon=", DaemonPath()), "--verbose"};
  if (!derive) o.argv.push_back(absl::StrCat("--job_id=", job->job_id_));
  o.argv.insert(o.argv.end(), spec.launcher_flags.begin(), spec.launcher_flags.end());
  o.argv.push_back("--");
  if (spec.command.empty()) {
    o.argv.push_back(RankPath());
  } else {
    o.argv.insert(o.argv.end(), spec.command.begin(), spec.command.end());
  }
  o.env = launch::CurrentEnvironment();
  for (const std::string& kv : spec.extra_env) {
    const size_t eq = kv.find('=');
    launch::SetEnv(&o.env, kv.substr(0, eq), kv.substr(eq + 1));
  }
  // The launcher is the process under test: it must not be tied to this
  // thread's life, and it keeps the harness's process group semantics.
  o.parent_death_signal = SIGKILL;
  absl::StatusOr<std::unique_ptr<launch::Subprocess>> sub = launch::Subprocess::Spawn(o);
  if (!sub.ok()) return sub.status();
  job->launcher_ = std::move(sub).value();
  OwnedPids().insert(job->launcher_->pid());
  job->collector_ = std::make_unique<Collector>(job.get());
  job->out_ =
      std::make_unique<launch::LineSplitter>("", launch::Stream::kStdout, job->collector_.get());
  job->err_ =
      std::make_unique<launch::LineSplitter>("", launch::Stream::kStderr, job->collector_.get());
  return job;
}

LaunchedJob::~LaunchedJob() {
  if (launcher_ != nullptr && !launcher_->exited()) {
    ::kill(launcher_->pid(), SIGKILL);
    launcher_->WaitUntil(absl::Now() + absl::Seconds(10));
  }
  if (launcher_ != nullptr) OwnedPids().erase(launcher_->pid());
}

const OutputLine* LaunchedJob::WaitForLine(const std::function<bool(const OutputLine&)>& pred,
                                           absl::Time deadline) {
  size_t checked = 0;
  for (;;) {
    for (; checked < lines_.size(); ++checked) {
      if (pred(lines_[checked])) return &lines_[checked];
    }
    UniqueFd* fds[2] = {&launcher_->stdout_fd(), &launcher_->stderr_fd()};
    launch::LineSplitter* splitters[2] = {out_.get(), err_.get()};
    pollfd p[2];
    int count = 0;
    int which[2];
    for (int i = 0; i < 2; ++i) {
      if (!fds[i]->valid()) continue;
      which[count] = i;
      p[count++] = pollfd{fds[i]->get(), POLLIN, 0};
    }
    if (count == 0) {
      // Both pipes closed: the launcher and everything holding its output
      // (the janitor included) are gone.
      launcher_->WaitUntil(deadline);
      return nullptr;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return nullptr;
    ::poll(p, count, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left), 100)) + 1);
    for (int k = 0; k < count; ++k) {
      if (p[k].revents == 0) continue;
      const int i = which[k];
      if (!splitters[i]->DrainFrom(fds[i]->get())) fds[i]->Reset();
    }
    ReapOrphans();
  }
}

int LaunchedJob::Wait(absl::Time deadline) {
  WaitForLine([](const OutputLine&) { return false; }, deadline);
  if (!launcher_->WaitUntil(deadline)) return -1;
  const int status = launcher_->wait_status();
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

std::string LaunchedJob::Transcript() const {
  std::string out;
  for (const OutputLine& l : lines_) {
    absl::StrAppend(&out, l.label.empty() ? "" : absl::StrCat("[", l.label, "] "), l.text, "\n");
  }
  return out;
}

std::vector<const OutputLine*> LaunchedJob::Tagged(absl::string_view tag) const {
  std::vector<const OutputLine*> out;
  for (const OutputLine& l : lines_) {
    if (absl::StartsWith(l.text, tag) &&
        (l.text.size() == tag.size() || l.text[tag.size()] == ' ')) {
      out.push_back(&l);
    }
  }
  return out;
}

pid_t LaunchedJob::DaemonPid(int node) const {
  auto it = daemon_pids_.find(node);
  return it == daemon_pids_.end() ? 0 : it->second;
}

pid_t LaunchedJob::RankPid(int rank) const {
  auto it = rank_pids_.find(rank);
  return it == rank_pids_.end() ? 0 : it->second;
}

std::vector<std::string> Leftovers(const std::string& job_id, const std::string& run_dir,
                                   const std::string& netns_prefix, absl::Duration settle) {
  const absl::Time deadline = absl::Now() + settle;
  for (;;) {
    ReapOrphans();
    std::vector<std::string> found = Scan(job_id, run_dir, netns_prefix);
    if (found.empty() || absl::Now() >= deadline) return found;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

void BecomeSubreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }

void ReapOrphans() {
  // Zombie children that no LaunchedJob owns: orphans the kernel handed us
  // after a launcher died. Owned launchers are reaped by their Subprocess.
  const pid_t self = ::getpid();
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return;
  std::vector<pid_t> zombies;
  while (dirent* e = ::readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid) || OwnedPids().count(pid) > 0) continue;
    const std::string stat = ReadProcFile(absl::StrCat("/proc/", pid, "/stat"));
    const size_t close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'Z') continue;
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    int ppid = 0;
    if (f.size() > 1 && absl::SimpleAtoi(f[1], &ppid) && ppid == self) zombies.push_back(pid);
  }
  ::closedir(proc);
  for (pid_t pid : zombies) {
    int status;
    ::waitpid(pid, &status, WNOHANG);
  }
}

std::vector<std::string> CheckExchange(const LaunchedJob& job, int nodes, int ranks_per_node) {
  std::vector<std::string> problems;
  const int world = nodes * ranks_per_node;
  for (int rank = 0; rank < world; ++rank) {
    const int node = rank / ranks_per_node;
    const std::string label = absl::StrCat("n", node, "/r", rank);
    bool topology = false, result = false;
    for (const OutputLine& l : job.lines()) {
      if (l.label != label) continue;
      std::map<std::string, std::string> f = ParseFields(l.text);
      if (absl::StartsWith(l.text, "TR_TOPOLOGY ")) {
        topology = f["rank"] == absl::StrCat(rank) && f["node"] == absl::StrCat(node) &&
                   f["local"] == absl::StrCat(rank % ranks_per_node) &&
                   f["world"] == absl::StrCat(world) && f["nodes"] == absl::StrCat(nodes) &&
                   f["job"] == job.job_id();
        if (!topology) problems.push_back(absl::StrCat(label, ": wrong topology: ", l.text));
      }
      if (absl::StartsWith(l.text, "TR_RESULT ")) {
        result =
            f["ok"] == "1" && f["rank"] == absl::StrCat(rank) && f["notifications"] == f["puts"];
        if (!result) problems.push_back(absl::StrCat(label, ": bad result: ", l.text));
      }
      if (absl::StartsWith(l.text, "TR_ERROR "))
        problems.push_back(absl::StrCat(label, ": ", l.text));
    }
    if (!topology && !result) problems.push_back(absl::StrCat(label, ": no TR_TOPOLOGY/TR_RESULT"));
  }
  return problems;
}

std::string LauncherPath() { return RequiredEnv("TR_LAUNCH"); }
std::string DaemonPath() { return RequiredEnv("TR_DAEMON"); }
std::string RankPath() { return RequiredEnv("TR_RANK"); }

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace testing
}  // namespace tokenrail
