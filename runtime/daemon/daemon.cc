// Daemon: start-up and the rank-facing callbacks. Failure handling, drain
// and shutdown are in daemon_control.cc.
#include "runtime/daemon/daemon.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "runtime/daemon/node_service.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr char kLog[] = "daemon";
constexpr char kArenaKeyName[] = "arena";
// Longest single GetTopology wait; the loop re-checks drain requests.
constexpr absl::Duration kTopologyPoll = absl::Seconds(5);

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

Daemon::Daemon(DaemonOptions options)
    : options_(std::move(options)), socket_path_(options_.SocketPath()), hostname_(HostName()) {}

Daemon::~Daemon() {
  {
    absl::MutexLock lock(&mu_);
    stop_control_ = true;
  }
  if (control_.joinable()) control_.join();
  StopComponents();
}

absl::Status Daemon::CheckDrainRequested() {
  absl::MutexLock lock(&mu_);
  if (drain_requested_) {
    return absl::CancelledError(
        absl::StrCat("node ", options_.node_id, " drained during start-up: ", drain_reason_));
  }
  return absl::OkStatus();
}

int Daemon::node_port() const { return node_server_ == nullptr ? 0 : node_server_->port(); }

absl::Status Daemon::Start() {
  TR_RETURN_IF_ERROR(options_.Validate());
  control_ = std::thread([this] { ControlLoop(); });
  absl::Status s = StartSteps();
  if (s.ok()) return s;
  TR_LOG(ERROR, kLog) << "node " << options_.node_id << " start-up failed: " << s;
  leaving_.store(true, std::memory_order_release);
  if (coordinator_ != nullptr && coordinator_->joined()) {
    // Tell the coordinator why, rather than letting it find a dead stream.
    absl::Status left = coordinator_->Leave(false, absl::StrCat("start-up failed: ", s.message()));
    if (!left.ok()) TR_LOG(WARNING, kLog) << "leaving the job: " << left;
  }
  StopComponents();
  absl::MutexLock lock(&mu_);
  state_ = State::kFinished;
  finished_ = true;
  result_ = s;
  return s;
}

absl::Status Daemon::StartSteps() {
  const absl::Time deadline = absl::Now() + options_.join_timeout;
  TR_ASSIGN_OR_RETURN(coordinator_,
                      CoordinatorLink::Create(options_.coordinator, options_.coordinator_client));

  // 1. The job's shape sizes everything else.
  TR_ASSIGN_OR_RETURN(v1::Job job, coordinator_->WaitForJob(options_.job_id, deadline));
  spec_ = job.spec();
  if (options_.node_id >= spec_.nodes()) {
    return absl::InvalidArgumentError(absl::StrCat("--node_id ", options_.node_id,
                                                   " is outside job ", options_.job_id, "'s ",
                                                   spec_.nodes(), " nodes"));
  }
  if (job.state() != v1::JOB_PENDING && job.state() != v1::JOB_RUNNING) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", options_.job_id, " is ", v1::JobState_Name(job.state()), "; cannot join it"));
  }
  TR_RETURN_IF_ERROR(CheckDrainRequested());

  // 2. Arena and inter-node transport.
  const int rpn = spec_.ranks_per_node();
  TR_ASSIGN_OR_RETURN(arena_, Arena::Create(options_.arena_bytes, rpn, options_.node_id));
  {
    absl::MutexLock lock(&mu_);
    ever_attached_.assign(static_cast<size_t>(rpn), false);
    attached_.assign(static_cast<size_t>(rpn), false);
  }
  if (spec_.nodes() > 1) {
    transport::TransportOptions topts;
    topts.name = absl::StrCat("tokenraild node ", options_.node_id);
    topts.params = options_.transport_params;
    topts.connect_timeout = options_.join_timeout;
    absl::StatusOr<std::unique_ptr<Fabric>> fabric =
        Fabric::Create(options_.transports, topts, *arena_);
    if (!fabric.ok()) {
      return Annotate(fabric.status(), absl::StrCat("inter-node transport (--transports='",
                                                    options_.transports, "')"));
    }
    fabric_ = *std::move(fabric);
  }

  // 3. NodeService, Join, heartbeats.
  node_service_ = std::make_unique<NodeServiceImpl>(this);
  rpc::ServerOptions sopts = options_.node_server;
  sopts.name = "node";
  TR_ASSIGN_OR_RETURN(node_server_, rpc::Server::Start(sopts, {node_service_.get()}));
  TR_RETURN_IF_ERROR(JoinJob());
  TR_RETURN_IF_ERROR(CheckDrainRequested());

  // 4. Peers.
  TR_RETURN_IF_ERROR(ConnectPeers());
  TR_RETURN_IF_ERROR(CheckDrainRequested());

  // 5. Ranks.
  return StartServing();
}

absl::Status Daemon::JoinJob() {
  coordinator::MemberOptions m;
  m.job_id = options_.job_id;
  m.node_id = options_.node_id;
  m.hostname = hostname_;
  m.local_ranks = spec_.ranks_per_node();
  m.node_service_address = node_server_->address();
  if (fabric_ != nullptr) {
    v1::TransportEndpoint ep;
    ep.set_backend(fabric_->backend());
    ep.set_address(fabric_->address());
    m.endpoints.push_back(std::move(ep));
    v1::MemoryKey key;
    key.set_name(kArenaKeyName);
    key.set_backend(fabric_->backend());
    key.set_key(fabric_->arena_key());
    key.set_size(arena_->size());
    m.memory_keys.push_back(std::move(key));
  }
  TR_RETURN_IF_ERROR(coordinator_->Join(std::move(m)));
  const v1::JoinResponse& joined = coordinator_->join_response();
  TR_LOG(INFO, kLog) << "node " << options_.node_id << " joined job " << options_.job_id
                     << " (heartbeat every " << joined.heartbeat_interval_ms() << " ms, timeout "
                     << joined.heartbeat_timeout_ms() << " ms)";
  WatchCallbacks watch;
  watch.stats = [this] { return Stats(); };
  watch.on_end = [this](const absl::Status& s, const v1::HeartbeatResponse& last) {
    OnJobEnd(s, last);
  };
  watch.on_drain = [this] {
    RequestDrain("the coordinator asked this node to drain", options_.drain_timeout);
  };
  coordinator_->StartWatching(std::move(watch));
  return absl::OkStatus();
}

absl::Status Daemon::ConnectPeers() {
  const absl::Time deadline = absl::Now() + options_.join_timeout;
  v1::Topology topo;
  for (;;) {
    TR_RETURN_IF_ERROR(CheckDrainRequested());
    absl::StatusOr<v1::Topology> t =
        coordinator_->GetTopology(std::min(deadline, absl::Now() + kTopologyPoll));
    if (t.ok() && t->nodes_size() == spec_.nodes()) {
      topo = *std::move(t);
      break;
    }
    if (!t.ok() && t.status().code() != absl::StatusCode::kDeadlineExceeded) return t.status();
    if (t.ok() && (t->state() == v1::JOB_FAILED || t->state() == v1::JOB_CANCELLED)) {
      return absl::UnavailableError(absl::StrCat("job ", options_.job_id, " ended (",
                                                 v1::JobState_Name(t->state()),
                                                 ") while waiting for every node to join"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("not every node of job ", options_.job_id, " joined within ",
                       absl::FormatDuration(options_.join_timeout), " (",
                       t.ok() ? t->nodes_size() : 0, " of ", spec_.nodes(), ")"));
    }
  }
  if (fabric_ == nullptr) return absl::OkStatus();
  for (const v1::NodeInfo& n : topo.nodes()) {
    if (n.node_id() == options_.node_id) continue;
    PeerSpec p;
    p.node_id = n.node_id();
    p.hostname = n.hostname();
    for (const v1::TransportEndpoint& ep : n.endpoints()) {
      if (ep.backend() == fabric_->backend()) p.address = ep.address();
    }
    for (const v1::MemoryKey& key : n.memory_keys()) {
      if (key.name() == kArenaKeyName && key.backend() == fabric_->backend()) {
        p.arena_key = key.key();
        p.arena_bytes = key.size();
      }
    }
    p.backend = fabric_->backend();
    peer_specs_.push_back(std::move(p));
  }
  return fabric_->ConnectPeers(peer_specs_, spec_.ranks_per_node(), deadline);
}

absl::Status Daemon::StartServing() {
  ProxyConfig pc;
  pc.node_id = options_.node_id;
  pc.nodes = spec_.nodes();
  pc.ranks_per_node = spec_.ranks_per_node();
  pc.spin = options_.proxy_spin;
  pc.max_poll_sleep = options_.proxy_max_poll_sleep;
  ProxyCallbacks cb;
  cb.rank_broken = [this](int r, const absl::Status& s) {
    const int g = options_.node_id * spec_.ranks_per_node() + r;
    Fail(absl::UnavailableError(absl::StrCat("job ", options_.job_id, " failed: rank ", g,
                                             " on node ", options_.node_id,
                                             " broke its rings: ", s.message())),
         MakeFailure(g, std::string(s.message())), true);
  };
  cb.peer_failed = [this](int node, const absl::Status& s) { OnPeerFailed(node, s); };
  proxy_ = std::make_unique<Proxy>(*arena_, fabric_.get(), pc, std::move(cb));
  proxy_->Start();

  CollectivesHost ch;
  ch.reply = [this](int r, uint64_t gen, const AttachMessage& m) {
    if (rank_server_ != nullptr) rank_server_->Reply(r, gen, m);
  };
  if (spec_.nodes() > 1) {
    ch.node_barrier = [this](const std::string& name, const std::string& payload,
                             absl::Time deadline) {
      return coordinator_->Barrier(name, options_.node_id, spec_.nodes(), payload, deadline);
    };
  }
  ch.publish_region = [this](const RegionInfo& r) { proxy_->AddRegion(r); };
  collectives_ = std::make_unique<Collectives>(options_.node_id, spec_.nodes(),
                                               spec_.ranks_per_node(), arena_->heap_bytes(),
                                               options_.collective_timeout, std::move(ch));
  collectives_->Start();

  RankServerHost rh;
  rh.attach = [this](int r, pid_t pid) { return OnAttach(r, pid); };
  rh.collective = [this](int r, uint64_t gen, const AttachMessage& m) {
    collectives_->Enter(r, gen, m);
  };
  rh.detached = [this](int r, pid_t pid) { OnDetached(r, pid); };
  rh.lost = [this](int r, pid_t pid, const std::string& why) { OnRankLost(r, pid, why); };
  TR_ASSIGN_OR_RETURN(rank_server_, RankServer::Create(socket_path_, spec_.ranks_per_node(),
                                                       arena_->fd(), std::move(rh)));
  {
    absl::MutexLock lock(&mu_);
    if (failed_) {
      rank_server_->StopAccepting(arena_->failure());
      collectives_->Abort(arena_->failure());
    }
    if (state_ == State::kStarting) state_ = State::kServing;
    serving_ = true;
  }
  rank_server_->Start();
  TR_LOG(INFO, kLog) << "node " << options_.node_id << " serving " << spec_.ranks_per_node()
                     << " ranks on " << socket_path_ << " (NodeService " << node_server_->address()
                     << ")";
  return absl::OkStatus();
}

WelcomeInfo Daemon::MakeWelcome(int r) const {
  WelcomeInfo w;
  w.job_id = options_.job_id;
  w.node_id = options_.node_id;
  w.nodes = spec_.nodes();
  w.local_rank = r;
  w.ranks_per_node = spec_.ranks_per_node();
  w.global_rank = options_.node_id * spec_.ranks_per_node() + r;
  w.world_size = spec_.nodes() * spec_.ranks_per_node();
  w.arena_bytes = arena_->size();
  w.regions = collectives_->regions();
  return w;
}

absl::StatusOr<WelcomeInfo> Daemon::OnAttach(int r, pid_t pid) {
  {
    absl::MutexLock lock(&mu_);
    if (failed_) return arena_->failure();
    if (state_ != State::kServing) {
      return absl::UnavailableError(absl::StrCat("node ", options_.node_id, " is not serving"));
    }
    ever_attached_[static_cast<size_t>(r)] = true;
    attached_[static_cast<size_t>(r)] = true;
  }
  proxy_->ActivateRank(r);
  arena_->control(r).attached_pid.store(static_cast<int32_t>(pid), std::memory_order_relaxed);
  return MakeWelcome(r);
}

void Daemon::OnDetached(int r, pid_t pid) {
  proxy_->DeactivateRank(r);
  arena_->control(r).attached_pid.store(0, std::memory_order_relaxed);
  {
    absl::MutexLock lock(&mu_);
    attached_[static_cast<size_t>(r)] = false;
  }
  MaybeDone();
}

void Daemon::OnRankLost(int r, pid_t pid, const std::string& why) {
  proxy_->DeactivateRank(r);
  arena_->control(r).attached_pid.store(0, std::memory_order_relaxed);
  {
    absl::MutexLock lock(&mu_);
    attached_[static_cast<size_t>(r)] = false;
  }
  const int g = options_.node_id * spec_.ranks_per_node() + r;
  const std::string reason = absl::StrCat("local rank ", r, " (pid ", pid, ") ", why);
  // Phrased like the coordinator's failure notices, so that every rank of
  // the job reads the same sentence.
  Fail(absl::UnavailableError(absl::StrCat("job ", options_.job_id, " failed: rank ", g,
                                           " on node ", options_.node_id, ": ", reason)),
       MakeFailure(g, reason), true);
  MaybeDone();
}

}  // namespace runtime
}  // namespace tokenrail
