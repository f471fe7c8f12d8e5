// Peer: receive side. Runs inside ucp_worker_progress (active-message and
// receive-completion callbacks); replies are queued for Service().
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/ucs_status.h"
#include "transport/ucx/context.h"
#include "transport/ucx/peer.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

// Most puts (or messages) a sender may have ahead of the oldest undelivered
// one; beyond it the sequence number is treated as corrupt.
constexpr uint64_t kMaxWindow = uint64_t{1} << 22;

struct RecvOp {
  Peer* peer;
  uint64_t seq;
  uint64_t region_id;
};

void RecvCallback(void* request, ucs_status_t status, size_t /*length*/, void* user_data) {
  auto* op = static_cast<RecvOp*>(user_data);
  op->peer->OnRecvDone(op->seq, op->region_id, status);
  delete op;
  ucp_request_free(request);
}

}  // namespace

void Peer::ProtocolError(absl::string_view what) {
  Fail(absl::UnavailableError(absl::StrCat("ucx: protocol error from ", Describe(), ": ", what)));
}

void Peer::OnHello(absl::string_view name) {
  if (name_.empty()) name_ = std::string(name);
  hello_received_ = true;
}

void Peer::OnBye() {
  Fail(absl::UnavailableError(absl::StrCat("ucx: ", Describe(), " closed its endpoint")));
}

Peer::Slot* Peer::ClaimSlot(uint64_t seq) {
  if (seq < next_deliver_ || seq - next_deliver_ >= kMaxWindow) {
    ProtocolError(absl::StrCat("put sequence number ", seq, " outside the window [", next_deliver_,
                               ", ", next_deliver_ + kMaxWindow, ")"));
    return nullptr;
  }
  const uint64_t index = seq - next_deliver_;
  if (index >= window_.size()) window_.resize(index + 1);
  Slot* slot = &window_[index];
  if (slot->state != kEmpty) {
    ProtocolError(absl::StrCat("put sequence number ", seq, " arrived twice"));
    return nullptr;
  }
  return slot;
}

void Peer::FinishSlot(uint64_t seq, SlotState state, uint32_t reject_reason) {
  if (seq < next_deliver_ || seq - next_deliver_ >= window_.size()) return;
  window_[seq - next_deliver_].state = state;
  if (state == kRejected) {
    pending_rejects_.push_back(RejectEntry{seq, reject_reason, 0});
    MarkDirty();
  }
  Deliver();
}

void Peer::Deliver() {
  bool advanced = false;
  while (!window_.empty() &&
         (window_.front().state == kDone || window_.front().state == kRejected)) {
    if (window_.front().state == kDone) {
      notifications_.push_back(Notification{window_.front().imm, window_.front().length});
    }
    window_.pop_front();
    ++next_deliver_;
    advanced = true;
  }
  if (advanced && ack_wanted_ > ack_sent_) MarkDirty();
}

ucs_status_t Peer::OnPut(const PutHeader& h, void* data, size_t length,
                         const ucp_am_recv_param_t* param) {
  const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  Slot* slot = ClaimSlot(h.seq);
  if (slot == nullptr) return rndv ? UCS_ERR_CANCELED : UCS_OK;
  if ((h.flags & kPutFlagAckWanted) != 0 && h.seq > ack_wanted_) ack_wanted_ = h.seq;
  slot->state = kReceiving;
  slot->imm = h.imm;
  slot->length = h.length;

  // Re-validate region, cookie and range for every put: a key may have been
  // valid when unpacked and name a deregistered region now.
  char* target = nullptr;
  MemoryKind kind = MemoryKind::kHost;
  uint32_t reason = ctx_->ValidatePut(h.region_id, h.cookie, h.offset, h.length, &target, &kind);
  if (reason == 0 && length != h.length) reason = kRejectLengthMismatch;
  if (reason == 0 && !rndv && length > 0 && kind == MemoryKind::kCuda) {
    reason = kRejectMemoryKind;
  }
  if (reason != 0) {
    TR_VLOG(1, "ucx") << "rejecting put " << h.seq << " from " << Describe() << ": "
                      << RejectReasonName(reason);
    FinishSlot(h.seq, kRejected, reason);
    // For rendezvous the sender's request completes with this status.
    return rndv ? UCS_ERR_REJECTED : UCS_OK;
  }
  if (!rndv) {
    if (length > 0) std::memcpy(target, data, length);
    FinishSlot(h.seq, kDone, 0);
    return UCS_OK;
  }
  // Rendezvous: UCP fetches the data straight into the region.
  auto* op = new RecvOp{this, h.seq, h.region_id};
  ucp_request_param_t p = {};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.recv_am = &RecvCallback;
  p.user_data = op;
  if (kind == MemoryKind::kCuda) {
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMORY_TYPE;
    p.memory_type = UCS_MEMORY_TYPE_CUDA;
  }
  ctx_->RegionReceiveStarted(h.region_id);
  ucs_status_ptr_t req = ucp_am_recv_data_nbx(ctx_->worker(), data, target, length, &p);
  if (req == nullptr) {
    delete op;
    ctx_->RegionReceiveDone(h.region_id);
    FinishSlot(h.seq, kDone, 0);
  } else if (UCS_PTR_IS_ERR(req)) {
    delete op;
    ctx_->RegionReceiveDone(h.region_id);
    Fail(absl::UnavailableError(absl::StrCat("ucx: receiving put ", h.seq, " from ", Describe(),
                                             " failed: ", ucs_status_string(UCS_PTR_STATUS(req)))));
  } else {
    ++inflight_;
  }
  return UCS_INPROGRESS;
}

void Peer::OnRecvDone(uint64_t seq, uint64_t region_id, ucs_status_t status) {
  --inflight_;
  ctx_->RegionReceiveDone(region_id);
  if (status == UCS_OK) {
    FinishSlot(seq, kDone, 0);
    return;
  }
  if (closed_ && status == UCS_ERR_CANCELED) return;
  Fail(absl::UnavailableError(absl::StrCat("ucx: receiving put ", seq, " from ", Describe(),
                                           " failed: ", ucs_status_string(status))));
}

void Peer::OnNotify(const NotifyEntry* entries, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    const NotifyEntry& e = entries[i];
    Slot* slot = ClaimSlot(e.seq);
    if (slot == nullptr) return;
    if ((e.flags & kPutFlagAckWanted) != 0 && e.seq > ack_wanted_) ack_wanted_ = e.seq;
    slot->state = kReceiving;
    slot->imm = e.imm;
    slot->length = e.length;
    char* target = nullptr;
    MemoryKind kind;
    // The data already landed through RMA; a stale key is still reported to
    // the sender (its ticket fails) and not notified here.
    const uint32_t reason =
        ctx_->ValidatePut(e.region_id, e.cookie, e.offset, e.length, &target, &kind);
    FinishSlot(e.seq, reason == 0 ? kDone : kRejected, reason);
  }
}

void Peer::OnAckReq(uint64_t seq) {
  if (seq > ack_wanted_) ack_wanted_ = seq;
  MarkDirty();
}

void Peer::OnAck(const AckHeader& h, const RejectEntry* rejects, size_t count) {
  for (size_t i = 0; i < count; ++i) RejectTicket(rejects[i].seq, rejects[i].reason);
  if (h.delivered_seq >= next_ticket_) {
    ProtocolError(absl::StrCat("acknowledged put ", h.delivered_seq, " but only ", next_ticket_ - 1,
                               " were posted"));
    return;
  }
  if (h.delivered_seq > acked_seq_) acked_seq_ = h.delivered_seq;
  RetireTickets();
}

void Peer::OnMessage(uint64_t seq, absl::string_view payload) {
  if (seq < next_message_in_ || seq - next_message_in_ >= kMaxWindow ||
      message_reorder_.count(seq) != 0) {
    ProtocolError(absl::StrCat("message sequence number ", seq, " is stale or duplicate"));
    return;
  }
  message_reorder_.emplace(seq, std::string(payload));
  while (!message_reorder_.empty() && message_reorder_.begin()->first == next_message_in_) {
    messages_.push_back(std::move(message_reorder_.begin()->second));
    message_reorder_.erase(message_reorder_.begin());
    ++next_message_in_;
  }
}

void Peer::OnKeyQuery(const KeyQueryHeader& h) {
  KeyReplyHeader r = {ctx_->id(), h.query_id, ctx_->KeyVerdictFor(h.region_id, h.cookie, h.size),
                      0};
  QueueControl(kAmKeyReply, &r, sizeof(r), "");
}

void Peer::OnKeyReply(const KeyReplyHeader& h) {
  if (h.query_id == 0 || h.query_id >= next_query_) {
    ProtocolError(absl::StrCat("reply to unknown key query ", h.query_id));
    return;
  }
  key_verdicts_[h.query_id] = h.verdict;
}

size_t Peer::PopNotifications(Notification* out, size_t max) {
  size_t n = 0;
  while (n < max && !notifications_.empty()) {
    out[n++] = notifications_.front();
    notifications_.pop_front();
  }
  return n;
}

bool Peer::PopMessage(std::string* out) {
  if (messages_.empty()) return false;
  *out = std::move(messages_.front());
  messages_.pop_front();
  return true;
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
