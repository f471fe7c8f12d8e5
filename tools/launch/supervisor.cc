#include "tools/launch/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status.h"
#include "tools/launch/janitor.h"

namespace tokenrail {
namespace launch {
namespace {

// Reads until EOF or until the pipe is empty; a bounded number of rounds so
// a child that keeps writing cannot hold the loop.
void DrainFd(UniqueFd* fd, LineSplitter* splitter, int rounds) {
  for (int i = 0; i < rounds && fd->valid(); ++i) {
    if (!splitter->DrainFrom(fd->get())) {
      fd->Reset();
      return;
    }
    pollfd p{fd->get(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return;
  }
}

}  // namespace

std::string Proc::Name() const {
  if (role == Role::kDaemon) return absl::StrCat("daemon of node ", node);
  return absl::StrCat("rank ", rank, " (node ", node, ")");
}

std::string Proc::DescribeExit() const {
  return absl::StrCat(Name(), " ", DescribeWaitStatus(sub->wait_status()));
}

Supervisor::~Supervisor() { KillAll(); }

absl::Status Supervisor::Init() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
    return absl::InternalError("pthread_sigmask failed");
  }
  // A reader that went away (`| head`) must not kill the launcher mid-run.
  ::signal(SIGPIPE, SIG_IGN);
  signal_fd_.Reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd_.valid()) return StatusFromErrno(errno, "signalfd");
  return absl::OkStatus();
}

absl::StatusOr<Proc*> Supervisor::Start(Proc::Role role, int node, int rank, std::string label,
                                        const SpawnOptions& options) {
  auto p = std::make_unique<Proc>();
  p->role = role;
  p->node = node;
  p->rank = rank;
  p->label = std::move(label);
  absl::StatusOr<std::unique_ptr<Subprocess>> sub = Subprocess::Spawn(options);
  if (!sub.ok()) return Annotate(sub.status(), absl::StrCat("starting ", p->Name()));
  p->sub = std::move(sub).value();
  if (janitor_ != nullptr) janitor_->WatchProcessGroup(p->sub->pid());
  p->out = std::make_unique<LineSplitter>(p->label, Stream::kStdout, sink_);
  p->err = std::make_unique<LineSplitter>(p->label, Stream::kStderr, sink_);
  procs_.push_back(std::move(p));
  return procs_.back().get();
}

void Supervisor::Message(absl::string_view text) { sink_->Line("launch", Stream::kStderr, text); }

std::vector<Proc*> Supervisor::Live(Proc::Role role) const {
  std::vector<Proc*> out;
  for (const auto& p : procs_) {
    if (p->role == role && !p->exited()) out.push_back(p.get());
  }
  return out;
}

void Supervisor::ReapAll() {
  for (const auto& p : procs_) {
    if (p->exited() || !p->sub->Poll()) continue;
    p->exit_time = absl::Now();
    // Its last words come before the news of its exit.
    DrainFd(&p->sub->stdout_fd(), p->out.get(), 64);
    DrainFd(&p->sub->stderr_fd(), p->err.get(), 64);
    if (p->stopping) {
      p->reported = true;
    } else {
      exits_.push_back(p.get());
    }
  }
}

bool Supervisor::ReadSignals(Event* event) {
  bool terminate = false;
  signalfd_siginfo info;
  for (;;) {
    const ssize_t n = ::read(signal_fd_.get(), &info, sizeof(info));
    if (n != sizeof(info)) break;  // EAGAIN: all read
    if (info.ssi_signo == SIGCHLD) continue;
    terminate = true;
    event->kind = Event::Kind::kSignal;
    event->signal = static_cast<int>(info.ssi_signo);
  }
  // SIGCHLD coalesces; reap every child whether or not one was read.
  ReapAll();
  return terminate;
}

Supervisor::Event Supervisor::Pump(const std::function<bool()>& done, absl::Time deadline,
                                   absl::Duration tick) {
  std::vector<pollfd> fds;
  std::vector<std::pair<UniqueFd*, LineSplitter*>> sources;
  for (;;) {
    Event event;
    if (!exits_.empty()) {
      event.kind = Event::Kind::kExited;
      event.proc = exits_.front();
      event.proc->reported = true;
      exits_.pop_front();
      return event;
    }
    if (done()) return event;
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      event.kind = Event::Kind::kDeadline;
      return event;
    }
    fds.clear();
    sources.clear();
    fds.push_back(pollfd{signal_fd_.get(), POLLIN, 0});
    for (const auto& p : procs_) {
      for (auto [fd, splitter] : {std::make_pair(&p->sub->stdout_fd(), p->out.get()),
                                  std::make_pair(&p->sub->stderr_fd(), p->err.get())}) {
        if (!fd->valid()) continue;
        fds.push_back(pollfd{fd->get(), POLLIN, 0});
        sources.emplace_back(fd, splitter);
      }
    }
    const absl::Duration wait = std::min(deadline - now, tick);
    const int timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1;
    const int rc = ::poll(fds.data(), fds.size(), timeout_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      Message(StatusFromErrno(errno, "poll").ToString());
      absl::SleepFor(absl::Milliseconds(10));
      continue;
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto [fd, splitter] = sources[i - 1];
      if (!splitter->DrainFrom(fd->get())) fd->Reset();
    }
    if (fds[0].revents != 0 && ReadSignals(&event)) return event;
    // A missed SIGCHLD (e.g. one blocked while a helper ran) must not stall.
    if (rc == 0) ReapAll();
  }
}

void Supervisor::Terminate(const std::vector<Proc*>& procs, absl::Duration grace) {
  std::vector<Proc*> live;
  for (Proc* p : procs) {
    if (p->exited()) continue;
    p->stopping = true;
    p->sub->Signal(SIGTERM);
    live.push_back(p);
  }
  auto all_exited = [&live] {
    return std::all_of(live.begin(), live.end(), [](Proc* p) { return p->exited(); });
  };
  absl::Time deadline = absl::Now() + grace;
  for (bool killed = false;;) {
    const Event e = Pump(all_exited, deadline);
    if (e.kind == Event::Kind::kDone) return;
    if (e.kind == Event::Kind::kExited) continue;  // someone else's exit; the caller scans procs
    if (killed) {
      for (Proc* p : live) {
        if (!p->exited()) Message(absl::StrCat(p->Name(), " did not exit after SIGKILL"));
      }
      return;
    }
    // Grace over, or a second signal from the user: no more waiting.
    for (Proc* p : live) {
      if (p->exited()) continue;
      Message(absl::StrCat(p->Name(), " still running; sending SIGKILL"));
      p->sub->Signal(SIGKILL);
    }
    killed = true;
    deadline = absl::Now() + absl::Seconds(5);
  }
}

void Supervisor::KillAll() {
  for (const auto& p : procs_) {
    p->stopping = p->stopping || !p->exited();
    p->sub->Signal(SIGKILL);
  }
  for (const auto& p : procs_) p->sub->WaitUntil(absl::Now() + absl::Seconds(5));
}

void Supervisor::DrainOutput(absl::Duration max_wait) {
  auto drained = [this] {
    for (const auto& p : procs_) {
      if (p->exited() && (p->sub->stdout_fd().valid() || p->sub->stderr_fd().valid())) {
        return false;
      }
    }
    return true;
  };
  const absl::Time deadline = absl::Now() + max_wait;
  while (Pump(drained, deadline).kind == Event::Kind::kExited) {
  }
}

}  // namespace launch
}  // namespace tokenrail
