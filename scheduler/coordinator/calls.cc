#include "scheduler/coordinator/calls.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "scheduler/coordinator/job.h"
#include "scheduler/coordinator/registry.h"
#include "scheduler/coordinator/validation.h"

namespace tokenrail {
namespace coordinator {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace

void Effects::Run() {
  // Streams first: a failure push should leave before the barrier answers
  // that wake the same daemon's ranks.
  std::vector<HeartbeatPush> pushes_now;
  pushes_now.swap(pushes);
  for (HeartbeatPush& p : pushes_now) p.stream->Push(p.response, p.version);
  std::vector<std::pair<std::shared_ptr<HeartbeatStream>, grpc::Status>> ends;
  ends.swap(end_streams);
  for (auto& [stream, status] : ends) stream->End(status);
  std::vector<std::pair<ParkedCall*, grpc::Status>> calls;
  calls.swap(finish);
  for (auto& [call, status] : calls) call->Finish(status);
  std::vector<std::shared_ptr<WatchStream>> watchers;
  watchers.swap(wake);
  for (auto& w : watchers) w->Pump();
  std::vector<std::pair<std::shared_ptr<WatchStream>, grpc::Status>> watch_ends;
  watch_ends.swap(end_watches);
  for (auto& [w, status] : watch_ends) w->End(status);
}

void ParkedCall::OnCancel() {
  Effects fx;
  job_->Withdraw(this, &fx);
}

// ---------------------------------------------------------------------------
// HeartbeatStream

HeartbeatStream* HeartbeatStream::Start(JobRegistry* registry) {
  auto stream = std::make_shared<HeartbeatStream>(registry);
  stream->self_ = stream;
  stream->StartRead(&stream->request_);
  return stream.get();
}

grpc::Status HeartbeatStream::Bind() {
  absl::Status s = ValidateJobId(request_.job_id());
  if (s.ok()) s = ValidateSessionId(request_.session_id());
  if (!s.ok()) return ToGrpc(s);
  absl::StatusOr<std::shared_ptr<Job>> job = registry_->Find(request_.job_id());
  if (!job.ok()) return ToGrpc(job.status());
  absl::StatusOr<int> node = (*job)->AttachStream(request_.session_id(), shared_from_this());
  if (!node.ok()) return ToGrpc(node.status());
  job_ = std::move(*job);
  node_ = *node;
  session_ = request_.session_id();
  TR_VLOG(1, "coordinator") << "job " << job_->id() << ": heartbeat stream of node " << node_;
  return grpc::Status::OK;
}

void HeartbeatStream::OnReadDone(bool ok) {
  if (!ok) {
    // The daemon closed its side or the connection broke.
    if (job_ != nullptr) {
      Effects fx;
      job_->StreamEnded(node_, this, "the stream closed or the connection broke", &fx);
    }
    End(grpc::Status::OK);
    return;
  }
  if (job_ == nullptr) {
    const grpc::Status bound = Bind();
    if (!bound.ok()) {
      End(bound);
      return;
    }
  } else if (request_.job_id() != job_->id() || request_.session_id() != session_) {
    const grpc::Status wrong(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("this heartbeat stream belongs to job ", job_->id(), " node ", node_,
                     "; a beat named job '", request_.job_id(), "' session '",
                     request_.session_id(), "'"));
    Effects fx;
    job_->StreamEnded(node_, this, wrong.error_message(), &fx);
    End(wrong);
    return;
  }
  v1::HeartbeatResponse response;
  uint64_t version = 0;
  absl::Status beat;
  {
    Effects fx;
    beat = job_->Beat(node_, request_, &response, &version, &fx);
    if (!beat.ok()) job_->StreamEnded(node_, this, beat.message(), &fx);
  }
  if (!beat.ok()) {
    End(ToGrpc(beat));
    return;
  }
  Push(response, version);
  StartRead(&request_);
}

void HeartbeatStream::Push(const v1::HeartbeatResponse& response, uint64_t version) {
  {
    absl::MutexLock lock(&mu_);
    if (end_requested_ || finished_) return;
    // Never let an older snapshot overtake a newer one: answer with the newest.
    if (version >= latest_version_) {
      latest_ = response;
      latest_version_ = version;
    }
    unsent_ = true;
    if (writing_) return;
    writing_ = true;
    unsent_ = false;
    in_flight_ = latest_;
  }
  StartWrite(&in_flight_);
}

void HeartbeatStream::OnWriteDone(bool ok) {
  bool write = false;
  bool finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (end_requested_ && !finished_) {
      finished_ = true;
      finish = true;
      status = end_status_;
    } else if (ok && unsent_ && !finished_) {
      writing_ = true;
      unsent_ = false;
      in_flight_ = latest_;
      write = true;
    }
  }
  // A failed write means the client is gone; the pending read fails too and
  // OnReadDone(false) reports it.
  if (write) StartWrite(&in_flight_);
  if (finish) Finish(status);
}

void HeartbeatStream::End(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (end_requested_ || finished_) return;
    end_requested_ = true;
    end_status_ = status;
    if (writing_) return;  // OnWriteDone finishes
    finished_ = true;
  }
  Finish(status);
}

void HeartbeatStream::OnDone() {
  if (job_ != nullptr) job_->DetachStream(node_, this);
  // Dropping the self-reference may destroy *this: nothing may follow.
  std::shared_ptr<HeartbeatStream> self = std::move(self_);
}

// ---------------------------------------------------------------------------
// WatchStream

WatchStream* WatchStream::Start(std::shared_ptr<Job> job, int64_t from_sequence) {
  auto stream = std::make_shared<WatchStream>(std::move(job), from_sequence);
  stream->self_ = stream;
  stream->Pump();
  return stream.get();
}

void WatchStream::Pump() {
  Job::WatchStep step;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (writing_ || finished_ || end_requested_) return;
    step = job_->NextEvent(&next_sequence_, &event_, shared_from_this(), &status);
    if (step == Job::WatchStep::kWait) return;
    if (step == Job::WatchStep::kEvent) {
      writing_ = true;
    } else {
      finished_ = true;
    }
  }
  if (step == Job::WatchStep::kEvent) {
    StartWrite(&event_);
  } else {
    Finish(status);
  }
}

void WatchStream::OnWriteDone(bool ok) {
  bool finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!finished_ && (!ok || end_requested_)) {
      finished_ = true;
      finish = true;
      status = ok ? end_status_ : grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
  }
  if (finish) {
    Finish(status);
    return;
  }
  Pump();
}

void WatchStream::End(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (end_requested_ || finished_) return;
    end_requested_ = true;
    end_status_ = status;
    if (writing_) return;  // OnWriteDone finishes
    finished_ = true;
  }
  Finish(status);
}

void WatchStream::OnCancel() {
  End(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled by the client"));
}

void WatchStream::OnDone() {
  job_->RemoveWatcher(this);
  std::shared_ptr<WatchStream> self = std::move(self_);
}

}  // namespace coordinator
}  // namespace tokenrail
