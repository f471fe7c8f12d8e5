// RankClient: attach, collectives, liveness and detach. The data path (puts,
// completions, notifications) is in client_data.cc.
#include "runtime/client/client.h"

#include <unistd.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "runtime/arena/unix_socket.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr char kLog[] = "client";
// How often a busy wait looks at the daemon's socket (a syscall).
constexpr int64_t kSocketCheckIntervalNs = 1'000'000;

absl::StatusOr<int> ParseIntVar(const char* name, const char* value) {
  int out;
  if (value == nullptr || !absl::SimpleAtoi(value, &out) || out < 0) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, "='",
                                                   value == nullptr ? "" : value,
                                                   "' is not a non-negative integer"));
  }
  return out;
}

}  // namespace

absl::StatusOr<AttachOptions> AttachOptions::FromEnvironment() {
  AttachOptions o;
  const char* socket = std::getenv("TOKENRAIL_SOCKET");
  if (socket == nullptr || *socket == '\0') {
    return absl::InvalidArgumentError(
        "environment variable TOKENRAIL_SOCKET (the node daemon's socket) is not set");
  }
  o.socket_path = socket;
  const char* local = std::getenv("TOKENRAIL_LOCAL_RANK");
  if (local == nullptr) {
    return absl::InvalidArgumentError("environment variable TOKENRAIL_LOCAL_RANK is not set");
  }
  TR_ASSIGN_OR_RETURN(o.local_rank, ParseIntVar("TOKENRAIL_LOCAL_RANK", local));
  if (const char* node = std::getenv("TOKENRAIL_NODE_ID"); node != nullptr && *node != '\0') {
    TR_ASSIGN_OR_RETURN(o.expected_node_id, ParseIntVar("TOKENRAIL_NODE_ID", node));
  }
  if (const char* job = std::getenv("TOKENRAIL_JOB_ID"); job != nullptr) o.expected_job_id = job;
  return o;
}

absl::StatusOr<std::unique_ptr<RankClient>> RankClient::Attach(const AttachOptions& options) {
  if (options.socket_path.empty()) {
    return absl::InvalidArgumentError("Attach: AttachOptions::socket_path is empty");
  }
  if (options.local_rank < 0 || options.local_rank > kMaxLocalRanks) {
    return absl::InvalidArgumentError(
        absl::StrCat("Attach: local rank ", options.local_rank, " is outside 0..", kMaxLocalRanks));
  }
  const std::string where =
      absl::StrCat("attach to ", options.socket_path, " as local rank ", options.local_rank);
  const absl::Time deadline = absl::Now() + options.attach_timeout;
  TR_ASSIGN_OR_RETURN(UniqueFd sock, ConnectSeqpacket(options.socket_path, deadline));

  AttachMessage hello;
  hello.type = AttachMessageType::kHello;
  hello.seq = 0;
  hello.local_rank = options.local_rank;
  hello.pid = static_cast<int32_t>(::getpid());
  TR_RETURN_IF_ERROR(Annotate(SendPacket(sock.get(), EncodeAttachMessage(hello)), where));

  Packet packet;
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat(where, ": the daemon did not answer within ",
                       absl::FormatDuration(options.attach_timeout)));
    }
    TR_ASSIGN_OR_RETURN(bool readable, WaitReadable(sock.get(), left));
    if (!readable) continue;
    TR_ASSIGN_OR_RETURN(packet, ReceivePacket(sock.get(), kMaxAttachMessage, true));
    break;
  }
  if (packet.eof) {
    return absl::UnavailableError(absl::StrCat(where, ": the daemon closed the connection"));
  }
  TR_ASSIGN_OR_RETURN(AttachMessage reply, DecodeAttachMessage(packet.data));
  if (reply.type == AttachMessageType::kError) return Annotate(reply.error(), where);
  if (reply.type != AttachMessageType::kWelcome || !packet.fd.valid() ||
      reply.welcome.local_rank != options.local_rank) {
    return absl::InternalError(absl::StrCat(where, ": unexpected ",
                                            AttachMessageTypeName(reply.type), " reply",
                                            packet.fd.valid() ? "" : " without the arena fd"));
  }
  const WelcomeInfo& w = reply.welcome;
  // From here on the daemon counts us as attached: on any error say Detach
  // before closing, so that it does not mistake us for a dead rank.
  auto abandon = [&](absl::Status s) {
    AttachMessage bye;
    bye.type = AttachMessageType::kDetach;
    bye.seq = 1;
    (void)SendPacket(sock.get(), EncodeAttachMessage(bye));
    return Annotate(s, where);
  };
  absl::StatusOr<std::unique_ptr<Arena>> arena = Arena::Map(std::move(packet.fd), w.ranks_per_node);
  if (!arena.ok()) return abandon(arena.status());
  if ((*arena)->header().node_id != w.node_id || (*arena)->size() != w.arena_bytes) {
    return abandon(absl::InternalError(absl::StrCat(
        "arena header says node ", (*arena)->header().node_id, " with ", (*arena)->size(),
        " bytes, the welcome says node ", w.node_id, " with ", w.arena_bytes)));
  }
  if (options.expected_node_id >= 0 && options.expected_node_id != w.node_id) {
    return abandon(absl::FailedPreconditionError(
        absl::StrCat("TOKENRAIL_NODE_ID is ", options.expected_node_id,
                     " but the daemon serves node ", w.node_id)));
  }
  if (!options.expected_job_id.empty() && options.expected_job_id != w.job_id) {
    return abandon(absl::FailedPreconditionError(
        absl::StrCat("TOKENRAIL_JOB_ID is '", options.expected_job_id,
                     "' but the daemon serves job '", w.job_id, "'")));
  }
  for (size_t i = 0; i < w.regions.size(); ++i) {
    const RegionInfo& r = w.regions[i];
    if (r.id != i || r.offset > (*arena)->heap_bytes() ||
        r.size > (*arena)->heap_bytes() - r.offset) {
      return abandon(absl::InternalError(absl::StrCat("welcome lists a bad region ", r.id)));
    }
  }
  std::unique_ptr<RankClient> client(
      new RankClient(options, std::move(sock), *std::move(arena), w));
  TR_LOG(INFO, kLog) << "attached to " << client->daemon_name_ << " as rank " << w.global_rank
                     << " of " << w.world_size << " (local rank " << w.local_rank << ")";
  return client;
}

RankClient::RankClient(AttachOptions options, UniqueFd sock, std::unique_ptr<Arena> arena,
                       const WelcomeInfo& w)
    : options_(std::move(options)),
      sock_(std::move(sock)),
      arena_(std::move(arena)),
      topology_{w.job_id,         w.node_id,     w.nodes,     w.local_rank,
                w.ranks_per_node, w.global_rank, w.world_size},
      daemon_name_(absl::StrCat("tokenraild of node ", w.node_id, " (pid ",
                                arena_->header().daemon_pid, ", socket ", options_.socket_path,
                                ")")),
      commands_(arena_->command_producer(w.local_rank)),
      completions_(arena_->completion_consumer(w.local_rank)),
      notifications_(arena_->notify_consumer(w.local_rank)),
      regions_(w.regions) {}

RankClient::~RankClient() {
  absl::Status s = Detach();
  if (!s.ok()) TR_LOG(WARNING, kLog) << "detach: " << s;
}

absl::Status RankClient::Fail(absl::Status status) {
  if (sticky_.ok()) {
    sticky_ = std::move(status);
    TR_LOG(ERROR, kLog) << "rank " << topology_.global_rank << ": " << sticky_.message();
  }
  return sticky_;
}

absl::Status RankClient::CheckAlive(bool force) {
  if (!sticky_.ok()) return sticky_;
  if (arena_->failed()) return Fail(arena_->failure());
  const int64_t now = MonotonicNanos();
  if (force || now >= next_socket_check_ns_) {
    next_socket_check_ns_ = now + kSocketCheckIntervalNs;
    if (PeerClosed(sock_.get())) {
      return Fail(absl::UnavailableError(
          absl::StrCat(daemon_name_, " died: its socket closed without a failure notice")));
    }
  }
  return absl::OkStatus();
}

absl::Status RankClient::CheckUsable() {
  if (detached_) return absl::FailedPreconditionError("rank client is detached");
  return CheckAlive();
}

absl::Status RankClient::status() const {
  if (!sticky_.ok()) return sticky_;
  if (!detached_ && arena_->failed()) return arena_->failure();
  return absl::OkStatus();
}

absl::StatusOr<AttachMessage> RankClient::AwaitReply(uint64_t seq, absl::Time deadline) {
  for (;;) {
    TR_RETURN_IF_ERROR(CheckAlive());
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("the daemon has not answered yet");
    }
    // Short slices: the failure word is in memory, not on the socket.
    TR_ASSIGN_OR_RETURN(bool readable,
                        WaitReadable(sock_.get(), std::min(left, absl::Milliseconds(10))));
    if (!readable) continue;
    TR_ASSIGN_OR_RETURN(Packet p, ReceivePacket(sock_.get(), kMaxAttachMessage, false));
    if (p.eof) {
      TR_RETURN_IF_ERROR(CheckAlive());  // prefer the daemon's own failure notice
      return Fail(absl::UnavailableError(absl::StrCat(daemon_name_, " died: its socket closed")));
    }
    if (p.data.empty()) continue;
    absl::StatusOr<AttachMessage> m = DecodeAttachMessage(p.data);
    if (!m.ok()) return Fail(Annotate(m.status(), absl::StrCat(daemon_name_, " sent")));
    if (m->seq == seq) return *std::move(m);
    TR_VLOG(1, kLog) << "dropping stale reply " << m->seq << " (waiting for " << seq << ")";
  }
}

absl::StatusOr<AttachMessage> RankClient::Call(AttachMessage request, absl::Time deadline) {
  request.seq = next_seq_++;
  TR_RETURN_IF_ERROR(SendPacket(sock_.get(), EncodeAttachMessage(request)));
  return AwaitReply(request.seq, deadline);
}

absl::StatusOr<AttachMessage> RankClient::Collective(const AttachMessage& request,
                                                     absl::Time deadline) {
  const char* name = request.type == AttachMessageType::kBarrier ? "Barrier" : "AllocateSymmetric";
  TR_RETURN_IF_ERROR(CheckUsable());
  uint64_t seq = pending_.seq;
  if (seq != 0) {
    if (pending_.type != request.type || pending_.size != request.size) {
      return absl::FailedPreconditionError(
          absl::StrCat(name, ": an earlier ", AttachMessageTypeName(pending_.type),
                       " timed out and is still running; repeat that call to finish it first"));
    }
  } else {
    AttachMessage m = request;
    m.seq = seq = next_seq_++;
    TR_RETURN_IF_ERROR(SendPacket(sock_.get(), EncodeAttachMessage(m)));
    pending_ = {seq, request.type, request.size};
  }
  absl::StatusOr<AttachMessage> reply = AwaitReply(seq, deadline);
  if (reply.ok() || reply.status().code() != absl::StatusCode::kDeadlineExceeded) {
    pending_ = PendingCollective();
  } else {
    return absl::DeadlineExceededError(absl::StrCat(
        name, ": not every rank of the job entered it before the deadline; it is still pending"));
  }
  if (!reply.ok()) return reply.status();
  if (reply->type == AttachMessageType::kError) return reply->error();
  return reply;
}

absl::StatusOr<Region> RankClient::AllocateSymmetric(size_t size) {
  return AllocateSymmetric(size, absl::Now() + options_.op_timeout);
}

absl::StatusOr<Region> RankClient::AllocateSymmetric(size_t size, absl::Time deadline) {
  AttachMessage req;
  req.type = AttachMessageType::kAllocate;
  req.size = size;
  TR_ASSIGN_OR_RETURN(AttachMessage reply, Collective(req, deadline));
  const RegionInfo& r = reply.region;
  if (reply.type != AttachMessageType::kAllocated || r.id != regions_.size() || r.size != size ||
      r.offset > arena_->heap_bytes() || r.size > arena_->heap_bytes() - r.offset) {
    return Fail(absl::InternalError(absl::StrCat(
        daemon_name_, " answered AllocateSymmetric(", size, ") with ",
        AttachMessageTypeName(reply.type), " region ", r.id, " [", r.offset, ", +", r.size, ")")));
  }
  regions_.push_back(r);
  return MakeRegion(r);
}

absl::StatusOr<Region> RankClient::MakeRegion(const RegionInfo& info) const {
  return Region{info.id, static_cast<size_t>(info.size),
                arena_->heap(topology_.local_rank) + info.offset};
}

absl::Status RankClient::Barrier(absl::Time deadline) {
  AttachMessage req;
  req.type = AttachMessageType::kBarrier;
  TR_ASSIGN_OR_RETURN(AttachMessage reply, Collective(req, deadline));
  if (reply.type != AttachMessageType::kBarrierDone) {
    return Fail(absl::InternalError(
        absl::StrCat(daemon_name_, " answered Barrier with ", AttachMessageTypeName(reply.type))));
  }
  return absl::OkStatus();
}

absl::Status RankClient::Detach() {
  if (detached_) return absl::OkStatus();
  absl::Status result;
  const bool healthy = sticky_.ok() && !arena_->failed();
  if (healthy) result = WaitAll(absl::Now() + options_.op_timeout);
  // Tell the daemon even after a failure, so that it counts a clean exit.
  if (!PeerClosed(sock_.get())) {
    AttachMessage req;
    req.type = AttachMessageType::kDetach;
    pending_ = PendingCollective();  // a pending collective's reply is moot now
    absl::StatusOr<AttachMessage> reply = Call(req, absl::Now() + absl::Seconds(10));
    if (healthy && result.ok()) {
      if (!reply.ok()) {
        result = reply.status();
      } else if (reply->type == AttachMessageType::kError) {
        result = reply->error();
      }
    }
  } else if (healthy && result.ok()) {
    result = absl::UnavailableError(absl::StrCat(daemon_name_, " died before Detach"));
  }
  detached_ = true;
  sock_.Reset();
  TR_LOG(INFO, kLog) << "rank " << topology_.global_rank << " detached" << (result.ok() ? "" : ": ")
                     << (result.ok() ? "" : result.message());
  return result;
}

}  // namespace runtime
}  // namespace tokenrail
