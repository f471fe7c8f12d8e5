#include "runtime/daemon/rank_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/logging.h"
#include "common/status.h"
#include "runtime/arena/doorbell.h"
#include "runtime/arena/unix_socket.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr char kLog[] = "daemon";
constexpr int64_t kHelloTimeoutNs = 10'000'000'000;
constexpr int kPollTimeoutMs = 100;

}  // namespace

absl::StatusOr<std::unique_ptr<RankServer>> RankServer::Create(const std::string& path,
                                                               int ranks_per_node, int arena_fd,
                                                               RankServerHost host) {
  TR_ASSIGN_OR_RETURN(UniqueFd listener, ListenSeqpacket(path));
  UniqueFd wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake.valid()) return StatusFromErrno(errno, "eventfd for the rank server");
  return std::unique_ptr<RankServer>(new RankServer(
      path, ranks_per_node, arena_fd, std::move(listener), std::move(wake), std::move(host)));
}

RankServer::RankServer(std::string path, int ranks_per_node, int arena_fd, UniqueFd listener,
                       UniqueFd wake, RankServerHost host)
    : path_(std::move(path)),
      ranks_per_node_(ranks_per_node),
      arena_fd_(arena_fd),
      listener_(std::move(listener)),
      wake_(std::move(wake)),
      host_(std::move(host)),
      ranks_(static_cast<size_t>(ranks_per_node)) {}

RankServer::~RankServer() { Stop(); }

void RankServer::Start() {
  thread_ = std::thread([this] { Run(); });
}

void RankServer::Stop() {
  stop_.store(true, std::memory_order_release);
  if (wake_.valid()) {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
  connections_.clear();
  if (listener_.valid()) {
    listener_.Reset();
    ::unlink(path_.c_str());
  }
}

void RankServer::StopAccepting(const absl::Status& reason) {
  absl::MutexLock lock(&mu_);
  if (refuse_.ok()) refuse_ = reason;
}

void RankServer::Reply(int r, uint64_t generation, AttachMessage reply) {
  {
    absl::MutexLock lock(&mu_);
    replies_.push_back({r, generation, std::move(reply)});
  }
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

std::vector<RankConnectionInfo> RankServer::Ranks() const {
  absl::MutexLock lock(&mu_);
  return ranks_;
}

void RankServer::Run() {
  std::vector<pollfd> fds;
  while (!stop_.load(std::memory_order_acquire)) {
    fds.clear();
    fds.push_back({listener_.get(), POLLIN, 0});
    fds.push_back({wake_.get(), POLLIN, 0});
    for (const auto& c : connections_) fds.push_back({c->fd.get(), POLLIN, 0});
    const int rc = ::poll(fds.data(), fds.size(), kPollTimeoutMs);
    if (rc < 0 && errno != EINTR) {
      TR_LOG(ERROR, kLog) << StatusFromErrno(errno, "poll on the rank socket");
      continue;
    }
    if (fds[1].revents != 0) {
      uint64_t n;
      (void)!::read(wake_.get(), &n, sizeof(n));
    }
    SendReplies();
    // Serve the connections that were polled (new ones come after them).
    const size_t polled = fds.size() - 2;
    const int64_t now = MonotonicNanos();
    for (size_t i = 0; i < polled; ++i) {
      Connection& c = *connections_[i];
      if (!c.fd.valid()) continue;  // closed while sending a reply
      bool keep = true;
      if (fds[i + 2].revents != 0) {
        keep = Serve(c);
      } else if (c.local_rank < 0 && now > c.hello_deadline_ns) {
        Close(c, "sent no hello within 10 s");
        keep = false;
      }
      if (!keep) c.fd.Reset();
    }
    connections_.erase(std::remove_if(connections_.begin(), connections_.end(),
                                      [](const auto& c) { return !c->fd.valid(); }),
                       connections_.end());
    if (fds[0].revents != 0) AcceptAll();
  }
}

void RankServer::AcceptAll() {
  for (;;) {
    absl::StatusOr<UniqueFd> fd = AcceptSeqpacket(listener_.get());
    if (!fd.ok()) {
      TR_LOG(ERROR, kLog) << fd.status();
      return;
    }
    if (!fd->valid()) return;
    auto c = std::make_unique<Connection>();
    c->fd = *std::move(fd);
    // Replies must never block the server on a rank that stopped reading.
    ::fcntl(c->fd.get(), F_SETFL, ::fcntl(c->fd.get(), F_GETFL) | O_NONBLOCK);
    absl::StatusOr<PeerCredentials> cred = GetPeerCredentials(c->fd.get());
    if (!cred.ok()) {
      TR_LOG(WARNING, kLog) << "refusing a rank connection: " << cred.status();
      continue;
    }
    if (cred->uid != ::geteuid()) {
      const std::string why = absl::StrCat("rank socket ", path_, ": uid ", cred->uid,
                                           " is not the daemon's uid ", ::geteuid());
      TR_LOG(WARNING, kLog) << "refused pid " << cred->pid << ": " << why;
      (void)SendPacket(c->fd.get(), EncodeAttachMessage(
                                        AttachMessage::Error(0, absl::PermissionDeniedError(why))));
      continue;
    }
    c->pid = cred->pid;
    c->hello_deadline_ns = MonotonicNanos() + kHelloTimeoutNs;
    connections_.push_back(std::move(c));
  }
}

bool RankServer::Serve(Connection& c) {
  // Several messages may be waiting; read them all without blocking.
  for (;;) {
    absl::StatusOr<Packet> p = ReceivePacket(c.fd.get(), kMaxAttachMessage, false);
    if (!p.ok()) {
      Close(c, absl::StrCat("broke its socket: ", p.status().message()));
      return false;
    }
    if (p->eof) {
      Close(c, "exited without detaching (its socket closed)");
      return false;
    }
    if (p->data.empty()) return true;
    absl::StatusOr<AttachMessage> m = DecodeAttachMessage(p->data);
    if (!m.ok()) {
      Close(c, absl::StrCat("sent a malformed request: ", m.status().message()));
      return false;
    }
    if (!Handle(c, *m)) return false;
  }
}

bool RankServer::Handle(Connection& c, const AttachMessage& m) {
  switch (m.type) {
    case AttachMessageType::kHello: {
      if (c.local_rank >= 0) {
        Close(c, "sent a second hello");
        return false;
      }
      const int r = m.local_rank;
      absl::Status refuse;
      {
        absl::MutexLock lock(&mu_);
        if (!refuse_.ok()) {
          refuse = refuse_;
        } else if (r < 0 || r >= ranks_per_node_) {
          refuse = absl::InvalidArgumentError(absl::StrCat("local rank ", r, " is outside 0..",
                                                           ranks_per_node_ - 1, " of this node"));
        } else if (ranks_[static_cast<size_t>(r)].attached) {
          refuse =
              absl::AlreadyExistsError(absl::StrCat("local rank ", r, " is already attached (pid ",
                                                    ranks_[static_cast<size_t>(r)].pid, ")"));
        }
      }
      if (refuse.ok()) {
        absl::StatusOr<WelcomeInfo> welcome = host_.attach(r, c.pid);
        if (welcome.ok()) {
          c.local_rank = r;
          c.generation = next_generation_++;
          {
            absl::MutexLock lock(&mu_);
            ranks_[static_cast<size_t>(r)] = {true, c.pid};
          }
          AttachMessage reply;
          reply.type = AttachMessageType::kWelcome;
          reply.seq = m.seq;
          reply.welcome = *std::move(welcome);
          TR_LOG(INFO, kLog) << "local rank " << r << " attached (pid " << c.pid << ")";
          return Send(c, reply, arena_fd_);
        }
        refuse = welcome.status();
      }
      TR_LOG(WARNING, kLog) << "refused attach of local rank " << r << " (pid " << c.pid
                            << "): " << refuse.message();
      (void)Send(c, AttachMessage::Error(m.seq, refuse));
      return false;  // one hello per connection
    }
    case AttachMessageType::kAllocate:
    case AttachMessageType::kBarrier:
      if (c.local_rank < 0 || c.detached) {
        (void)Send(c, AttachMessage::Error(
                          m.seq, absl::FailedPreconditionError("not attached: send Hello first")));
        return true;
      }
      host_.collective(c.local_rank, c.generation, m);
      return true;
    case AttachMessageType::kDetach: {
      if (c.local_rank >= 0 && !c.detached) {
        c.detached = true;
        host_.detached(c.local_rank, c.pid);
        absl::MutexLock lock(&mu_);
        ranks_[static_cast<size_t>(c.local_rank)] = {false, 0};
      }
      AttachMessage reply;
      reply.type = AttachMessageType::kDetached;
      reply.seq = m.seq;
      TR_LOG(INFO, kLog) << "local rank " << c.local_rank << " detached (pid " << c.pid << ")";
      return Send(c, reply);
    }
    default:
      Close(c, absl::StrCat("sent an unexpected ", AttachMessageTypeName(m.type), " message"));
      return false;
  }
}

bool RankServer::Send(Connection& c, const AttachMessage& m, int pass_fd) {
  absl::Status s = SendPacket(c.fd.get(), EncodeAttachMessage(m), pass_fd);
  if (s.ok()) return true;
  Close(c, absl::StrCat("cannot be answered: ", s.message()));
  return false;
}

void RankServer::Close(Connection& c, const std::string& why) {
  if (c.local_rank >= 0 && !c.detached) {
    const int r = c.local_rank;
    c.detached = true;
    {
      absl::MutexLock lock(&mu_);
      ranks_[static_cast<size_t>(r)] = {false, 0};
    }
    if (!stop_.load(std::memory_order_acquire)) host_.lost(r, c.pid, why);
  } else if (c.local_rank < 0) {
    TR_VLOG(1, kLog) << "closing an unattached connection (pid " << c.pid << "): " << why;
  }
}

void RankServer::SendReplies() {
  std::deque<QueuedReply> replies;
  {
    absl::MutexLock lock(&mu_);
    replies.swap(replies_);
  }
  for (QueuedReply& q : replies) {
    for (const auto& c : connections_) {
      if (c->fd.valid() && c->local_rank == q.r && c->generation == q.generation && !c->detached) {
        if (!Send(*c, q.message)) c->fd.Reset();
        break;
      }
    }
  }
}

}  // namespace runtime
}  // namespace tokenrail
