// The Launcher's second half: waiting for the other nodes, stopping the
// daemons after success, handling a failure (root cause, grace, teardown) and
// cleaning up. See launcher.h.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "tools/launch/launcher_impl.h"

namespace tokenrail {
namespace launch {

Outcome Launcher::Impl::AwaitOtherNodes() {
  // Node 0's daemon hosts the coordinator: it must outlive every other
  // node's Leave, which can come long after node 0's own ranks finished.
  Outcome out;
  absl::Time next_poll;
  absl::Status failed;
  auto others_left = [&] {
    if (absl::Now() < next_poll) return false;
    next_poll = absl::Now() + absl::Milliseconds(250);
    absl::StatusOr<v1::Job> job = control_->GetJob(job_id_, absl::Now() + absl::Seconds(2));
    if (!job.ok()) return false;
    if (job->state() == v1::JOB_FAILED || job->state() == v1::JOB_CANCELLED) {
      failed = absl::UnavailableError(absl::StrCat("job ", job_id_, " ", DescribeJobState(*job)));
      return true;
    }
    int left = 0;
    for (const v1::NodeMembership& m : job->nodes()) {
      if (m.node_id() != 0 && m.state() == v1::NodeMembership::LEFT) ++left;
    }
    return left == o_.placement.nodes - 1;
  };
  if (!WaitFor(others_left, run_deadline_, "while waiting for the other nodes to finish", &out)) {
    return out;
  }
  if (!failed.ok()) {
    out.exit_code = kExitFailed;
    out.reason = failed.ToString();
  }
  return out;
}

Outcome Launcher::Impl::StopDaemons() {
  Outcome out;
  if (cluster() && o_.placement.per_rank()) {
    // The daemon (if this instance runs it) was started with
    // --exit_when_done: it leaves once every local rank of every launcher
    // instance detached, and a hosted coordinator stays until the job ended.
    auto daemon_gone = [this] { return sup_->Live(Proc::Role::kDaemon).empty(); };
    if (!WaitFor(daemon_gone, run_deadline_, "while the node's other ranks finish", &out,
                 /*daemons_may_finish=*/true)) {
      return out;
    }
    for (auto& [node, p] : daemons_) {
      if (p->sub->succeeded()) continue;
      out.exit_code = kExitFailed;
      out.culprit = p;
      out.reason = absl::StrCat(p->DescribeExit(), " while finishing");
      return out;
    }
    return out;
  }
  if (cluster() && o_.placement.hosts_coordinator() && o_.placement.nodes > 1) {
    out = AwaitOtherNodes();
    if (!out.ok()) return out;
  }
  // Every node's daemon before the coordinator's host, which goes last.
  std::vector<Proc*> first, last;
  for (auto& [node, p] : daemons_) (node == 0 ? last : first).push_back(p);
  for (const std::vector<Proc*>* group : {&first, &last}) {
    if (group->empty()) continue;
    sup_->Terminate(*group, o_.stop_timeout);
    for (Proc* p : *group) {
      if (p->sub->succeeded()) continue;
      out.exit_code = kExitFailed;
      out.culprit = p;
      out.reason = absl::StrCat(p->DescribeExit(), " while stopping");
      return out;
    }
  }
  return out;
}

bool Launcher::Impl::AwaitQuietly(const std::function<bool()>& done, absl::Time until) {
  for (;;) {
    Outcome next;
    if (WaitFor(done, until, "after the failure", &next)) return true;
    // Another process exiting with an error is a consequence: keep waiting.
    // The deadline passing is fine; a signal to the launcher is not.
    if (!next.process_failure) return next.exit_code < 128;
  }
}

bool Launcher::Impl::AwaitRanks(absl::Time until) {
  return AwaitQuietly([this] { return sup_->Live(Proc::Role::kRank).empty(); }, until);
}

Proc* Launcher::Impl::RootCause(Proc* first, absl::Time settle_end) {
  // 1. The coordinator's verdict names the rank or node it saw die. That
  //    process may still be dying (a large address space takes a while to
  //    tear down after its sockets closed): wait for it, briefly.
  auto coordinator = daemons_.find(0);
  if (control_ != nullptr && coordinator != daemons_.end() && !coordinator->second->exited()) {
    absl::StatusOr<v1::Job> job = control_->GetJob(job_id_, absl::Now() + absl::Seconds(1));
    if (job.ok() && job->has_failure()) {
      const v1::FailureInfo& f = job->failure();
      for (const auto& p : sup_->procs()) {
        const bool named = f.global_rank() >= 0
                               ? p->rank == f.global_rank()
                               : p->role == Proc::Role::kDaemon && p->node == f.node_id();
        if (!named || p->stopping) continue;
        Proc* proc = p.get();
        AwaitQuietly([proc] { return proc->exited(); }, settle_end);
        if (proc->exited()) return proc;
      }
    }
  }
  // Without a verdict, give late exits a moment to surface.
  AwaitQuietly([] { return false; }, std::min(settle_end, absl::Now() + absl::Milliseconds(500)));
  std::vector<Proc*> failed;  // exited on their own, unsuccessfully, in exit order
  for (const auto& p : sup_->procs()) {
    if (p->exited() && !p->stopping && (!p->sub->succeeded() || p->role == Proc::Role::kDaemon)) {
      failed.push_back(p.get());
    }
  }
  std::stable_sort(failed.begin(), failed.end(),
                   [](Proc* a, Proc* b) { return a->exit_time < b->exit_time; });
  // 2. A process killed by a signal (crashed or killed): the error exits of
  //    its peers follow from it. 3. A daemon: its ranks' errors follow.
  for (Proc* p : failed) {
    if (WIFSIGNALED(p->sub->wait_status())) return p;
  }
  for (Proc* p : failed) {
    if (p->role == Proc::Role::kDaemon) return p;
  }
  return first;
}

void Launcher::Impl::HandleFailure(const Outcome& failure) {
  // Ranks still running now: their later exits are consequences.
  std::vector<Proc*> survivors = sup_->Live(Proc::Role::kRank);
  const absl::Time grace_end = std::min(run_deadline_, absl::Now() + o_.failure_grace);
  bool interrupted = false;
  std::string reason = failure.reason;
  Proc* culprit = failure.culprit;
  if (culprit != nullptr && culprit->role == Proc::Role::kRank &&
      WIFEXITED(culprit->sub->wait_status())) {
    // A rank that exits with an error status is usually reacting to a
    // failure elsewhere: a dying process closes its sockets (and its peers
    // react) before the kernel reports its own exit. Let the cause surface.
    const absl::Time settle_end = std::min(grace_end, absl::Now() + absl::Seconds(2));
    interrupted = !AwaitRanks(settle_end);
    Proc* cause = interrupted ? culprit : RootCause(culprit, settle_end);
    if (cause != culprit) {
      culprit = cause;
      reason = absl::StrCat(cause->DescribeExit(),
                            cause->role == Proc::Role::kDaemon ? " while ranks ran" : "");
    }
  }
  sup_->Message(absl::StrCat("FAILED: ", reason));
  if (failure.process_failure && !interrupted && o_.failure_grace > absl::ZeroDuration()) {
    AwaitRanks(grace_end);
  }
  if (control_ != nullptr) {
    auto it = daemons_.find(0);
    if (it == daemons_.end() || !it->second->exited()) {
      absl::StatusOr<v1::Job> job = control_->GetJob(job_id_, absl::Now() + absl::Seconds(1));
      if (job.ok()) {
        sup_->Message(absl::StrCat("coordinator: job ", job_id_, " ", DescribeJobState(*job)));
      }
    }
  }
  std::vector<Proc*> ranks = sup_->Live(Proc::Role::kRank);
  std::vector<Proc*> daemons = sup_->Live(Proc::Role::kDaemon);
  if (!ranks.empty()) sup_->Terminate(ranks, o_.kill_grace);
  if (!daemons.empty()) sup_->Terminate(daemons, o_.kill_grace);
  std::vector<std::string> consequences;
  for (Proc* p : survivors) {
    if (p != culprit && p->exited() && !p->sub->succeeded() && !p->stopping) {
      consequences.push_back(p->DescribeExit());
    }
  }
  if (!consequences.empty()) {
    const size_t shown = std::min<size_t>(consequences.size(), 8);
    std::string text = absl::StrJoin(consequences.begin(), consequences.begin() + shown, "; ");
    if (shown < consequences.size()) {
      absl::StrAppend(&text, "; and ", consequences.size() - shown, " more");
    }
    sup_->Message(absl::StrCat("after the failure: ", text));
  }
}

absl::Status Launcher::Impl::Cleanup() {
  absl::Status status;
  if (sup_ != nullptr) {
    sup_->KillAll();
    sup_->DrainOutput(absl::Milliseconds(200));
  }
  control_.reset();
  status.Update(LeaveNamespace());
  if (netns_ != nullptr) status.Update(netns_->Destroy());
  if (o_.placement.per_rank() && !daemons_.empty()) {
    const std::string socket = SocketPath(o_.placement.node_id);
    if (::unlink(socket.c_str()) != 0 && errno != ENOENT) {
      status.Update(StatusFromErrno(errno, absl::StrCat("unlink ", socket)));
    }
  }
  if (run_dir_ != nullptr) status.Update(run_dir_->Remove());
  if (janitor_ != nullptr) {
    // Dismissed only when everything is gone; otherwise it tries again.
    if (status.ok()) janitor_->Dismiss();
    janitor_.reset();
  }
  return status;
}
Launcher::Launcher(LaunchOptions options, OutputSink* sink)
    : impl_(std::make_unique<Impl>(std::move(options), sink)) {}
Launcher::~Launcher() = default;
int Launcher::Run() { return impl_->Run(); }

}  // namespace launch
}  // namespace tokenrail
