#include "runtime/daemon/test_cluster.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status.h"

extern char** environ;

namespace tokenrail {
namespace runtime {
namespace testing {
namespace {

// Unique across processes and runs (sandboxed tests share /tmp and may
// reuse small pids).
std::string NewJobId() {
  static std::atomic<int> counter{0};
  static const uint32_t run = absl::Uniform<uint32_t>(absl::BitGen());
  return absl::StrCat("dt-", absl::Hex(run), "-", ::getpid(), "-", counter++);
}

coordinator::CoordinatorOptions CoordinatorFor(const ClusterConfig& c) {
  coordinator::CoordinatorOptions o;
  o.heartbeat_interval = c.heartbeat_interval;
  o.heartbeat_timeout = c.heartbeat_timeout;
  return o;
}

}  // namespace

TestCluster::TestCluster(ClusterConfig config)
    : config_(config),
      job_id_(NewJobId()),
      coordinator_(
          std::make_unique<coordinator::testing::TestCoordinator>(CoordinatorFor(config))) {}

TestCluster::~TestCluster() {
  // Leave the job the way tokenraild does on SIGTERM, so that teardown is not
  // mistaken for dead nodes (daemons that finished already return at once).
  for (auto& d : daemons_) {
    if (d != nullptr) d->RequestDrain("test teardown", absl::Seconds(2));
  }
  for (auto& d : daemons_) {
    if (d != nullptr) (void)d->Wait();
  }
  daemons_.clear();
  coordinator_.reset();
  for (int n = 0; n < config_.nodes; ++n) {
    const std::string dir = absl::StrCat("/tmp/", job_id_, "-d", n);
    ::unlink((dir + "/ready").c_str());
    ::unlink((dir + "/token").c_str());
    ::rmdir(dir.c_str());
    ::unlink(SocketPath(n).c_str());
  }
}

std::string TestCluster::SocketPath(int node) const {
  return absl::StrCat("/tmp/", job_id_, "-n", node, ".sock");
}

DaemonOptions TestCluster::DaemonOptionsFor(int node) const {
  DaemonOptions o;
  o.node_id = node;
  o.job_id = job_id_;
  o.coordinator = coordinator_->address();
  o.coordinator_client.auth_token = coordinator::testing::kTestToken;
  o.node_server.auth_token = coordinator::testing::kTestToken;
  o.socket_path = SocketPath(node);
  o.arena_bytes = config_.arena_bytes;
  o.transports = "ucx";
  // Emulated nodes on one host talk TCP, as separate hosts would.
  o.transport_params = {{"tls", "tcp"}};
  o.exit_when_done = config_.exit_when_done;
  o.join_timeout = absl::Seconds(60);
  o.drain_timeout = absl::Seconds(5);
  return o;
}

absl::Status TestCluster::Start() {
  TR_RETURN_IF_ERROR(
      coordinator_
          ->CreateJob(coordinator::testing::Spec(config_.nodes, config_.ranks_per_node), job_id_)
          .status());
  std::vector<absl::Status> results(static_cast<size_t>(config_.nodes));
  std::vector<std::thread> starters;
  for (int n = 0; n < config_.nodes; ++n) {
    daemons_.push_back(std::make_unique<Daemon>(DaemonOptionsFor(n)));
  }
  for (int n = 0; n < config_.nodes; ++n) {
    starters.emplace_back([this, n, &results] {
      results[static_cast<size_t>(n)] = daemons_[static_cast<size_t>(n)]->Start();
    });
  }
  for (std::thread& t : starters) t.join();
  for (int n = 0; n < config_.nodes; ++n) {
    if (!results[static_cast<size_t>(n)].ok()) {
      return Annotate(results[static_cast<size_t>(n)], absl::StrCat("starting node ", n));
    }
  }
  return absl::OkStatus();
}

AttachOptions TestCluster::Attach(int node, int local_rank) const {
  AttachOptions o;
  o.socket_path = SocketPath(node);
  o.local_rank = local_rank;
  o.attach_timeout = absl::Seconds(10);
  o.op_timeout = absl::Seconds(60);
  return o;
}

absl::StatusOr<pid_t> TestCluster::SpawnRank(int node, int local_rank,
                                             const std::vector<std::string>& args,
                                             int* stdout_fd) const {
  const char* program = std::getenv("TR_TEST_RANK");
  if (program == nullptr) return absl::FailedPreconditionError("TR_TEST_RANK is not set");
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return StatusFromErrno(errno, "pipe2");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  std::vector<std::string> env_strings = {
      absl::StrCat("TOKENRAIL_SOCKET=", SocketPath(node)),
      absl::StrCat("TOKENRAIL_LOCAL_RANK=", local_rank),
      absl::StrCat("TOKENRAIL_NODE_ID=", node),
      absl::StrCat("TOKENRAIL_JOB_ID=", job_id_),
  };
  for (char** e = environ; *e != nullptr; ++e) env_strings.push_back(*e);
  std::vector<char*> env;
  for (std::string& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  std::vector<std::string> argv_strings = {program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid;
  const int rc = posix_spawn(&pid, program, &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    return StatusFromErrno(rc, absl::StrCat("spawning ", program));
  }
  *stdout_fd = out[0];
  return pid;
}

std::string TestCluster::ReadyFile(int node) const {
  return absl::StrCat("/tmp/", job_id_, "-d", node, "/ready");
}

std::vector<std::string> TestCluster::DaemonArgs(int node,
                                                 const std::vector<std::string>& extra) const {
  const std::string dir = absl::StrCat("/tmp/", job_id_, "-d", node);
  ::mkdir(dir.c_str(), 0700);
  const std::string token = dir + "/token";
  {
    std::ofstream f(token);
    f << coordinator::testing::kTestToken << "\n";
  }
  ::chmod(token.c_str(), 0600);
  const DaemonOptions o = DaemonOptionsFor(node);
  std::vector<std::string> args = {
      absl::StrCat("--node_id=", node),
      absl::StrCat("--job_id=", o.job_id),
      absl::StrCat("--coordinator=", o.coordinator),
      absl::StrCat("--auth_token_file=", token),
      absl::StrCat("--socket=", o.socket_path),
      absl::StrCat("--arena_bytes=", o.arena_bytes),
      "--transport_params=tls=tcp",
      absl::StrCat("--ready_file=", ReadyFile(node)),
  };
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) Kill();
}

absl::Status DaemonProcess::Start(const std::vector<std::string>& args) {
  const char* binary = std::getenv("TR_TOKENRAILD");
  if (binary == nullptr) return absl::FailedPreconditionError("TR_TOKENRAILD is not set");
  std::vector<std::string> all = {binary};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = posix_spawn(&pid_, binary, nullptr, nullptr, argv.data(), environ);
  if (rc != 0) return StatusFromErrno(rc, absl::StrCat("spawning ", binary));
  return absl::OkStatus();
}

absl::StatusOr<std::string> DaemonProcess::WaitReady(const std::string& ready_file,
                                                     absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    std::ifstream f(ready_file);
    if (f) {
      std::stringstream ss;
      ss << f.rdbuf();
      return ss.str();
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("tokenraild exited before it was ready (wait status ", status, ")"));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError("tokenraild did not write its ready file");
}

void DaemonProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void DaemonProcess::Signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

int DaemonProcess::Wait(absl::Duration timeout) {
  const int status = WaitExit(pid_, timeout);
  pid_ = -1;
  return status;
}

int ReadyValue(const std::string& text, const std::string& key) {
  const std::string prefix = key + "=";
  size_t pos = text.find(prefix);
  if (pos == std::string::npos) return -1;
  return std::atoi(text.c_str() + pos + prefix.size());
}

bool WaitForLine(int fd, const std::string& line, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  std::string buf;
  while (absl::Now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char chunk[256];
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n <= 0) return false;
    buf.append(chunk, static_cast<size_t>(n));
    size_t pos;
    while ((pos = buf.find('\n')) != std::string::npos) {
      if (buf.substr(0, pos) == line) return true;
      buf.erase(0, pos + 1);
    }
  }
  return false;
}

int WaitExit(pid_t pid, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  int status = 0;
  while (absl::Now() < end) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

}  // namespace testing
}  // namespace runtime
}  // namespace tokenrail
