// Daemon: failures, the control thread (coordinator calls that must not
// block the data path or the rank socket), drain, exit-when-done, status.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status.h"
#include "runtime/daemon/daemon.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr char kLog[] = "daemon";
constexpr absl::Duration kControlCallTimeout = absl::Seconds(5);

int64_t NowUnixMs() { return absl::ToUnixMillis(absl::Now()); }

}  // namespace

v1::FailureInfo Daemon::FailureAt(int node_id, int global_rank, const std::string& reason) {
  v1::FailureInfo f;
  f.set_node_id(node_id);
  f.set_global_rank(global_rank);
  f.set_reason(reason);
  f.set_detected_unix_ms(NowUnixMs());
  return f;
}

v1::FailureInfo Daemon::MakeFailure(int global_rank, const std::string& reason) const {
  return FailureAt(options_.node_id, global_rank, reason);
}

void Daemon::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void Daemon::Fail(const absl::Status& status, const v1::FailureInfo& info, bool report) {
  bool serving;
  {
    absl::MutexLock lock(&mu_);
    if (failed_) return;  // the first failure is the job's failure
    failed_ = true;
    failure_ = info;
    if (state_ == State::kServing || state_ == State::kStarting) state_ = State::kFailed;
    serving = serving_;
  }
  TR_LOG(ERROR, kLog) << status.message();
  if (arena_ != nullptr) arena_->PublishFailure(status, {info.node_id(), info.global_rank()});
  if (serving) {
    collectives_->Abort(status);
    rank_server_->StopAccepting(status);
  }
  // Unblocks collectives waiting at the coordinator for nodes that will
  // never arrive (the coordinator fails them too once it knows).
  coordinator_->CancelPendingCalls();
  if (report) {
    Post([this, info] {
      absl::Status s = coordinator_->ReportFailure(info);
      if (!s.ok()) TR_LOG(WARNING, kLog) << "reporting the failure: " << s;
    });
  }
  MaybeDone();
}

void Daemon::OnJobEnd(const absl::Status& status, const v1::HeartbeatResponse& last) {
  if (leaving_.load(std::memory_order_acquire)) return;
  if (last.state() == v1::JOB_FAILED) {
    Fail(status, last.failure(), false);
  } else if (last.state() == v1::JOB_CANCELLED) {
    Fail(status, FailureAt(-1, -1, std::string(status.message())), false);
  } else {
    // The coordinator is gone (stream broke or went silent): nothing can
    // be coordinated any more.
    const std::string why = absl::StrCat("lost the coordinator: ", status.message());
    Fail(absl::UnavailableError(
             absl::StrCat("job ", options_.job_id, " failed: node ", options_.node_id, " ", why)),
         MakeFailure(-1, why), false);
  }
}

void Daemon::OnPeerFailed(int node_id, const absl::Status& status) {
  // Runs on the proxy thread: decide on the control thread, which may ask
  // the coordinator whether the peer simply left (then it is no failure).
  Post([this, node_id, status] {
    absl::StatusOr<v1::Job> job =
        coordinator_->GetJob(options_.job_id, absl::Now() + kControlCallTimeout);
    if (job.ok()) {
      for (const v1::NodeMembership& m : job->nodes()) {
        if (m.node_id() == node_id && m.state() == v1::NodeMembership::LEFT) {
          TR_LOG(INFO, kLog) << "node " << node_id << " left the job; its endpoint closed";
          return;
        }
      }
    }
    v1::FailureInfo info = FailureAt(node_id, -1, std::string(status.message()));
    Fail(absl::UnavailableError(absl::StrCat("job ", options_.job_id, " failed: ", status.message(),
                                             " (seen from node ", options_.node_id, ")")),
         info, true);
  });
}

uint64_t Daemon::RequestDrain(const std::string& reason, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (!drain_requested_) {
    drain_requested_ = true;
    drain_reason_ = reason;
    drain_timeout_ = timeout;
    TR_LOG(INFO, kLog) << "drain requested: " << reason;
  }
  return serving_ ? proxy_->Pending() : 0;
}

void Daemon::MaybeDone() {
  if (!options_.exit_when_done) return;
  absl::MutexLock lock(&mu_);
  if (!serving_ || done_requested_) return;
  bool any_attached = false, all_seen = true;
  for (size_t r = 0; r < attached_.size(); ++r) {
    any_attached = any_attached || attached_[r];
    all_seen = all_seen && ever_attached_[r];
  }
  if (!any_attached && (all_seen || failed_)) done_requested_ = true;
}

void Daemon::ControlLoop() {
  for (;;) {
    std::function<void()> task;
    enum { kNone, kDrain, kDone } action = kNone;
    std::string reason;
    absl::Duration timeout;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_control_ || !tasks_.empty() ||
               (serving_ && !shutdown_started_ && (drain_requested_ || done_requested_));
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_control_) return;
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
      } else {
        shutdown_started_ = true;
        action = drain_requested_ ? kDrain : kDone;
        reason = drain_reason_;
        timeout = drain_timeout_;
      }
    }
    if (task) {
      task();
    } else if (action == kDrain) {
      Drain(reason, timeout);
    } else if (action == kDone) {
      FinishWhenDone();
    }
  }
}

void Daemon::Drain(const std::string& reason, absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    state_ = State::kDraining;
  }
  rank_server_->StopAccepting(
      absl::UnavailableError(absl::StrCat("node ", options_.node_id, " is draining: ", reason)));
  const absl::Time end = absl::Now() + timeout;
  uint64_t pending = proxy_->Pending();
  while (pending > 0 && absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(1));
    pending = proxy_->Pending();
  }
  std::vector<int> attached;
  bool failed;
  {
    absl::MutexLock lock(&mu_);
    for (size_t r = 0; r < attached_.size(); ++r) {
      if (attached_[r]) attached.push_back(static_cast<int>(r));
    }
    failed = failed_;
  }
  std::string why;
  if (!attached.empty()) {
    why = absl::StrCat("drained while local ranks ", absl::StrJoin(attached, ","),
                       " were attached (", reason, ")");
  } else if (pending > 0) {
    why = absl::StrCat("drained with ", pending, " proxy commands unfinished after ",
                       absl::FormatDuration(timeout), " (", reason, ")");
  }
  if (!failed && !why.empty()) {
    // Tell the ranks still here; Leave(clean = false) tells the coordinator.
    Fail(absl::UnavailableError(
             absl::StrCat("job ", options_.job_id, " failed: node ", options_.node_id, " ", why)),
         MakeFailure(-1, why), false);
  }
  const bool clean = !failed && why.empty();
  TR_LOG(INFO, kLog) << "node " << options_.node_id << " drained ("
                     << (clean         ? "clean"
                         : why.empty() ? "job failed"
                                       : why)
                     << ")";
  LeaveAndStop(clean, clean ? reason : (why.empty() ? "job failed" : why), absl::OkStatus());
}

void Daemon::FinishWhenDone() {
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    if (failed_) result = arena_->failure();
  }
  if (result.ok() && spec_.nodes() > 1) {
    // Every daemon stays (and keeps serving peer puts) until every node's
    // ranks are done; only then do endpoints start closing.
    absl::StatusOr<std::vector<std::string>> r =
        coordinator_->Barrier("tokenrail/shutdown", options_.node_id, spec_.nodes(), "",
                              absl::Now() + options_.collective_timeout);
    if (!r.ok()) {
      absl::MutexLock lock(&mu_);
      result = failed_ ? arena_->failure() : r.status();
    }
  }
  const bool clean = result.ok();
  TR_LOG(INFO, kLog) << "node " << options_.node_id
                     << " done: " << (clean ? "every local rank finished" : result.message());
  LeaveAndStop(clean, clean ? "every local rank finished" : std::string(result.message()), result);
}

void Daemon::LeaveAndStop(bool clean, const std::string& reason, absl::Status result) {
  proxy_->SetShuttingDown();
  leaving_.store(true, std::memory_order_release);
  absl::Status left = coordinator_->Leave(clean, reason);
  if (!left.ok()) TR_LOG(WARNING, kLog) << "leaving the job: " << left;
  coordinator_->StopWatching();
  StopComponents();
  absl::MutexLock lock(&mu_);
  state_ = State::kFinished;
  finished_ = true;
  result_ = std::move(result);
}

void Daemon::StopComponents() {
  if (coordinator_ != nullptr) coordinator_->CancelPendingCalls();
  if (collectives_ != nullptr) collectives_->Abort(absl::UnavailableError("daemon stopping"));
  if (rank_server_ != nullptr) rank_server_->Stop();
  if (collectives_ != nullptr) collectives_->Stop();
  if (proxy_ != nullptr) proxy_->Stop();
  if (node_server_ != nullptr) node_server_->Shutdown(absl::Seconds(1));
  if (coordinator_ != nullptr) coordinator_->StopWatching();
}

absl::Status Daemon::Wait() {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_; };
  mu_.Await(absl::Condition(&done));
  return result_;
}

v1::NodeStats Daemon::Stats() const {
  v1::NodeStats out;
  out.set_node_id(options_.node_id);
  {
    absl::MutexLock lock(&mu_);
    if (!serving_) return out;
  }
  const ProxyStats s = proxy_->Stats();
  out.set_intra_node_puts(s.intra_node_puts);
  out.set_inter_node_puts(s.inter_node_puts);
  out.set_intra_node_bytes(s.intra_node_bytes);
  out.set_inter_node_bytes(s.inter_node_bytes);
  out.set_notifications_delivered(s.notifications_delivered);
  const int world = spec_.nodes() * spec_.ranks_per_node();
  const size_t experts_per_rank =
      world > 0 && spec_.experts() > 0 ? static_cast<size_t>(spec_.experts() / world) : 0;
  uint64_t direct_total = 0;
  for (size_t r = 0; r < s.ranks.size(); ++r) {
    v1::RankStats* rs = out.add_ranks();
    rs->set_global_rank(options_.node_id * spec_.ranks_per_node() + static_cast<int>(r));
    // The rank's expert-parallel engine stores straight into local peers'
    // memory; it publishes those bytes and its tokens per expert in the
    // arena (reporting only: a rank can write anything there).
    EpStatsSnapshot ep;
    const bool have_ep = ReadEpStats(arena_->control(static_cast<int>(r)).ep_stats, &ep);
    const uint64_t direct = have_ep ? ep.direct_bytes_intra_node : 0;
    direct_total += direct;
    rs->set_bytes_sent_intra_node(s.ranks[r].bytes_intra + direct);
    rs->set_bytes_sent_inter_node(s.ranks[r].bytes_inter);
    rs->set_puts(s.ranks[r].puts);
    rs->set_notifications(s.ranks[r].notifications);
    for (size_t e = 0; have_ep && e < ep.tokens_per_expert.size() && e < experts_per_rank; ++e) {
      rs->add_tokens_per_expert(ep.tokens_per_expert[e]);
    }
  }
  out.set_intra_node_bytes(s.intra_node_bytes + direct_total);
  return out;
}

v1::NodeStatus Daemon::Status() const {
  v1::NodeStatus st;
  st.set_node_id(options_.node_id);
  st.set_job_id(options_.job_id);
  st.set_hostname(hostname_);
  bool serving;
  {
    absl::MutexLock lock(&mu_);
    switch (state_) {
      case State::kStarting:
        st.set_state(v1::NodeStatus::STARTING);
        break;
      case State::kServing:
        st.set_state(v1::NodeStatus::SERVING);
        break;
      case State::kDraining:
      case State::kFinished:
        st.set_state(v1::NodeStatus::DRAINING);
        break;
      case State::kFailed:
        st.set_state(v1::NodeStatus::FAILED);
        break;
    }
    if (failed_) *st.mutable_failure() = failure_;
    serving = serving_;
  }
  if (arena_ != nullptr) st.set_arena_bytes(arena_->size());
  if (fabric_ != nullptr) st.set_transport(fabric_->backend());
  if (!serving) return st;
  const std::vector<RankConnectionInfo> ranks = rank_server_->Ranks();
  for (size_t r = 0; r < ranks.size(); ++r) {
    v1::RankStatus* rs = st.add_ranks();
    rs->set_local_rank(static_cast<int>(r));
    rs->set_global_rank(options_.node_id * spec_.ranks_per_node() + static_cast<int>(r));
    rs->set_attached(ranks[r].attached);
    rs->set_pid(ranks[r].pid);
  }
  st.set_arena_used_bytes(collectives_->used_bytes());
  *st.mutable_stats() = Stats();
  return st;
}

}  // namespace runtime
}  // namespace tokenrail
