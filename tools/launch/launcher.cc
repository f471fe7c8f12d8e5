#include "tools/launch/launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/errno_status.h"
#include "common/fd.h"
#include "common/rpc/auth.h"
#include "common/status.h"
#include "tools/launch/launcher_impl.h"
#include "tools/launch/subprocess.h"

namespace tokenrail {
namespace launch {
namespace {

// Where a hosted coordinator listens inside node 0's fresh namespace.
constexpr int kNetnsCoordinatorPort = 29400;

absl::StatusOr<int> FreeLoopbackPort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return StatusFromErrno(errno, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return StatusFromErrno(errno, "picking a free port on 127.0.0.1");
  }
  return static_cast<int>(ntohs(a.sin_port));
}

std::string SignalName(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return absl::StrCat("signal ", sig);
  }
}

std::string BaseName(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

}  // namespace

std::string Seconds(absl::Duration d) {
  return absl::StrCat(absl::ToDoubleSeconds(d) < 10
                          ? absl::StrFormat("%.1f", absl::ToDoubleSeconds(d))
                          : absl::StrCat(absl::ToInt64Seconds(d)),
                      " s");
}

absl::Status ValidateOptions(const LaunchOptions& o) {
  const ClusterPlacement& p = o.placement;
  if (o.command.empty() || o.command[0].empty()) {
    return absl::InvalidArgumentError(
        "no command: usage is tokenrail-launch [flags] -- COMMAND...");
  }
  // Before anything starts: a typo should not cost a cluster start-up.
  TR_RETURN_IF_ERROR(ResolveProgram(o.command[0], GetEnv(CurrentEnvironment(), "PATH")).status());
  if (p.nodes < 1) return absl::InvalidArgumentError(absl::StrCat("--nodes=", p.nodes, " < 1"));
  if (p.ranks_per_node < 1 || p.ranks_per_node > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ranks-per-node=", p.ranks_per_node, " is not in 1..255"));
  }
  if (o.daemon_path.empty()) return absl::InvalidArgumentError("--daemon: tokenraild not found");
  if (p.kind != ClusterKind::kLocal) {
    if (o.netns) {
      return absl::InvalidArgumentError(
          "--netns emulates a cluster on one machine; it cannot be combined with --cluster");
    }
    if (o.auth_token_file.empty() && !o.no_auth) {
      return absl::InvalidArgumentError(
          "cluster mode: every node needs the same token; pass --auth_token_file=FILE on a shared "
          "filesystem (mode 0600), or --no_auth on a trusted network");
    }
    if (p.job_id.empty()) return absl::InvalidArgumentError("cluster mode: no job id");
  }
  if (o.netns && p.nodes > NetnsCluster::kMaxNodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--netns supports at most ", NetnsCluster::kMaxNodes, " nodes"));
  }
  if (o.netns) TR_RETURN_IF_ERROR(CheckNetnsPrivileges());
  if (o.timeout < absl::ZeroDuration()) return absl::InvalidArgumentError("--timeout < 0");
  return absl::OkStatus();
}

std::string FindProgram(absl::string_view name, absl::string_view runfiles_path) {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  std::vector<std::string> candidates;
  const std::vector<std::string> env = CurrentEnvironment();
  if (n > 0) {
    const std::string exe(self, n);
    std::string dir = exe.substr(0, exe.rfind('/'));
    candidates.push_back(absl::StrCat(exe, ".runfiles/tokenrail/", runfiles_path));
    candidates.push_back(absl::StrCat(dir, "/", name));
    // bazel-bin: this binary sits in some package below the output root.
    for (int up = 0; up < 4 && dir.size() > 1; ++up) {
      dir = dir.substr(0, dir.rfind('/'));
      candidates.push_back(absl::StrCat(dir, "/", runfiles_path));
    }
  }
  for (const char* var : {"RUNFILES_DIR", "TEST_SRCDIR"}) {
    const std::string root = GetEnv(env, var);
    if (!root.empty()) candidates.push_back(absl::StrCat(root, "/tokenrail/", runfiles_path));
  }
  for (const std::string& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  absl::StatusOr<std::string> in_path = ResolveProgram(name, GetEnv(env, "PATH"));
  return in_path.ok() ? *in_path : "";
}

std::string FindTokenraild() { return FindProgram("tokenraild", "runtime/daemon/tokenraild"); }

int Launcher::Impl::Run() {
  start_ = absl::Now();
  if (o_.timeout > absl::ZeroDuration()) run_deadline_ = start_ + o_.timeout;
  Outcome outcome;
  absl::Status setup = Setup();
  if (!setup.ok()) {
    outcome.exit_code = kExitFailed;
    outcome.reason = setup.ToString();
    if (sup_ != nullptr) {
      sup_->Message(absl::StrCat("error: ", outcome.reason));
    } else {
      sink_->Line("launch", Stream::kStderr, absl::StrCat("error: ", outcome.reason));
    }
  } else {
    outcome = Execute();
    if (outcome.ok()) outcome = StopDaemons();
    if (!outcome.ok()) HandleFailure(outcome);
  }
  const absl::Status cleanup = Cleanup();
  if (!cleanup.ok()) {
    sink_->Line("launch", Stream::kStderr, absl::StrCat("cleanup: ", cleanup.ToString()));
    if (outcome.ok()) outcome.exit_code = kExitFailed;
  }
  if (outcome.ok()) {
    sink_->Line("launch", Stream::kStderr,
                absl::StrCat("job ", job_id_, ": all ", world(), " ranks",
                             cluster() ? " of this launcher" : "", " succeeded in ",
                             Seconds(absl::Now() - start_)));
  }
  return outcome.exit_code;
}

absl::Status Launcher::Impl::Setup() {
  TR_RETURN_IF_ERROR(ValidateOptions(o_));
  // The janitor is a fork without exec: start it while single-threaded.
  TR_ASSIGN_OR_RETURN(janitor_, Janitor::Start());
  sup_ = std::make_unique<Supervisor>(sink_, janitor_.get());
  TR_RETURN_IF_ERROR(sup_->Init());
  TR_ASSIGN_OR_RETURN(run_dir_, RunDir::Create(o_.run_dir_parent));
  janitor_->WatchDirectory(run_dir_->path());

  if (!o_.auth_token_file.empty()) {
    token_file_ = o_.auth_token_file;
    TR_ASSIGN_OR_RETURN(o_.client.auth_token, rpc::ReadTokenFile(token_file_));
  } else if (!o_.no_auth) {
    TR_ASSIGN_OR_RETURN(o_.client.auth_token, rpc::GenerateToken());
    token_file_ = run_dir_->token_path();
    TR_RETURN_IF_ERROR(rpc::WriteTokenFile(token_file_, o_.client.auth_token));
  }

  job_id_ = o_.placement.job_id;
  if (job_id_.empty()) {
    TR_ASSIGN_OR_RETURN(const std::string id, RandomHex(4));
    job_id_ = absl::StrCat("job-", id);
  }
  const ClusterPlacement& p = o_.placement;
  if (!cluster()) {
    for (int n = 0; n < p.nodes; ++n) local_nodes_.push_back(n);
  } else if (p.starts_daemon()) {
    local_nodes_.push_back(p.node_id);
  }

  std::string where;
  if (o_.netns) {
    TR_ASSIGN_OR_RETURN(const std::string id, RandomHex(3));
    TR_ASSIGN_OR_RETURN(netns_,
                        NetnsCluster::Create(absl::StrCat("tr", id), p.nodes, janitor_.get()));
    where = absl::StrCat(", network namespaces tr", id, "-{sw,n0..n", p.nodes - 1, "}");
  }
  sup_->Message(absl::StrCat(
      "job ", job_id_, ": ",
      cluster() ? p.Describe() : absl::StrCat(p.nodes, " nodes x ", p.ranks_per_node, " ranks"),
      where, ", run dir ", run_dir_->path()));
  return absl::OkStatus();
}

bool Launcher::Impl::WaitFor(const std::function<bool()>& done, absl::Time deadline,
                             absl::string_view waiting_for, Outcome* out, bool daemons_may_finish) {
  for (;;) {
    const Supervisor::Event e = sup_->Pump(done, deadline);
    switch (e.kind) {
      case Supervisor::Event::Kind::kDone:
        return true;
      case Supervisor::Event::Kind::kExited:
        if ((e.proc->role == Proc::Role::kRank || daemons_may_finish) && e.proc->sub->succeeded()) {
          continue;
        }
        out->exit_code = kExitFailed;
        out->process_failure = true;
        out->culprit = e.proc;
        out->reason = e.proc->DescribeExit();
        if (e.proc->role == Proc::Role::kDaemon) absl::StrAppend(&out->reason, " ", waiting_for);
        return false;
      case Supervisor::Event::Kind::kSignal:
        out->exit_code = 128 + e.signal;
        out->reason = absl::StrCat("interrupted by ", SignalName(e.signal));
        return false;
      case Supervisor::Event::Kind::kDeadline: {
        const bool whole_run = deadline >= run_deadline_;
        out->exit_code = whole_run ? kExitTimeout : kExitFailed;
        out->reason = whole_run ? absl::StrCat("--timeout: the job ran longer than ",
                                               Seconds(o_.timeout), " ", waiting_for)
                                : absl::StrCat("timed out after ", Seconds(o_.startup_timeout), " ",
                                               waiting_for);
        std::vector<std::string> running;
        for (const auto& p : sup_->procs()) {
          if (!p->exited() && p->role == Proc::Role::kRank) running.push_back(p->Name());
        }
        if (!running.empty()) {
          absl::StrAppend(&out->reason, "; still running: ", absl::StrJoin(running, ", "));
        }
        return false;
      }
    }
  }
}

std::string Launcher::Impl::NodeHost(int node) const {
  if (!o_.bind_host.empty()) return o_.bind_host;
  if (netns_ != nullptr) return NetnsCluster::NodeAddress(node);
  return cluster() ? "0.0.0.0" : "127.0.0.1";
}

std::string Launcher::Impl::CoordinatorTarget() const {
  if (cluster()) {
    return absl::StrCat(o_.placement.coordinator_host, ":", o_.placement.coordinator_port);
  }
  return absl::StrCat(netns_ != nullptr ? NetnsCluster::NodeAddress(0) : "127.0.0.1", ":",
                      coordinator_port_);
}

std::string Launcher::Impl::SocketPath(int node) const {
  // Per-rank launchers of one node must all find the daemon: a path derived
  // from the job, not from one instance's private directory.
  if (o_.placement.per_rank()) {
    return absl::StrCat(o_.run_dir_parent.empty() ? "/tmp" : o_.run_dir_parent, "/tokenrail-",
                        job_id_, "-n", node, ".sock");
  }
  return run_dir_->File(absl::StrCat("n", node, ".sock"));
}

std::vector<std::string> Launcher::Impl::DaemonArgv(int node) const {
  std::vector<std::string> argv = {
      o_.daemon_path,
      absl::StrCat("--node_id=", node),
      absl::StrCat("--job_id=", job_id_),
      absl::StrCat("--socket=", SocketPath(node)),
      absl::StrCat("--ready_file=", run_dir_->File(absl::StrCat("n", node, ".ready"))),
      absl::StrCat("--listen=", NodeHost(node), ":0"),
  };
  if (!token_file_.empty()) argv.push_back(absl::StrCat("--auth_token_file=", token_file_));
  const bool hosts = cluster() ? o_.placement.hosts_coordinator() : node == 0;
  if (hosts) {
    argv.push_back("--host_coordinator");
    std::string listen = o_.coordinator_listen;
    if (listen.empty()) {
      listen = cluster() ? absl::StrCat("0.0.0.0:", o_.placement.coordinator_port)
                         : absl::StrCat(NodeHost(0), ":", coordinator_port_);
    }
    argv.push_back(absl::StrCat("--coordinator_listen=", listen));
  } else {
    argv.push_back(absl::StrCat("--coordinator=", CoordinatorTarget()));
  }
  if (o_.arena_bytes > 0) argv.push_back(absl::StrCat("--arena_bytes=", o_.arena_bytes));
  if (!o_.transports.empty()) argv.push_back(absl::StrCat("--transports=", o_.transports));
  // Per-rank launchers: the daemon knows when every local rank is done.
  if (o_.placement.per_rank()) argv.push_back("--exit_when_done");
  std::string params = o_.transport_params;
  if (netns_ != nullptr) {
    // Namespaces share memory: without tls=tcp UCX would pick shared memory
    // and the "network" would never be crossed. Every namespace also has its
    // own loopback, which UCX must not take for a path to another node.
    bool has_tls = false, has_devices = false;
    for (absl::string_view kv : absl::StrSplit(params, ',', absl::SkipEmpty())) {
      has_tls = has_tls || absl::StartsWith(kv, "tls=");
      has_devices = has_devices || absl::StartsWith(kv, "net_devices=");
    }
    std::vector<std::string> added;
    if (!has_tls) added.push_back("tls=tcp");
    if (!has_devices) added.push_back(absl::StrCat("net_devices=", NetnsCluster::kDevice));
    if (!added.empty()) {
      params = absl::StrCat(params, params.empty() ? "" : ",", absl::StrJoin(added, ","));
    }
  }
  if (!params.empty()) argv.push_back(absl::StrCat("--transport_params=", params));
  if (o_.heartbeat_interval_ms > 0) {
    argv.push_back(absl::StrCat("--heartbeat_interval_ms=", o_.heartbeat_interval_ms));
  }
  if (o_.heartbeat_timeout_ms > 0) {
    argv.push_back(absl::StrCat("--heartbeat_timeout_ms=", o_.heartbeat_timeout_ms));
  }
  argv.insert(argv.end(), o_.daemon_flags.begin(), o_.daemon_flags.end());
  return argv;
}

absl::Status Launcher::Impl::StartDaemon(int node) {
  SpawnOptions s;
  s.argv = DaemonArgv(node);
  s.env = CurrentEnvironment();
  if (netns_ != nullptr) s.netns_path = netns_->node_path(node);
  TR_ASSIGN_OR_RETURN(Proc * p,
                      sup_->Start(Proc::Role::kDaemon, node, -1, absl::StrCat("n", node, "/d"), s));
  daemons_[node] = p;
  if (o_.verbose) {
    sup_->Message(absl::StrCat("started ", p->Name(), " pid ", p->sub->pid(), ": ",
                               absl::StrJoin(s.argv, " ")));
  }
  return absl::OkStatus();
}

Outcome Launcher::Impl::AwaitReady(const std::vector<int>& nodes) {
  Outcome out;
  std::vector<int> pending = nodes;
  absl::Status bad_file;
  auto all_ready = [&] {
    for (auto it = pending.begin(); it != pending.end();) {
      absl::StatusOr<DaemonReady> r =
          ReadReadyFile(run_dir_->File(absl::StrCat("n", *it, ".ready")));
      if (r.ok()) {
        ready_[*it] = *r;
        it = pending.erase(it);
      } else {
        if (!absl::IsNotFound(r.status())) bad_file = r.status();
        ++it;
      }
    }
    return pending.empty() || !bad_file.ok();
  };
  const absl::Time deadline = std::min(run_deadline_, absl::Now() + o_.startup_timeout);
  std::vector<std::string> names;
  for (int n : nodes) names.push_back(absl::StrCat(n));
  if (!WaitFor(all_ready, deadline,
               absl::StrCat("while starting (waiting for the ready file of node ",
                            absl::StrJoin(names, ", "), ")"),
               &out)) {
    return out;
  }
  if (!bad_file.ok()) {
    out.exit_code = kExitFailed;
    out.reason = bad_file.ToString();
  }
  return out;
}

absl::Status Launcher::Impl::EnterNamespaceOf(int node) {
  // The coordinator listens on node 0's address, reachable only from inside
  // node 0's namespace: this (main) thread joins it for the launcher's RPCs.
  // gRPC's threads, started after this from this thread, inherit it.
  original_netns_.Reset(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!original_netns_.valid()) return StatusFromErrno(errno, "open /proc/self/ns/net");
  UniqueFd target(::open(netns_->node_path(node).c_str(), O_RDONLY | O_CLOEXEC));
  if (!target.valid()) return StatusFromErrno(errno, netns_->node_path(node));
  if (::setns(target.get(), CLONE_NEWNET) != 0) {
    return StatusFromErrno(errno, absl::StrCat("setns into ", netns_->node_namespace(node)));
  }
  return absl::OkStatus();
}

absl::Status Launcher::Impl::LeaveNamespace() {
  if (!original_netns_.valid()) return absl::OkStatus();
  if (::setns(original_netns_.get(), CLONE_NEWNET) != 0) {
    return StatusFromErrno(errno, "setns back to the launcher's network namespace");
  }
  original_netns_.Reset();
  return absl::OkStatus();
}

Outcome Launcher::Impl::CreateJob() {
  const ClusterPlacement& p = o_.placement;
  v1::JobSpec spec;
  spec.set_name(o_.job_name.empty() ? BaseName(o_.command[0]) : o_.job_name);
  spec.set_nodes(p.nodes);
  spec.set_ranks_per_node(p.ranks_per_node);
  spec.set_experts(o_.experts > 0 ? o_.experts : world());
  spec.set_top_k(o_.top_k);
  spec.set_max_nodes_per_token(o_.max_nodes_per_token > 0 ? o_.max_nodes_per_token : p.nodes);
  // Attempts until the coordinator answers, pumping output meanwhile; its
  // daemon exiting ends the wait with that failure.
  absl::Status refused;
  absl::Time next_attempt;
  auto created = [&] {
    if (absl::Now() < next_attempt) return false;
    next_attempt = absl::Now() + absl::Milliseconds(100);
    absl::StatusOr<v1::Job> job =
        control_->CreateJob(spec, job_id_, absl::Now() + absl::Seconds(1));
    // ALREADY_EXISTS: an attempt whose answer was lost created it.
    if (job.ok() || absl::IsAlreadyExists(job.status())) return true;
    if (absl::IsUnavailable(job.status()) || absl::IsDeadlineExceeded(job.status())) return false;
    refused = job.status();
    return true;
  };
  Outcome out;
  if (!WaitFor(created, std::min(run_deadline_, absl::Now() + o_.startup_timeout),
               "while starting (waiting for the coordinator to create the job)", &out)) {
    return out;
  }
  if (!refused.ok()) {
    out.exit_code = kExitFailed;
    out.reason = refused.ToString();
    return out;
  }
  if (o_.verbose) {
    sup_->Message(absl::StrCat("created job ", job_id_, " on ", control_->coordinator(),
                               ": experts ", spec.experts(), ", top-k ", spec.top_k(),
                               ", max nodes per token ", spec.max_nodes_per_token()));
  }
  return out;
}

absl::Status Launcher::Impl::StartRank(int node, int local_rank) {
  const ClusterPlacement& p = o_.placement;
  const int rank = node * p.ranks_per_node + local_rank;
  SpawnOptions s;
  s.argv = o_.command;
  s.env = CurrentEnvironment();
  SetEnv(&s.env, "TOKENRAIL_SOCKET", SocketPath(node));
  SetEnv(&s.env, "TOKENRAIL_LOCAL_RANK", absl::StrCat(local_rank));
  SetEnv(&s.env, "TOKENRAIL_NODE_ID", absl::StrCat(node));
  SetEnv(&s.env, "TOKENRAIL_JOB_ID", job_id_);
  SetEnv(&s.env, "RANK", absl::StrCat(rank));
  SetEnv(&s.env, "WORLD_SIZE", absl::StrCat(world()));
  SetEnv(&s.env, "LOCAL_RANK", absl::StrCat(local_rank));
  SetEnv(&s.env, "LOCAL_WORLD_SIZE", absl::StrCat(p.ranks_per_node));
  SetEnv(&s.env, "GROUP_RANK", absl::StrCat(node));
  if (netns_ != nullptr) s.netns_path = netns_->node_path(node);
  TR_ASSIGN_OR_RETURN(Proc * proc, sup_->Start(Proc::Role::kRank, node, rank,
                                               absl::StrCat("n", node, "/r", rank), s));
  if (o_.verbose) sup_->Message(absl::StrCat("started ", proc->Name(), " pid ", proc->sub->pid()));
  return absl::OkStatus();
}

Outcome Launcher::Impl::Execute() {
  Outcome out;
  auto fail = [&out](const absl::Status& s) {
    out.exit_code = kExitFailed;
    out.reason = s.ToString();
    return out;
  };
  const ClusterPlacement& p = o_.placement;
  const bool hosts = cluster() ? p.hosts_coordinator() : true;
  std::vector<int> others;
  for (int n : local_nodes_) {
    if (!(hosts && n == 0)) others.push_back(n);
  }
  if (hosts) {
    // The launcher picks the coordinator's port, so the other daemons can be
    // pointed at it before node 0's daemon finished starting (which needs
    // every node to join). A fresh namespace has every port free; on
    // loopback a port the kernel just handed out is taken.
    if (!cluster()) {
      if (netns_ != nullptr) {
        coordinator_port_ = kNetnsCoordinatorPort;
      } else {
        absl::StatusOr<int> port = FreeLoopbackPort();
        if (!port.ok()) return fail(port.status());
        coordinator_port_ = *port;
      }
    }
    if (absl::Status s = StartDaemon(0); !s.ok()) return fail(s);
  }
  if (hosts || cluster()) {
    if (netns_ != nullptr) {
      if (absl::Status s = EnterNamespaceOf(0); !s.ok()) return fail(s);
    }
    absl::StatusOr<std::unique_ptr<ControlClient>> c =
        ControlClient::Create(CoordinatorTarget(), o_.client);
    if (!c.ok()) return fail(c.status());
    control_ = std::move(c).value();
  }
  if (hosts) {
    out = CreateJob();
    if (!out.ok()) return out;
  }
  for (int n : others) {
    if (absl::Status s = StartDaemon(n); !s.ok()) return fail(s);
  }
  out = AwaitReady(local_nodes_);
  if (!out.ok()) return out;
  if (hosts && ready_[0].coordinator_port != 0 && ready_[0].coordinator_port != coordinator_port_ &&
      !cluster()) {
    return fail(absl::InternalError(absl::StrCat("daemon of node 0 reports coordinator port ",
                                                 ready_[0].coordinator_port, ", expected ",
                                                 coordinator_port_)));
  }

  if (!cluster()) {
    for (int n = 0; n < p.nodes; ++n) {
      for (int l = 0; l < p.ranks_per_node; ++l) {
        if (absl::Status s = StartRank(n, l); !s.ok()) return fail(s);
      }
    }
  } else if (!p.per_rank()) {
    for (int l = 0; l < p.ranks_per_node; ++l) {
      if (absl::Status s = StartRank(p.node_id, l); !s.ok()) return fail(s);
    }
  } else {
    if (!p.starts_daemon()) {
      // Another launcher on this node starts the daemon: wait for its socket.
      const std::string socket = SocketPath(p.node_id);
      auto exists = [&socket] {
        struct stat st;
        return ::stat(socket.c_str(), &st) == 0;
      };
      if (!WaitFor(exists, std::min(run_deadline_, absl::Now() + o_.startup_timeout),
                   absl::StrCat("waiting for the node daemon's socket ", socket), &out)) {
        return out;
      }
    }
    if (absl::Status s = StartRank(p.node_id, p.local_index); !s.ok()) return fail(s);
  }

  auto ranks_done = [this] { return sup_->Live(Proc::Role::kRank).empty(); };
  if (!WaitFor(ranks_done, run_deadline_, "while ranks ran", &out)) return out;
  return out;
}

}  // namespace launch
}  // namespace tokenrail
