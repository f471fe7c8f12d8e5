// Peer: connection, send side (puts, acks, messages, key queries) and
// completions. The receive side is in peer_recv.cc.
#include "transport/ucx/peer.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/ucs_status.h"
#include "transport/ucx/context.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

constexpr char kLog[] = "ucx";

// Without waits, an acknowledgement is requested every this many puts, so
// that per-ticket state stays bounded.
constexpr Ticket kAutoAckInterval = 1024;
// Most rejections per Ack (4 KiB: one fragment on every transport).
constexpr size_t kMaxRejectsPerAck = 256;
// Most entries per notification batch message (40 KiB of payload).
constexpr size_t kMaxNotifyBatch = 1024;
// Bounds on waits inside Close(): the goodbye flush and the endpoint close.
constexpr absl::Duration kByeFlushTimeout = absl::Milliseconds(200);
constexpr absl::Duration kCloseTimeout = absl::Seconds(2);

enum OpKind : int { kOpPut = 1, kOpControl = 2, kOpFlush = 3, kOpCloseFlush = 4 };

// State of one UCX send-side request; freed by its callback or, when the
// request completes immediately, right away.
struct SendOp {
  Peer* peer;
  int kind;
  Ticket ticket;
  alignas(8) char header[64];
  std::string payload;
};

void SendCallback(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<SendOp*>(user_data);
  op->peer->OnSendDone(op->kind, op->ticket, status);
  delete op;
  ucp_request_free(request);
}

void EpErrorCallback(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  static_cast<Peer*>(arg)->OnEpError(status);
}

ucp_request_param_t SendParam(SendOp* op, uint32_t am_flags) {
  ucp_request_param_t p = {};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  if (am_flags != 0) {
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = am_flags;
  }
  p.cb.send = &SendCallback;
  p.user_data = op;
  return p;
}

// Waits (bounded) for a request that is not tracked through a callback.
void WaitRequest(UcxContext* ctx, ucs_status_ptr_t request, absl::Duration timeout) {
  if (request == nullptr || UCS_PTR_IS_ERR(request)) return;
  (void)ctx->WaitFor(
      [&]() -> absl::StatusOr<bool> { return ucp_request_check_status(request) != UCS_INPROGRESS; },
      absl::Now() + timeout, [] { return std::string("ucx: closing endpoint"); });
  if (ucp_request_check_status(request) == UCS_INPROGRESS) {
    // Abandoned; UCX completes and frees it when the worker is destroyed.
    TR_LOG(WARNING, kLog) << "endpoint close did not finish within " << timeout;
    return;
  }
  ucp_request_free(request);
}

}  // namespace

Peer::Peer(UcxContext* ctx, uint64_t remote_id, uint64_t serial)
    : ctx_(ctx), remote_id_(remote_id), serial_(serial) {}

Peer::~Peer() = default;

std::string Peer::Describe() const {
  if (name_.empty()) return absl::StrCat("peer context 0x", absl::Hex(remote_id_));
  return absl::StrCat("peer '", name_, "'");
}

absl::Status Peer::Open(const AddressInfo& addr) {
  name_ = addr.name;
  const uint8_t common = ctx_->rma_classes() & addr.rma_classes;
  const bool same_host = addr.host_id == ctx_->host_id();
  const bool shm = same_host && (common & kRmaShm) != 0;
  const bool net = (common & kRmaNet) != 0;
  switch (ctx_->options().put_mode) {
    case PutMode::kAm:
      use_rma_ = false;
      break;
    case PutMode::kRma:
      use_rma_ = true;
      rma_needs_mapping_ = false;
      break;
    case PutMode::kAuto:
      use_rma_ = shm || net;
      rma_needs_mapping_ = !net;
      break;
  }
  TR_VLOG(1, kLog) << "connecting to " << Describe() << ": same host " << same_host
                   << ", common RMA classes " << static_cast<int>(common) << ", put path "
                   << (use_rma_ ? "RMA" : "active messages");

  ucp_ep_params_t params = {};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(addr.worker_address.data());
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = &EpErrorCallback;
  params.err_handler.arg = this;
  ucp_ep_h ep = nullptr;
  ucs_status_t s = ucp_ep_create(ctx_->worker(), &params, &ep);
  if (s != UCS_OK) {
    absl::Status status = StatusFromUcs(s, absl::StrCat("ucx: creating endpoint to ", Describe()));
    // Whatever UCX says, not reaching a peer is "unavailable" to the caller.
    return absl::UnavailableError(status.message());
  }
  ep_ = ep;
  HelloHeader h = {ctx_->id(), kWireVersion, 0};
  TR_RETURN_IF_ERROR(SendControlNow(kAmHello, &h, sizeof(h), ctx_->options().name));
  MarkDirty();  // anything queued before the endpoint existed
  return absl::OkStatus();
}

void Peer::Close() {
  if (closed_) return;
  closed_ = true;
  outbox_.clear();
  if (ep_ == nullptr) return;
  if (error_.ok() && hello_received_) {
    // Tell the peer so that its endpoint fails with a clear message instead
    // of waiting for a transport error; flush so the goodbye leaves first.
    ByeHeader bye = {ctx_->id()};
    if (SendControlNow(kAmBye, &bye, sizeof(bye), "").ok()) {
      auto* op = new SendOp{this, kOpCloseFlush, 0, {}, {}};
      ucp_request_param_t p = SendParam(op, 0);
      ucs_status_ptr_t req = ucp_ep_flush_nbx(ep_, &p);
      if (Track(req, kOpCloseFlush, 0, op, "flushing goodbye").ok() && req != nullptr) {
        const size_t before = inflight_;
        (void)ctx_->WaitFor([&]() -> absl::StatusOr<bool> { return inflight_ < before; },
                            absl::Now() + kByeFlushTimeout,
                            [] { return std::string("ucx: flushing goodbye"); });
      }
    }
  }
  // Pending operations are abandoned (transport.h): force-close cancels them.
  ucp_request_param_t p = {};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_EP_CLOSE_FLAG_FORCE;
  ucs_status_ptr_t req = ucp_ep_close_nbx(ep_, &p);
  ep_ = nullptr;
  WaitRequest(ctx_, req, kCloseTimeout);
}

void Peer::Fail(const absl::Status& status) {
  if (!error_.ok() || status.ok()) return;
  error_ = status;
  if (!closed_) TR_LOG(WARNING, kLog) << status.message();
}

void Peer::OnEpError(ucs_status_t status) {
  if (closed_) return;
  Fail(absl::UnavailableError(absl::StrCat("ucx: ", Describe(),
                                           " failed: ", ucs_status_string(status), " (ucs ",
                                           static_cast<int>(status), ")")));
}

void Peer::MarkDirty() { ctx_->MarkDirty(this); }

absl::Status Peer::Track(ucs_status_ptr_t request, int kind, Ticket ticket, void* op_ptr,
                         absl::string_view what) {
  auto* op = static_cast<SendOp*>(op_ptr);
  if (request == nullptr) {  // completed in place; no callback follows
    delete op;
    if (kind == kOpPut && ticket >= ticket_base_) --tickets_[ticket - ticket_base_].pending;
    return absl::OkStatus();
  }
  if (UCS_PTR_IS_ERR(request)) {
    delete op;
    if (kind == kOpPut && ticket >= ticket_base_) --tickets_[ticket - ticket_base_].pending;
    absl::Status s =
        StatusFromUcs(UCS_PTR_STATUS(request), absl::StrCat("ucx: ", what, " to ", Describe()));
    absl::Status failure = absl::UnavailableError(s.message());
    Fail(failure);
    return failure;
  }
  ++inflight_;
  return absl::OkStatus();
}

void Peer::OnSendDone(int kind, uint64_t ticket, ucs_status_t status) {
  --inflight_;
  if (kind == kOpPut && ticket >= ticket_base_ && ticket < next_ticket_) {
    --tickets_[ticket - ticket_base_].pending;
  }
  if (kind == kOpFlush) {
    OnFlushDone(status);
    return;
  }
  if (status == UCS_OK) {
    if (kind == kOpPut) RetireTickets();
    return;
  }
  if (kind == kOpPut && status == UCS_ERR_REJECTED) {
    // The receiver refused a rendezvous put (bad key or range); the Ack that
    // follows says why. The endpoint stays usable.
    RejectTicket(ticket, 0);
    return;
  }
  if (closed_ && status == UCS_ERR_CANCELED) return;
  Fail(absl::UnavailableError(
      absl::StrCat("ucx: operation to ", Describe(), " failed: ", ucs_status_string(status))));
}

void Peer::OnFlushDone(ucs_status_t status) {
  if (status == UCS_OK) {
    flush_done_ = true;
    MarkDirty();
    return;
  }
  if (closed_ && status == UCS_ERR_CANCELED) return;
  Fail(absl::UnavailableError(
      absl::StrCat("ucx: flush to ", Describe(), " failed: ", ucs_status_string(status))));
}

void Peer::RejectTicket(uint64_t seq, uint32_t reason) {
  if (seq == 0 || seq >= next_ticket_) {
    ProtocolError(absl::StrCat("rejection of unknown put ", seq));
    return;
  }
  auto it = failed_tickets_.find(seq);
  if (it != failed_tickets_.end() && reason == 0) return;
  failed_tickets_[seq] = absl::InvalidArgumentError(
      absl::StrCat("ucx: put ticket ", seq, " rejected by ", Describe(),
                   reason != 0 ? absl::StrCat(": ", RejectReasonName(reason)) : std::string(),
                   " (nothing was written)"));
}

void Peer::RetireTickets() {
  while (!tickets_.empty() && tickets_.front().pending == 0 && ticket_base_ <= acked_seq_) {
    tickets_.pop_front();
    ++ticket_base_;
  }
}

absl::Status Peer::SendControlNow(uint16_t id, const void* header, size_t header_len,
                                  absl::string_view payload) {
  TR_RETURN_IF_ERROR(error_);
  if (ep_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("ucx: no endpoint to ", Describe(), " yet"));
  }
  auto* op = new SendOp{this, kOpControl, 0, {}, std::string(payload)};
  TR_CHECK(header_len <= sizeof(op->header));
  std::memcpy(op->header, header, header_len);
  ucp_request_param_t p = SendParam(op, UCP_AM_SEND_FLAG_EAGER);
  ucs_status_ptr_t req =
      ucp_am_send_nbx(ep_, id, op->header, header_len, op->payload.data(), op->payload.size(), &p);
  return Track(req, kOpControl, 0, op, "sending control message");
}

void Peer::QueueControl(uint16_t id, const void* header, size_t header_len,
                        absl::string_view payload) {
  outbox_.push_back(
      {id, std::string(static_cast<const char*>(header), header_len), std::string(payload)});
  MarkDirty();
}

absl::StatusOr<Ticket> Peer::PostPut(const void* src, size_t length, const PutTarget& dst,
                                     uint64_t offset, uint32_t imm, bool rma) {
  TR_RETURN_IF_ERROR(error_);
  const Ticket ticket = next_ticket_++;
  tickets_.push_back(TicketState{});
  // Once the caller waits for tickets, every put asks for coalesced
  // acknowledgements, so that a window of puts never drains while an
  // explicit request makes its round trip.
  uint32_t flags = 0;
  if (ack_requested_ > 0) {
    flags |= kPutFlagAckWanted;
    ack_requested_ = ticket;
  }
  if (rma) {
    TR_RETURN_IF_ERROR(PostRmaPut(src, length, dst, offset, imm, flags, ticket));
  } else {
    TR_RETURN_IF_ERROR(PostAmPut(src, length, dst, offset, imm, flags, ticket));
  }
  // Callers that never wait still get their ticket records retired.
  if (ticket % kAutoAckInterval == 0) RequestAck(ticket);
  return ticket;
}

absl::Status Peer::PostAmPut(const void* src, size_t length, const PutTarget& dst, uint64_t offset,
                             uint32_t imm, uint32_t flags, Ticket ticket) {
  auto* op = new SendOp{this, kOpPut, ticket, {}, {}};
  PutHeader h = {ctx_->id(), ticket, dst.region_id, dst.cookie, offset, length, imm, flags};
  std::memcpy(op->header, &h, sizeof(h));
  // Rendezvous lets the receiver pull the data straight into the region;
  // device memory always goes that way (UCP copies across memory types).
  const bool rndv =
      length > 0 && (length >= ctx_->options().rndv_thresh || dst.kind == MemoryKind::kCuda);
  ucp_request_param_t p = SendParam(op, rndv ? UCP_AM_SEND_FLAG_RNDV : UCP_AM_SEND_FLAG_EAGER);
  ++tickets_.back().pending;
  ucs_status_ptr_t req = ucp_am_send_nbx(ep_, kAmPut, op->header, sizeof(h), src, length, &p);
  return Track(req, kOpPut, ticket, op, "posting put");
}

absl::Status Peer::PostRmaPut(const void* src, size_t length, const PutTarget& dst, uint64_t offset,
                              uint32_t imm, uint32_t flags, Ticket ticket) {
  if (length > 0) {
    auto* op = new SendOp{this, kOpPut, ticket, {}, {}};
    ucp_request_param_t p = SendParam(op, 0);
    ++tickets_.back().pending;
    ucs_status_ptr_t req = ucp_put_nbx(ep_, src, length, dst.address + offset, dst.rkey, &p);
    TR_RETURN_IF_ERROR(Track(req, kOpPut, ticket, op, "posting RMA put"));
  }
  NotifyEntry e = {ticket, dst.region_id, dst.cookie, offset, length, imm, flags};
  if (ctx_->options().rma_notify == RmaNotify::kFence) {
    TR_RETURN_IF_ERROR(StatusFromUcs(ucp_worker_fence(ctx_->worker()), "ucx: ucp_worker_fence"));
    return SendNotifies({e});
  }
  // The notification waits for a flush that covers the data; one flush is in
  // flight at a time and covers every put posted before it started.
  awaiting_flush_.push_back(e);
  MaybeStartFlush();
  return error_;
}

void Peer::MaybeStartFlush() {
  if (flush_in_flight_ || awaiting_flush_.empty() || ep_ == nullptr || !error_.ok()) return;
  flushing_.swap(awaiting_flush_);
  auto* op = new SendOp{this, kOpFlush, 0, {}, {}};
  ucp_request_param_t p = SendParam(op, 0);
  ucs_status_ptr_t req = ucp_ep_flush_nbx(ep_, &p);
  if (!Track(req, kOpFlush, 0, op, "flushing RMA puts").ok()) return;
  if (req == nullptr) {  // already flushed (e.g. shared memory)
    std::vector<NotifyEntry> batch;
    batch.swap(flushing_);
    (void)SendNotifies(batch);
    return;
  }
  flush_in_flight_ = true;
}

absl::Status Peer::SendNotifies(const std::vector<NotifyEntry>& entries) {
  for (size_t i = 0; i < entries.size(); i += kMaxNotifyBatch) {
    const size_t n = std::min(kMaxNotifyBatch, entries.size() - i);
    NotifyHeader h = {ctx_->id(), static_cast<uint32_t>(n), 0};
    TR_RETURN_IF_ERROR(SendControlNow(
        kAmNotify, &h, sizeof(h),
        absl::string_view(reinterpret_cast<const char*>(&entries[i]), n * sizeof(NotifyEntry))));
  }
  return absl::OkStatus();
}

void Peer::RequestAck(uint64_t seq) {
  if (seq <= ack_requested_ || seq <= acked_seq_) return;
  ack_requested_ = seq;
  AckReqHeader h = {ctx_->id(), seq};
  (void)SendControlNow(kAmAckReq, &h, sizeof(h), "");
}

absl::StatusOr<bool> Peer::TicketComplete(Ticket ticket) {
  if (ticket == 0 || ticket >= next_ticket_) {
    return absl::InvalidArgumentError(absl::StrCat("ucx: unknown ticket ", ticket, " on ",
                                                   Describe(),
                                                   " (posted so far: ", next_ticket_ - 1, ")"));
  }
  TR_RETURN_IF_ERROR(error_);
  auto failed = failed_tickets_.find(ticket);
  if (failed != failed_tickets_.end()) return failed->second;
  if (ticket < ticket_base_) return true;
  if (tickets_[ticket - ticket_base_].pending > 0) return false;
  if (acked_seq_ < ticket) {
    // Ask for everything posted so far: the peer acknowledges progressively.
    RequestAck(next_ticket_ - 1);
    return false;
  }
  return true;
}

absl::StatusOr<bool> Peer::AllDelivered() {
  TR_RETURN_IF_ERROR(error_);
  const Ticket last = next_ticket_ - 1;
  if (last == 0) return true;
  RetireTickets();
  if (ticket_base_ > last) return true;
  if (acked_seq_ < last) RequestAck(last);
  return false;
}

absl::Status Peer::SendMessage(absl::string_view message, size_t max_size) {
  TR_RETURN_IF_ERROR(error_);
  if (message.size() > max_size) {
    return absl::InvalidArgumentError(absl::StrCat("ucx: message of ", message.size(),
                                                   " bytes exceeds max_message_size ", max_size));
  }
  MessageHeader h = {ctx_->id(), next_message_out_++};
  return SendControlNow(kAmMessage, &h, sizeof(h), message);
}

absl::StatusOr<uint64_t> Peer::SendKeyQuery(const KeyInfo& key) {
  const uint64_t id = next_query_++;
  KeyQueryHeader h = {ctx_->id(), id, key.region_id, key.cookie, key.size};
  TR_RETURN_IF_ERROR(SendControlNow(kAmKeyQuery, &h, sizeof(h), ""));
  return id;
}

bool Peer::TakeKeyVerdict(uint64_t query_id, uint32_t* verdict) {
  auto it = key_verdicts_.find(query_id);
  if (it == key_verdicts_.end()) return false;
  *verdict = it->second;
  key_verdicts_.erase(it);
  return true;
}

void Peer::Service() {
  if (ep_ == nullptr || closed_) return;  // outbox waits for Open()
  if (!error_.ok()) {
    outbox_.clear();
    return;
  }
  if (flush_done_) {
    flush_done_ = false;
    flush_in_flight_ = false;
    std::vector<NotifyEntry> batch;
    batch.swap(flushing_);
    (void)SendNotifies(batch);
  }
  MaybeStartFlush();
  std::vector<Control> outbox;
  outbox.swap(outbox_);
  for (const Control& c : outbox) {
    if (!SendControlNow(c.id, c.header.data(), c.header.size(), c.payload).ok()) return;
  }
  // Acknowledge progressively while the sender waits for a seq we have not
  // reported yet, and at once when something was rejected.
  if (!pending_rejects_.empty() || (ack_wanted_ > ack_sent_ && delivered_seq() > ack_sent_)) {
    // An Ack must fit one fragment: multi-fragment active messages may be
    // delivered out of order, and a later Ack must not overtake the
    // rejections of puts it covers. The rest go in the next Ack, which
    // until then reports progress only below the first unsent rejection.
    const size_t n = std::min(pending_rejects_.size(), kMaxRejectsPerAck);
    uint64_t delivered = delivered_seq();
    if (n < pending_rejects_.size()) {
      delivered = std::min(delivered, pending_rejects_[n].seq - 1);
      MarkDirty();
    }
    AckHeader h = {ctx_->id(), delivered, static_cast<uint32_t>(n), 0};
    std::string rejects(reinterpret_cast<const char*>(pending_rejects_.data()),
                        n * sizeof(RejectEntry));
    pending_rejects_.erase(pending_rejects_.begin(), pending_rejects_.begin() + n);
    ack_sent_ = std::max(ack_sent_, delivered);
    (void)SendControlNow(kAmAck, &h, sizeof(h), rejects);
  }
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
