// VerbsEndpoint: creation, wireup steps and the Endpoint API. Posting,
// completions and credits are in endpoint_post.cc.
#include "transport/verbs/endpoint.h"

#include <algorithm>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/ibverbs_status.h"
#include "common/logging.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

constexpr char kLog[] = "verbs";

absl::Status RangeError(absl::string_view which, size_t offset, size_t length, size_t size) {
  return absl::InvalidArgumentError(absl::StrCat("verbs: put ", which, " range [", offset, ", ",
                                                 offset, "+", length, ") exceeds the region's ",
                                                 size, " bytes"));
}

bool SameKey(const RemoteKeyInfo& a, const RemoteKeyInfo& b) {
  return a.region_id == b.region_id && a.cookie == b.cookie && a.addr == b.addr &&
         a.size == b.size && a.rkey == b.rkey;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VerbsEndpoint>> VerbsEndpoint::Create(const EndpointEnv& env,
                                                                     const AddressInfo& peer) {
  std::unique_ptr<VerbsEndpoint> ep(new VerbsEndpoint(env, peer));
  const VerbsOptions& o = *env.options;
  Device& dev = *env.device;

  const int want_cqe = o.cq_depth > 0 ? o.cq_depth : o.qp_depth + o.recv_depth + 64;
  if (want_cqe > dev.attr.max_cqe) {
    return absl::InvalidArgumentError(absl::StrCat("verbs: ", dev.where(), " supports CQs of ",
                                                   dev.attr.max_cqe, " entries, need ", want_cqe,
                                                   " (lower qp_depth/recv_depth)"));
  }
  ep->cq_.reset(ibv_create_cq(dev.context.get(), want_cqe, nullptr, dev.channel.get(), 0));
  if (ep->cq_ == nullptr) {
    return StatusFromIbv(-1, absl::StrCat("verbs: ibv_create_cq(", want_cqe, ") on ", dev.where()));
  }
  QpCaps caps;
  TR_ASSIGN_OR_RETURN(ep->qp_, CreateRcQp(dev, ep->cq_.get(), o, &caps));
  // Our own accounting never exceeds what we asked for, which the CQ covers.
  ep->max_send_wr_ = std::min<uint64_t>(caps.max_send_wr, o.qp_depth);
  ep->recv_slots_ = std::min<uint32_t>(caps.max_recv_wr, o.recv_depth);
  ep->max_inline_ = std::min<uint32_t>(caps.max_inline, o.inline_threshold);
  ep->max_chunk_ = dev.port.max_msg_size > 0 ? dev.port.max_msg_size : (uint64_t{1} << 30);
  ep->signal_interval_ = std::max<uint64_t>(1, std::min<uint64_t>(64, ep->max_send_wr_ / 4));
  ep->replenish_batch_ = std::max<uint32_t>(1, std::min<uint32_t>(64, ep->recv_slots_ / 8));

  const uint32_t send_slots = static_cast<uint32_t>(std::min<uint64_t>(64, ep->max_send_wr_));
  TR_ASSIGN_OR_RETURN(ep->recv_buf_, MappedBuffer::Create(size_t{ep->recv_slots_} * kRecvSlotSize));
  TR_ASSIGN_OR_RETURN(ep->send_buf_,
                      MappedBuffer::Create(kSendHeader + size_t{send_slots} * kRecvSlotSize));
  TR_ASSIGN_OR_RETURN(ep->credit_buf_, MappedBuffer::Create(64));
  ep->recv_mr_.reset(
      ibv_reg_mr(dev.pd.get(), ep->recv_buf_.data(), ep->recv_buf_.size(), IBV_ACCESS_LOCAL_WRITE));
  ep->send_mr_.reset(
      ibv_reg_mr(dev.pd.get(), ep->send_buf_.data(), ep->send_buf_.size(), IBV_ACCESS_LOCAL_WRITE));
  ep->credit_mr_.reset(ibv_reg_mr(dev.pd.get(), ep->credit_buf_.data(), ep->credit_buf_.size(),
                                  IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE));
  if (ep->recv_mr_ == nullptr || ep->send_mr_ == nullptr || ep->credit_mr_ == nullptr) {
    return StatusFromIbv(-1,
                         absl::StrCat("verbs: ibv_reg_mr of endpoint buffers on ", dev.where()));
  }
  for (uint32_t i = 0; i < send_slots; ++i) ep->free_send_slots_.push_back(send_slots - 1 - i);

  TR_RETURN_IF_ERROR(QpToInit(ep->qp_.get(), dev.port.port));
  absl::BitGen gen;
  ep->local_psn_ = absl::Uniform<uint32_t>(gen, 0, 1u << 24);

  // Post every receive now: the count travels in the QP blob as the peer's
  // initial credits.
  for (uint32_t i = 0; i < ep->recv_slots_; ++i) ep->free_recv_slots_.push_back(i);
  ep->Replenish(/*force=*/true);
  TR_RETURN_IF_ERROR(ep->status_);
  ep->recv_advertised_ = ep->recv_posted_total_;
  return ep;
}

VerbsEndpoint::~VerbsEndpoint() {
  if (in_set_) env_.endpoints->Remove(this);
  if (env_.drain_async_events) env_.drain_async_events();
  // Members then go in reverse order: the wireup socket (the peer sees EOF),
  // the QP, the CQ, the MRs, the buffers.
}

QpInfo VerbsEndpoint::LocalQpInfo() const {
  QpInfo q;
  q.context_id = env_.context_id;
  q.lid = env_.device->port.lid;
  q.gid = env_.device->gid;
  q.qpn = qp_->qp_num;
  q.psn = local_psn_;
  q.mtu = static_cast<uint16_t>(env_.device->mtu);
  q.recv_depth = static_cast<uint32_t>(recv_posted_total_);
  q.credit_addr = reinterpret_cast<uint64_t>(credit_buf_.data());
  q.credit_rkey = credit_mr_->rkey;
  return q;
}

absl::Status VerbsEndpoint::Establish(const QpInfo& remote) {
  if (remote.context_id != peer_.context_id) {
    return absl::InvalidArgumentError(absl::StrCat("verbs: QP blob from context ",
                                                   remote.context_id, ", expected peer '",
                                                   peer_.name, "' (", peer_.context_id, ")"));
  }
  if (env_.device->port.link == LinkLayer::kInfiniBand && remote.lid == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("verbs: peer '", peer_.name, "' sent LID 0 on an InfiniBand port"));
  }
  if (env_.device->port.link == LinkLayer::kEthernet && IsZeroGid(remote.gid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("verbs: peer '", peer_.name, "' sent a zero GID on a RoCE port"));
  }
  const int mtu = PathMtu(env_.device->mtu, remote.mtu);
  TR_RETURN_IF_ERROR(QpToRtr(qp_.get(), *env_.device, remote, mtu, *env_.options));
  TR_RETURN_IF_ERROR(QpToRts(qp_.get(), local_psn_, *env_.options));
  initial_credits_ = remote.recv_depth;
  peer_credit_addr_ = remote.credit_addr;
  peer_credit_rkey_ = remote.credit_rkey;
  TR_VLOG(1, kLog) << "QP " << qp_->qp_num << " -> peer '" << peer_.name << "' QP " << remote.qpn
                   << " RTS (mtu " << mtu << ", credits " << initial_credits_ << ")";
  return absl::OkStatus();
}

void VerbsEndpoint::AttachWireup(WireupConn conn) {
  wireup_.emplace(std::move(conn));
  env_.endpoints->Add(this);
  in_set_ = true;
}

void VerbsEndpoint::Fail(const absl::Status& status) {
  if (!status_.ok() || status.ok()) return;
  status_ = Annotate(status, absl::StrCat("verbs: peer '", peer_.name, "'"));
  TR_LOG(WARNING, kLog) << "endpoint failed: " << status_.message();
}

absl::Status VerbsEndpoint::Progress() {
  if (!status_.ok()) return status_;
  PollCq();
  Replenish(/*force=*/false);
  PostPending();
  SendCredits();
  CheckWireup(/*now=*/false);
  return status_;
}

absl::Status VerbsEndpoint::RequestCqEvent() {
  TR_RETURN_IF_ERROR(status_);
  const int rc = ibv_req_notify_cq(cq_.get(), /*solicited_only=*/0);
  if (rc != 0) {
    Fail(StatusFromIbv(rc, "verbs: ibv_req_notify_cq"));
    return status_;
  }
  return absl::OkStatus();
}

std::string VerbsEndpoint::Describe() const {
  return absl::StrCat(pending_.size(), " queued, ", sq_posted_ - sq_completed_, " WRs in flight, ",
                      Credits(), " credits");
}

absl::StatusOr<std::unique_ptr<RemoteRegion>> VerbsEndpoint::UnpackRemoteKey(
    absl::string_view key) {
  TR_RETURN_IF_ERROR(status_);
  TR_ASSIGN_OR_RETURN(RemoteKeyInfo k, verbs::UnpackRemoteKey(key));
  if (k.context_id != peer_.context_id) {
    return absl::InvalidArgumentError(absl::StrCat("verbs: remote key was made by context ",
                                                   k.context_id, ", not by peer '", peer_.name,
                                                   "' (", peer_.context_id, ")"));
  }
  auto cached = validated_.find(k.region_id);
  if (cached != validated_.end() && SameKey(cached->second, k)) {
    return std::unique_ptr<RemoteRegion>(new VerbsRemoteRegion(k));
  }
  const uint64_t id = next_request_++;
  EnqueueSend(EncodeKeyQuery(id, k));
  const absl::Time deadline = absl::Now() + env_.rpc_timeout;
  Backoff backoff;
  while (!key_replies_.count(id)) {
    TR_RETURN_IF_ERROR(Progress());
    if (key_replies_.count(id)) break;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "verbs: peer '", peer_.name, "' did not answer the validation of region ", k.region_id,
          " within ", absl::FormatDuration(env_.rpc_timeout), " (", Describe(), ")"));
    }
    backoff.Pause();
  }
  auto reply = key_replies_.find(id);
  const bool ok = reply->second.first;
  const std::string reason = std::move(reply->second.second);
  key_replies_.erase(reply);
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("verbs: remote key rejected by peer '", peer_.name, "': ", reason));
  }
  validated_[k.region_id] = k;
  return std::unique_ptr<RemoteRegion>(new VerbsRemoteRegion(k));
}

absl::StatusOr<Ticket> VerbsEndpoint::Put(const MemoryRegion& src, size_t src_offset,
                                          const RemoteRegion& dst, size_t dst_offset, size_t length,
                                          uint32_t imm) {
  TR_RETURN_IF_ERROR(status_);
  const auto* s = dynamic_cast<const VerbsMemoryRegion*>(&src);
  if (s == nullptr || s->context_id() != env_.context_id) {
    return absl::InvalidArgumentError(
        "verbs: put source was not registered with this endpoint's verbs context");
  }
  const auto* d = dynamic_cast<const VerbsRemoteRegion*>(&dst);
  if (d == nullptr || d->key().context_id != peer_.context_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("verbs: put target was not unpacked from a key of peer '", peer_.name, "'"));
  }
  if (src_offset > src.size() || length > src.size() - src_offset) {
    return RangeError("source", src_offset, length, src.size());
  }
  if (dst_offset > dst.size() || length > dst.size() - dst_offset) {
    return RangeError("target", dst_offset, length, dst.size());
  }
  PendingOp op;
  op.ticket = next_ticket_++;
  op.src_addr = reinterpret_cast<uint64_t>(src.data()) + src_offset;
  op.lkey = s->lkey();
  op.dst_addr = d->key().addr + dst_offset;
  op.rkey = d->key().rkey;
  op.length = length;
  op.imm = imm;
  op.host_source = src.kind() == MemoryKind::kHost;
  op.region_id = d->key().region_id;
  op.dst_offset = dst_offset;
  pending_.push_back(std::move(op));
  TR_RETURN_IF_ERROR(Progress());
  return next_ticket_ - 1;
}

absl::StatusOr<bool> VerbsEndpoint::IsComplete(Ticket ticket) {
  if (ticket == 0 || ticket >= next_ticket_) {
    return absl::InvalidArgumentError(
        absl::StrCat("verbs: ticket ", ticket, " was not issued (last is ", next_ticket_ - 1, ")"));
  }
  TR_RETURN_IF_ERROR(Progress());
  if (ticket <= completed_ticket_) return true;
  if (ticket <= last_posted_ticket_) RequestSignal();
  return false;
}

absl::Status VerbsEndpoint::WaitComplete(Ticket ticket, absl::Time deadline) {
  Backoff backoff;
  while (true) {
    TR_ASSIGN_OR_RETURN(const bool done, IsComplete(ticket));
    if (done) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("verbs: put ticket ", ticket, " to peer '", peer_.name,
                       "' not complete by the deadline (", Describe(), ")"));
    }
    backoff.Pause();
  }
}

absl::Status VerbsEndpoint::Flush(absl::Time deadline) {
  Backoff backoff;
  while (true) {
    TR_RETURN_IF_ERROR(Progress());
    if (pending_.empty() && sq_completed_ == sq_posted_) return absl::OkStatus();
    RequestSignal();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "verbs: flush to peer '", peer_.name, "' not done by the deadline (", Describe(), ")"));
    }
    backoff.Pause();
  }
}

absl::StatusOr<size_t> VerbsEndpoint::PollNotifications(Notification* out, size_t max) {
  const absl::Status s = Progress();
  // What arrived before a failure is still delivered (like data before EOF).
  if (notifications_.empty() && !s.ok()) return s;
  const size_t n = std::min(max, notifications_.size());
  for (size_t i = 0; i < n; ++i) {
    out[i] = notifications_.front();
    notifications_.pop_front();
  }
  return n;
}

absl::StatusOr<Notification> VerbsEndpoint::WaitNotification(absl::Time deadline) {
  Backoff backoff;
  while (true) {
    Notification n;
    TR_ASSIGN_OR_RETURN(const size_t got, PollNotifications(&n, 1));
    if (got == 1) return n;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("verbs: no notification from peer '", peer_.name, "' by the deadline"));
    }
    backoff.Pause();
  }
}

absl::Status VerbsEndpoint::SendMessage(absl::string_view message) {
  TR_RETURN_IF_ERROR(status_);
  if (message.size() > kMaxMessageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "verbs: message of ", message.size(), " bytes exceeds the limit of ", kMaxMessageSize));
  }
  EnqueueSend(EncodeUserMessage(message));
  return Progress();
}

absl::StatusOr<bool> VerbsEndpoint::PollMessage(std::string* out) {
  const absl::Status s = Progress();
  if (messages_.empty()) {
    if (!s.ok()) return s;
    return false;
  }
  *out = std::move(messages_.front());
  messages_.pop_front();
  return true;
}

absl::StatusOr<std::string> VerbsEndpoint::WaitMessage(absl::Time deadline) {
  Backoff backoff;
  while (true) {
    std::string msg;
    TR_ASSIGN_OR_RETURN(const bool got, PollMessage(&msg));
    if (got) return msg;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("verbs: no message from peer '", peer_.name, "' by the deadline"));
    }
    backoff.Pause();
  }
}

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
