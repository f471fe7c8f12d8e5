// Job: state machine, membership, topology, barriers entry, events, stats.
// Liveness (heartbeats, streams, ticks, shutdown, watch) is in job_liveness.cc.
#include "scheduler/coordinator/job.h"

#include <time.h>

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "scheduler/coordinator/validation.h"

namespace tokenrail {
namespace coordinator {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

const char* StateName(v1::JobState s) {
  switch (s) {
    case v1::JOB_PENDING:
      return "PENDING";
    case v1::JOB_RUNNING:
      return "RUNNING";
    case v1::JOB_SUCCEEDED:
      return "SUCCEEDED";
    case v1::JOB_FAILED:
      return "FAILED";
    case v1::JOB_CANCELLED:
      return "CANCELLED";
    default:
      return "UNSPECIFIED";
  }
}

std::string NewSessionId() {
  // Identifies a membership, it is no secret (the bearer token is): a
  // process-local generator is enough to make ids unique and unguessable by
  // accident.
  thread_local absl::BitGen gen;
  const uint64_t a = absl::Uniform<uint64_t>(gen);
  const uint64_t b = absl::Uniform<uint64_t>(gen);
  return absl::StrCat(absl::Hex(a, absl::kZeroPad16), absl::Hex(b, absl::kZeroPad16));
}

}  // namespace

int64_t MonotonicNanos() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t UnixMillis() { return absl::ToUnixMillis(absl::Now()); }

Job::Job(std::string id, const v1::JobSpec& spec, const CoordinatorOptions& options)
    : id_(std::move(id)),
      spec_(spec),
      options_(options),
      create_unix_ms_(UnixMillis()),
      members_(spec.nodes()),
      barriers_(options.max_barrier_names) {
  absl::MutexLock lock(&mu_);
  Effects fx;  // no watchers yet: nothing to run
  AddEventLocked(&fx)->set_state_changed(v1::JOB_PENDING);
}

bool Job::Ended() const {
  absl::MutexLock lock(&mu_);
  return EndedLocked();
}

bool Job::EndedLocked() const {
  return state_ == v1::JOB_SUCCEEDED || state_ == v1::JOB_FAILED || state_ == v1::JOB_CANCELLED;
}

bool Job::TopologyCompleteLocked() const { return joined_ == spec_.nodes(); }

std::string Job::DescribeNodeLocked(int node) const {
  if (node < 0 || node >= static_cast<int>(members_.size())) return absl::StrCat("node ", node);
  const std::string& host = members_[node].info.hostname();
  return host.empty() ? absl::StrCat("node ", node) : absl::StrCat("node ", node, " (", host, ")");
}

grpc::Status Job::EndStatusLocked() const {
  if (shut_down_) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down");
  }
  switch (state_) {
    case v1::JOB_FAILED: {
      std::string where;
      if (failure_.global_rank() >= 0) {
        where = absl::StrCat("rank ", failure_.global_rank(), " on ",
                             DescribeNodeLocked(failure_.node_id()), ": ");
      } else if (failure_.node_id() >= 0) {
        where = absl::StrCat(DescribeNodeLocked(failure_.node_id()), ": ");
      }
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("job ", id_, " failed: ", where, failure_.reason()));
    }
    case v1::JOB_CANCELLED:
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("job ", id_, " was ", failure_.reason()));
    case v1::JOB_SUCCEEDED:
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("job ", id_, " already succeeded (every node left)"));
    default:
      return grpc::Status::OK;
  }
}

absl::StatusOr<int> Job::LiveMemberLocked(absl::string_view session_id) const {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) {
    return absl::NotFoundError(absl::StrCat("session '", session_id, "' is not a member of job ",
                                            id_, " (Join returns the session id)"));
  }
  const int node = it->second;
  switch (members_[node].state) {
    case v1::NodeMembership::JOINED:
      return node;
    case v1::NodeMembership::LEFT:
      return absl::FailedPreconditionError(
          absl::StrCat(DescribeNodeLocked(node), " already left job ", id_));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat(DescribeNodeLocked(node), " was declared dead in job ", id_));
  }
}

v1::NodeMembership Job::MembershipLocked(int node) const {
  const Member& m = members_[node];
  v1::NodeMembership out;
  out.set_node_id(node);
  out.set_hostname(m.info.hostname());
  out.set_state(m.state);
  out.set_last_heartbeat_unix_ms(m.last_beat_unix_ms);
  out.set_node_service_address(m.info.node_service_address());
  return out;
}

v1::Topology Job::TopologyLocked() const {
  v1::Topology t;
  t.set_job_id(id_);
  *t.mutable_spec() = spec_;
  t.set_world_size(spec_.nodes() * spec_.ranks_per_node());
  t.set_state(state_);
  for (const Member& m : members_) {
    if (m.state != v1::NodeMembership::STATE_UNSPECIFIED) *t.add_nodes() = m.info;
  }
  return t;
}

v1::HeartbeatResponse Job::HeartbeatLocked() const {
  v1::HeartbeatResponse r;
  r.set_state(state_);
  if (has_failure_) *r.mutable_failure() = failure_;
  r.set_drain(state_ == v1::JOB_CANCELLED);
  return r;
}

v1::Job Job::ToProto() const {
  absl::MutexLock lock(&mu_);
  v1::Job j;
  j.set_job_id(id_);
  *j.mutable_spec() = spec_;
  j.set_state(state_);
  for (int n = 0; n < static_cast<int>(members_.size()); ++n) {
    if (members_[n].state != v1::NodeMembership::STATE_UNSPECIFIED) {
      *j.add_nodes() = MembershipLocked(n);
    }
  }
  if (has_failure_) *j.mutable_failure() = failure_;
  j.set_create_unix_ms(create_unix_ms_);
  j.set_progress_step(progress_step_);
  return j;
}

v1::JobStats Job::Stats() const {
  absl::MutexLock lock(&mu_);
  v1::JobStats s;
  s.set_job_id(id_);
  uint64_t intra = 0, inter = 0;
  for (int n = 0; n < static_cast<int>(members_.size()); ++n) {
    if (!members_[n].has_stats) continue;
    v1::NodeStats* ns = s.add_nodes();
    *ns = members_[n].stats;
    ns->set_node_id(n);
    intra += ns->intra_node_bytes();
    inter += ns->inter_node_bytes();
  }
  s.set_intra_node_bytes(intra);
  s.set_inter_node_bytes(inter);
  return s;
}

v1::JobEvent* Job::AddEventLocked(Effects* fx) {
  if (events_.size() >= options_.max_events_per_job) {
    events_.pop_front();
    ++first_sequence_;
  }
  v1::JobEvent& e = events_.emplace_back();
  e.set_sequence(next_sequence_++);
  e.set_time_unix_ms(UnixMillis());
  e.set_job_id(id_);
  // Watchers re-register when they run dry, so each is woken once per batch.
  for (auto& w : watchers_) fx->wake.push_back(std::move(w));
  watchers_.clear();
  return &e;
}

void Job::SetStateLocked(v1::JobState state, Effects* fx) {
  TR_LOG(INFO, "coordinator") << "job " << id_ << ": " << StateName(state_) << " -> "
                              << StateName(state);
  state_ = state;
  ++version_;
  AddEventLocked(fx)->set_state_changed(state);
}

void Job::SetMemberStateLocked(int node, v1::NodeMembership::State state, Effects* fx) {
  members_[node].state = state;
  *AddEventLocked(fx)->mutable_membership() = MembershipLocked(node);
}

void Job::PushStateLocked(Effects* fx) {
  const v1::HeartbeatResponse r = HeartbeatLocked();
  for (const Member& m : members_) {
    if (m.stream != nullptr) fx->pushes.push_back(HeartbeatPush{m.stream, r, version_});
  }
}

void Job::AnswerTopologyWaitersLocked(const grpc::Status& status, Effects* fx) {
  for (TopologyWaiter& w : topology_waiters_) {
    if (status.ok()) *w.response = TopologyLocked();
    w.call->parked = false;
    fx->finish.emplace_back(w.call, status);
  }
  topology_waiters_.clear();
}

void Job::EndLocked(Effects* fx) {
  const grpc::Status status = EndStatusLocked();
  barriers_.FailAll(status, fx);
  // A complete topology is still a valid answer after the end; a partial one
  // never will be.
  AnswerTopologyWaitersLocked(TopologyCompleteLocked() ? grpc::Status::OK : status, fx);
  PushStateLocked(fx);
  for (auto& w : watchers_) fx->wake.push_back(std::move(w));
  watchers_.clear();
}

void Job::FailLocked(v1::FailureInfo failure, Effects* fx) {
  if (EndedLocked()) return;
  failure.set_detected_unix_ms(UnixMillis());
  failure_ = failure;
  has_failure_ = true;
  *AddEventLocked(fx)->mutable_failure() = failure_;
  SetStateLocked(v1::JOB_FAILED, fx);
  TR_LOG(WARNING, "coordinator") << EndStatusLocked().error_message();
  EndLocked(fx);
}

absl::Status Job::Cancel(absl::string_view reason, Effects* fx) {
  absl::MutexLock lock(&mu_);
  if (EndedLocked()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id_, " already ended (", StateName(state_), ")"));
  }
  failure_.set_node_id(-1);
  failure_.set_global_rank(-1);
  failure_.set_reason(reason.empty() ? std::string("cancelled")
                                     : absl::StrCat("cancelled: ", reason));
  failure_.set_detected_unix_ms(UnixMillis());
  has_failure_ = true;
  SetStateLocked(v1::JOB_CANCELLED, fx);
  EndLocked(fx);
  return absl::OkStatus();
}

absl::StatusOr<v1::JoinResponse> Job::Join(const v1::JoinRequest& request, Effects* fx) {
  absl::MutexLock lock(&mu_);
  const int node = request.node_id();
  if (node < 0 || node >= spec_.nodes()) {
    return absl::InvalidArgumentError(absl::StrCat("node_id=", node, " is out of range for job ",
                                                   id_, " with ", spec_.nodes(), " nodes (0..",
                                                   spec_.nodes() - 1, ")"));
  }
  if (request.local_ranks() != spec_.ranks_per_node()) {
    return absl::InvalidArgumentError(absl::StrCat("local_ranks=", request.local_ranks(),
                                                   " does not match job ", id_,
                                                   "'s ranks_per_node=", spec_.ranks_per_node()));
  }
  if (EndedLocked()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id_, " has ended (", StateName(state_), "); it takes no members"));
  }
  Member& m = members_[node];
  switch (m.state) {
    case v1::NodeMembership::STATE_UNSPECIFIED:
      break;
    case v1::NodeMembership::JOINED:
      return absl::AlreadyExistsError(
          absl::StrCat(DescribeNodeLocked(node), " is already a live member of job ", id_));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat(DescribeNodeLocked(node), " already ",
                       m.state == v1::NodeMembership::LEFT ? "left" : "died in", " job ", id_,
                       "; a node id joins once"));
  }
  m.session_id = NewSessionId();
  sessions_[m.session_id] = node;
  m.info.set_node_id(node);
  m.info.set_hostname(request.hostname());
  m.info.set_local_ranks(request.local_ranks());
  m.info.set_first_global_rank(node * spec_.ranks_per_node());
  *m.info.mutable_endpoints() = request.endpoints();
  *m.info.mutable_memory_keys() = request.memory_keys();
  m.info.set_node_service_address(request.node_service_address());
  // The heartbeat timeout runs from the join: a daemon that never opens its
  // stream is detected like one that stops beating.
  m.last_beat_ns = MonotonicNanos();
  ++joined_;
  SetMemberStateLocked(node, v1::NodeMembership::JOINED, fx);
  TR_LOG(INFO, "coordinator") << "job " << id_ << ": " << DescribeNodeLocked(node) << " joined ("
                              << joined_ << "/" << spec_.nodes() << ")";
  if (TopologyCompleteLocked() && state_ == v1::JOB_PENDING) {
    SetStateLocked(v1::JOB_RUNNING, fx);
    AnswerTopologyWaitersLocked(grpc::Status::OK, fx);
    PushStateLocked(fx);
  }
  v1::JoinResponse response;
  response.set_session_id(m.session_id);
  *response.mutable_spec() = spec_;
  response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  response.set_heartbeat_timeout_ms(absl::ToInt64Milliseconds(options_.heartbeat_timeout));
  return response;
}

void Job::GetTopology(bool wait_for_all, ParkedCall* call, v1::Topology* response,
                      int64_t give_up_ns, Effects* fx) {
  absl::MutexLock lock(&mu_);
  if (!wait_for_all || TopologyCompleteLocked()) {
    *response = TopologyLocked();
    fx->finish.emplace_back(call, grpc::Status::OK);
    return;
  }
  if (EndedLocked() || shut_down_) {
    fx->finish.emplace_back(call, EndStatusLocked());
    return;
  }
  call->parked = true;
  call->give_up_ns = give_up_ns;
  topology_waiters_.push_back(TopologyWaiter{call, response});
}

void Job::Barrier(v1::BarrierRequest& request, ParkedCall* call, grpc::ByteBuffer* response,
                  int64_t give_up_ns, Effects* fx) {
  absl::MutexLock lock(&mu_);
  if (EndedLocked() || shut_down_) {
    fx->finish.emplace_back(call, EndStatusLocked());
    return;
  }
  absl::StatusOr<int> node = LiveMemberLocked(request.session_id());
  if (!node.ok()) {
    fx->finish.emplace_back(call, ToGrpc(node.status()));
    return;
  }
  barriers_.Arrive(request, call, response, give_up_ns, fx);
}

absl::Status Job::ReportFailure(const v1::ReportFailureRequest& request, Effects* fx) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<int> reporter = LiveMemberLocked(request.session_id());
  // A report from a member that already left or died still describes a real
  // failure; only an unknown session is refused.
  if (!reporter.ok() && reporter.status().code() == absl::StatusCode::kNotFound) {
    return reporter.status();
  }
  TR_RETURN_IF_ERROR(ValidateReportedFailure(request.failure(), spec_));
  if (EndedLocked()) return absl::OkStatus();  // the first failure already ended it
  v1::FailureInfo failure = request.failure();
  if (failure.node_id() < 0 && failure.global_rank() >= 0) {
    failure.set_node_id(failure.global_rank() / spec_.ranks_per_node());
  }
  FailLocked(std::move(failure), fx);
  return absl::OkStatus();
}

absl::Status Job::Leave(const v1::LeaveRequest& request, Effects* fx) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(request.session_id());
  if (it == sessions_.end()) {
    return absl::NotFoundError(
        absl::StrCat("session '", request.session_id(), "' is not a member of job ", id_));
  }
  const int node = it->second;
  Member& m = members_[node];
  if (m.state == v1::NodeMembership::LEFT) return absl::OkStatus();  // retried Leave
  if (m.state == v1::NodeMembership::DEAD) {
    return absl::FailedPreconditionError(
        absl::StrCat(DescribeNodeLocked(node), " was declared dead in job ", id_));
  }
  SetMemberStateLocked(node, v1::NodeMembership::LEFT, fx);
  TR_LOG(INFO, "coordinator") << "job " << id_ << ": " << DescribeNodeLocked(node) << " left"
                              << (request.clean() ? " cleanly" : " uncleanly")
                              << (request.reason().empty() ? "" : " (") << request.reason()
                              << (request.reason().empty() ? "" : ")");
  if (!request.clean()) {
    v1::FailureInfo failure;
    failure.set_node_id(node);
    failure.set_global_rank(-1);
    failure.set_reason(request.reason().empty()
                           ? std::string("left the job with an error")
                           : absl::StrCat("left the job with an error: ", request.reason()));
    FailLocked(std::move(failure), fx);
    return absl::OkStatus();
  }
  ++left_clean_;
  if (left_clean_ == spec_.nodes() && !EndedLocked()) {
    SetStateLocked(v1::JOB_SUCCEEDED, fx);
    EndLocked(fx);
  }
  return absl::OkStatus();
}

}  // namespace coordinator
}  // namespace tokenrail
