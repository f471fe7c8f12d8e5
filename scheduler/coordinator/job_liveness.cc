// Job: heartbeats and failure detection, stream bookkeeping, WatchJob
// cursors, parked-call expiry and shutdown.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "scheduler/coordinator/job.h"
#include "scheduler/coordinator/validation.h"

namespace tokenrail {
namespace coordinator {

absl::StatusOr<int> Job::AttachStream(absl::string_view session_id,
                                      std::shared_ptr<HeartbeatStream> stream) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("coordinator is shutting down");
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) {
    return absl::NotFoundError(absl::StrCat("session '", session_id, "' is not a member of job ",
                                            id_, " (Join returns the session id)"));
  }
  const int node = it->second;
  Member& m = members_[node];
  if (m.state == v1::NodeMembership::LEFT) {
    return absl::FailedPreconditionError(
        absl::StrCat(DescribeNodeLocked(node), " already left job ", id_));
  }
  // A dead member may still attach: it then learns the job failed.
  if (m.stream != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat(DescribeNodeLocked(node), " already has a heartbeat stream in job ", id_));
  }
  m.stream = std::move(stream);
  return node;
}

absl::Status Job::Beat(int node, const v1::HeartbeatRequest& request,
                       v1::HeartbeatResponse* response, uint64_t* version, Effects* fx) {
  absl::MutexLock lock(&mu_);
  Member& m = members_[node];
  if (request.has_stats()) {
    const v1::NodeStats& s = request.stats();
    if (s.ranks_size() > spec_.ranks_per_node()) {
      return absl::InvalidArgumentError(absl::StrCat("stats.ranks has ", s.ranks_size(),
                                                     " entries; the node has ",
                                                     spec_.ranks_per_node(), " ranks"));
    }
    const int per_rank = spec_.experts() / (spec_.nodes() * spec_.ranks_per_node());
    for (const v1::RankStats& r : s.ranks()) {
      if (r.tokens_per_expert_size() > per_rank) {
        return absl::InvalidArgumentError(absl::StrCat(
            "stats.ranks[rank ", r.global_rank(), "].tokens_per_expert has ",
            r.tokens_per_expert_size(), " entries; a rank holds ", per_rank, " experts"));
      }
    }
  }
  if (request.progress_step() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("progress_step=", request.progress_step(), " must be >= 0"));
  }
  m.last_beat_ns = MonotonicNanos();
  m.last_beat_unix_ms = UnixMillis();
  if (request.has_stats()) {
    m.stats = request.stats();
    m.stats.set_node_id(node);
    m.has_stats = true;
  }
  if (request.progress_step() > progress_step_ && !EndedLocked()) {
    progress_step_ = request.progress_step();
    AddEventLocked(fx)->set_progress_step(progress_step_);
  }
  *response = HeartbeatLocked();
  *version = version_;
  return absl::OkStatus();
}

void Job::StreamEnded(int node, const HeartbeatStream* stream, absl::string_view why, Effects* fx) {
  absl::MutexLock lock(&mu_);
  Member& m = members_[node];
  if (m.stream.get() != stream) return;
  m.stream.reset();
  if (shut_down_ || EndedLocked() || m.state != v1::NodeMembership::JOINED) return;
  SetMemberStateLocked(node, v1::NodeMembership::DEAD, fx);
  v1::FailureInfo failure;
  failure.set_node_id(node);
  failure.set_global_rank(-1);
  failure.set_reason(absl::StrCat("heartbeat stream ended without Leave: ", why));
  FailLocked(std::move(failure), fx);
}

void Job::DetachStream(int node, const HeartbeatStream* stream) {
  absl::MutexLock lock(&mu_);
  if (members_[node].stream.get() == stream) members_[node].stream.reset();
}

Job::WatchStep Job::NextEvent(int64_t* sequence, v1::JobEvent* event,
                              const std::shared_ptr<WatchStream>& watcher,
                              grpc::Status* end_status) {
  absl::MutexLock lock(&mu_);
  // History older than the retained window was dropped: resume at the oldest.
  *sequence = std::max(*sequence, first_sequence_);
  if (*sequence < next_sequence_) {
    *event = events_[*sequence - first_sequence_];
    ++*sequence;
    return WatchStep::kEvent;
  }
  if (shut_down_) {
    *end_status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down");
    return WatchStep::kEnd;
  }
  if (EndedLocked()) {
    *end_status = grpc::Status::OK;
    return WatchStep::kEnd;
  }
  if (std::find(watchers_.begin(), watchers_.end(), watcher) == watchers_.end()) {
    watchers_.push_back(watcher);
  }
  return WatchStep::kWait;
}

void Job::RemoveWatcher(const WatchStream* watcher) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(std::remove_if(watchers_.begin(), watchers_.end(),
                                 [watcher](const std::shared_ptr<WatchStream>& w) {
                                   return w.get() == watcher;
                                 }),
                  watchers_.end());
}

void Job::Withdraw(ParkedCall* call, Effects* fx) {
  absl::MutexLock lock(&mu_);
  if (!call->parked) return;  // already being answered
  if (call->participant >= 0) {
    barriers_.Withdraw(call);
  } else {
    topology_waiters_.erase(
        std::remove_if(topology_waiters_.begin(), topology_waiters_.end(),
                       [call](const TopologyWaiter& w) { return w.call == call; }),
        topology_waiters_.end());
  }
  call->parked = false;
  fx->finish.emplace_back(call, grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
}

void Job::Tick(int64_t now_ns, Effects* fx) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  if (!EndedLocked()) {
    const int64_t timeout_ns = absl::ToInt64Nanoseconds(options_.heartbeat_timeout);
    // The first silent member fails the job; the final state stays the last
    // event, so later members are not examined.
    for (int node = 0; node < static_cast<int>(members_.size()) && !EndedLocked(); ++node) {
      Member& m = members_[node];
      if (m.state != v1::NodeMembership::JOINED) continue;
      const int64_t silent_ns = now_ns - m.last_beat_ns;
      if (silent_ns <= timeout_ns) continue;
      SetMemberStateLocked(node, v1::NodeMembership::DEAD, fx);
      v1::FailureInfo failure;
      failure.set_node_id(node);
      failure.set_global_rank(-1);
      failure.set_reason(absl::StrCat("no heartbeat for ", silent_ns / 1000000,
                                      " ms (heartbeat timeout ", timeout_ns / 1000000, " ms)"));
      FailLocked(std::move(failure), fx);
    }
  }
  barriers_.ExpireWaiters(now_ns, fx);
  auto expired = [now_ns](const TopologyWaiter& w) { return w.call->give_up_ns <= now_ns; };
  for (TopologyWaiter& w : topology_waiters_) {
    if (!expired(w)) continue;
    w.call->parked = false;
    fx->finish.emplace_back(
        w.call, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                             absl::StrCat("job ", id_, ": ", joined_, " of ", spec_.nodes(),
                                          " nodes joined within the coordinator's maximum wait "
                                          "for a call without a deadline; set a deadline")));
  }
  topology_waiters_.erase(
      std::remove_if(topology_waiters_.begin(), topology_waiters_.end(), expired),
      topology_waiters_.end());
}

void Job::Shutdown(Effects* fx) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  shut_down_ = true;
  const grpc::Status status = EndStatusLocked();  // UNAVAILABLE: shutting down
  barriers_.FailAll(status, fx);
  AnswerTopologyWaitersLocked(status, fx);
  for (Member& m : members_) {
    if (m.stream != nullptr) fx->end_streams.emplace_back(std::move(m.stream), status);
    m.stream.reset();
  }
  for (auto& w : watchers_) fx->end_watches.emplace_back(std::move(w), status);
  watchers_.clear();
}

}  // namespace coordinator
}  // namespace tokenrail
