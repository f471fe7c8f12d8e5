// VerbsEndpoint data path: building and posting work requests, credits,
// receive replenishment, completion handling. See endpoint.h for the design.
#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/ibverbs_status.h"
#include "common/logging.h"
#include "common/status.h"
#include "transport/verbs/endpoint.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

constexpr char kLog[] = "verbs";
constexpr int kPollBatch = 32;

}  // namespace

uint64_t VerbsEndpoint::Credits() const {
  // The peer's NIC writes its cumulative receive count here (8-byte aligned
  // DMA write; the load below sees the old or the new value, never a mix).
  const uint64_t advertised =
      __atomic_load_n(reinterpret_cast<const uint64_t*>(credit_buf_.data()), __ATOMIC_ACQUIRE);
  const uint64_t posted = std::max(initial_credits_, advertised);
  return posted > consumed_ ? posted - consumed_ : 0;
}

ibv_send_wr* VerbsEndpoint::Append(WrBatch& b, bool signal) {
  ibv_send_wr& wr = b.wr[b.n];
  ibv_sge& sge = b.sge[b.n];
  std::memset(&wr, 0, sizeof(wr));
  std::memset(&sge, 0, sizeof(sge));
  const uint64_t seq = ++sq_posted_;
  wr.wr_id = seq;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  if (signal || seq - last_signaled_ >= signal_interval_) {
    wr.send_flags |= IBV_SEND_SIGNALED;
    last_signaled_ = seq;
  }
  if (b.n > 0) b.wr[b.n - 1].next = &wr;
  ++b.n;
  return &wr;
}

void VerbsEndpoint::FlushBatch(WrBatch& b) {
  if (b.n == 0) return;
  ibv_send_wr* bad = nullptr;
  const int rc = ibv_post_send(qp_.get(), &b.wr[0], &bad);
  b.n = 0;
  // Our accounting keeps the SQ from overflowing, so any failure means the
  // QP is unusable (e.g. moved to ERROR by an async event).
  if (rc != 0) {
    Fail(StatusFromIbv(rc, absl::StrCat("ibv_post_send (WR ", bad ? bad->wr_id : 0, ")")));
  }
}

bool VerbsEndpoint::AppendSend(WrBatch& b, absl::string_view payload) {
  if (free_send_slots_.empty()) return false;
  const uint32_t slot = free_send_slots_.back();
  free_send_slots_.pop_back();
  // Staged in registered memory: the caller's buffer is free on return and
  // the pending queue entry dies before the doorbell.
  char* p = send_slot(slot);
  std::memcpy(p, payload.data(), payload.size());
  ibv_send_wr* wr = Append(b, false);
  wr->opcode = IBV_WR_SEND;
  wr->sg_list->addr = reinterpret_cast<uint64_t>(p);
  wr->sg_list->length = static_cast<uint32_t>(payload.size());
  wr->sg_list->lkey = send_mr_->lkey;
  if (payload.size() <= max_inline_) wr->send_flags |= IBV_SEND_INLINE;
  busy_send_slots_.emplace_back(sq_posted_, slot);
  return true;
}

void VerbsEndpoint::PostPending() {
  if (peer_credit_addr_ == 0) return;  // not connected yet
  WrBatch b;
  while (status_.ok() && !pending_.empty() && !SqFull()) {
    PendingOp& op = pending_.front();
    if (op.is_put) {
      const bool chunked = op.length > max_chunk_;
      if (chunked && op.posted < op.length) {
        // Plain writes consume no receive WQE, hence no credit.
        const uint64_t n = std::min(max_chunk_, op.length - op.posted);
        ibv_send_wr* wr = Append(b, false);
        if (op.first_seq == 0) op.first_seq = sq_posted_;
        wr->opcode = IBV_WR_RDMA_WRITE;
        wr->sg_list->addr = op.src_addr + op.posted;
        wr->sg_list->length = static_cast<uint32_t>(n);
        wr->sg_list->lkey = op.lkey;
        wr->wr.rdma.remote_addr = op.dst_addr + op.posted;
        wr->wr.rdma.rkey = op.rkey;
        op.posted += n;
      } else {
        if (Credits() == 0) break;
        if (chunked) {
          if (!AppendSend(b, EncodePutDone(op.imm, op.length))) break;
        } else {
          ibv_send_wr* wr = Append(b, false);
          wr->opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
          wr->imm_data = htonl(op.imm);
          wr->wr.rdma.remote_addr = op.dst_addr;
          wr->wr.rdma.rkey = op.rkey;
          if (op.length == 0) {
            wr->num_sge = 0;  // a pure notification
          } else {
            wr->sg_list->addr = op.src_addr;
            wr->sg_list->length = static_cast<uint32_t>(op.length);
            wr->sg_list->lkey = op.lkey;
            if (op.host_source && op.length <= max_inline_) wr->send_flags |= IBV_SEND_INLINE;
          }
        }
        if (op.first_seq == 0) op.first_seq = sq_posted_;
        ++consumed_;
        inflight_.push_back(
            {op.ticket, op.first_seq, sq_posted_, op.region_id, op.dst_offset, op.length});
        last_posted_ticket_ = op.ticket;
        pending_.pop_front();
      }
    } else {
      if (Credits() == 0) break;
      if (!AppendSend(b, op.payload)) break;
      ++consumed_;
      pending_.pop_front();
    }
    if (b.n == kBatch) FlushBatch(b);
  }
  FlushBatch(b);
  // Blocked on send slots (or SQ space) behind unsignaled WRs: make sure a
  // completion will come to free them.
  if (!pending_.empty()) RequestSignal();
}

void VerbsEndpoint::RequestSignal() {
  if (!status_.ok() || peer_credit_addr_ == 0 || last_signaled_ >= sq_posted_ || SqFull()) return;
  // A signaled zero-length RDMA WRITE: touches no memory, consumes no receive
  // WQE, and its completion retires every earlier WR (RC is in order).
  WrBatch b;
  ibv_send_wr* wr = Append(b, /*signal=*/true);
  wr->opcode = IBV_WR_RDMA_WRITE;
  wr->num_sge = 0;
  wr->wr.rdma.remote_addr = peer_credit_addr_;
  wr->wr.rdma.rkey = peer_credit_rkey_;
  FlushBatch(b);
}

void VerbsEndpoint::Replenish(bool force) {
  if (!status_.ok() || free_recv_slots_.empty()) return;
  if (!force && free_recv_slots_.size() < replenish_batch_) return;
  std::vector<ibv_recv_wr> wrs(free_recv_slots_.size());
  std::vector<ibv_sge> sges(free_recv_slots_.size());
  for (size_t i = 0; i < wrs.size(); ++i) {
    const uint32_t slot = free_recv_slots_[i];
    sges[i].addr = reinterpret_cast<uint64_t>(recv_slot(slot));
    sges[i].length = static_cast<uint32_t>(kRecvSlotSize);
    sges[i].lkey = recv_mr_->lkey;
    wrs[i] = {};
    wrs[i].wr_id = kRecvBit | slot;
    wrs[i].sg_list = &sges[i];
    wrs[i].num_sge = 1;
    wrs[i].next = i + 1 < wrs.size() ? &wrs[i + 1] : nullptr;
  }
  ibv_recv_wr* bad = nullptr;
  const int rc = ibv_post_recv(qp_.get(), wrs.data(), &bad);
  if (rc != 0) {
    Fail(StatusFromIbv(rc, absl::StrCat("ibv_post_recv of ", wrs.size(), " WQEs")));
    return;
  }
  recv_posted_total_ += wrs.size();
  free_recv_slots_.clear();
}

void VerbsEndpoint::SendCredits() {
  if (!status_.ok() || peer_credit_addr_ == 0 || recv_posted_total_ == recv_advertised_ ||
      SqFull()) {
    return;
  }
  // Only the newest cumulative count matters, so one write covers any number
  // of replenish batches; the source word may be overwritten with a larger
  // value before the NIC reads it, which is still correct.
  auto* word = reinterpret_cast<uint64_t*>(send_buf_.data());
  __atomic_store_n(word, recv_posted_total_, __ATOMIC_RELEASE);
  WrBatch b;
  ibv_send_wr* wr = Append(b, false);
  wr->opcode = IBV_WR_RDMA_WRITE;
  wr->sg_list->addr = reinterpret_cast<uint64_t>(word);
  wr->sg_list->length = sizeof(uint64_t);
  wr->sg_list->lkey = send_mr_->lkey;
  if (max_inline_ >= sizeof(uint64_t)) wr->send_flags |= IBV_SEND_INLINE;
  wr->wr.rdma.remote_addr = peer_credit_addr_;
  wr->wr.rdma.rkey = peer_credit_rkey_;
  FlushBatch(b);
  recv_advertised_ = recv_posted_total_;
}

void VerbsEndpoint::PollCq() {
  ibv_wc wc[kPollBatch];
  while (true) {
    const int n = ibv_poll_cq(cq_.get(), kPollBatch, wc);
    if (n < 0) {
      Fail(absl::InternalError(absl::StrCat("ibv_poll_cq failed (", n, ")")));
      return;
    }
    for (int i = 0; i < n; ++i) HandleWc(wc[i]);
    completions_seen_ += static_cast<uint64_t>(n);
    if (n < kPollBatch) break;
  }
  Retire();
}

void VerbsEndpoint::HandleWc(const ibv_wc& wc) {
  if (wc.wr_id & kRecvBit) {
    const uint32_t slot = static_cast<uint32_t>(wc.wr_id & 0xffffffffu);
    if (wc.status != IBV_WC_SUCCESS) {
      Fail(StatusFromWc(wc.status, absl::StrCat("receive completion (vendor error 0x",
                                                absl::Hex(wc.vendor_err), ")")));
      return;
    }
    if (slot >= recv_slots_) {
      Fail(absl::InternalError(absl::StrCat("receive completion for unknown slot ", slot)));
      return;
    }
    if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
      notifications_.push_back(Notification{ntohl(wc.imm_data), wc.byte_len});
    } else if (wc.opcode == IBV_WC_RECV) {
      HandleInband(absl::string_view(recv_slot(slot), wc.byte_len));
    } else {
      Fail(absl::InternalError(absl::StrCat("unexpected receive opcode ", wc.opcode)));
    }
    free_recv_slots_.push_back(slot);
    return;
  }
  if (wc.status != IBV_WC_SUCCESS) {
    Fail(SendError(wc));
    return;
  }
  sq_completed_ = std::max(sq_completed_, static_cast<uint64_t>(wc.wr_id));
}

absl::Status VerbsEndpoint::SendError(const ibv_wc& wc) const {
  const uint64_t seq = wc.wr_id;
  std::string what = absl::StrCat("work request ", seq);
  auto describe = [&](Ticket t, uint64_t region, uint64_t off, uint64_t len) {
    what = absl::StrCat("put ticket ", t, " to region ", region, " range [", off, ", ", off + len,
                        ")");
  };
  for (const InflightPut& p : inflight_) {
    if (seq >= p.first_seq && seq <= p.last_seq)
      describe(p.ticket, p.region_id, p.dst_offset, p.length);
  }
  if (!pending_.empty() && pending_.front().is_put && pending_.front().first_seq != 0 &&
      seq >= pending_.front().first_seq) {
    const PendingOp& p = pending_.front();
    describe(p.ticket, p.region_id, p.dst_offset, p.length);
  }
  return StatusFromWc(wc.status,
                      absl::StrCat(what, " (vendor error 0x", absl::Hex(wc.vendor_err), ")"));
}

void VerbsEndpoint::Retire() {
  while (!inflight_.empty() && inflight_.front().last_seq <= sq_completed_) {
    completed_ticket_ = inflight_.front().ticket;
    inflight_.pop_front();
  }
  while (!busy_send_slots_.empty() && busy_send_slots_.front().first <= sq_completed_) {
    free_send_slots_.push_back(busy_send_slots_.front().second);
    busy_send_slots_.pop_front();
  }
}

void VerbsEndpoint::HandleInband(absl::string_view data) {
  absl::StatusOr<InbandMessage> m = ParseInband(data);
  if (!m.ok()) {
    Fail(absl::InternalError(absl::StrCat("malformed control message: ", m.status().message())));
    return;
  }
  switch (m->type) {
    case InbandType::kUser:
      messages_.emplace_back(m->payload);
      break;
    case InbandType::kPutDone:
      notifications_.push_back(Notification{m->imm, static_cast<size_t>(m->length)});
      break;
    case InbandType::kKeyQuery: {
      const absl::Status valid = env_.regions->Validate(m->key);
      EnqueueSend(EncodeKeyReply(m->request_id, valid.ok(), valid.message()));
      break;
    }
    case InbandType::kKeyReply:
      key_replies_[m->request_id] = {m->ok, m->reason};
      break;
  }
}

void VerbsEndpoint::EnqueueSend(std::string payload) {
  PendingOp op;
  op.is_put = false;
  op.payload = std::move(payload);
  pending_.push_back(std::move(op));
}

void VerbsEndpoint::CheckWireup(bool now) {
  if (!wireup_.has_value()) return;
  const absl::Time t = absl::Now();
  if (!now && t < next_wireup_check_) return;
  next_wireup_check_ = t + absl::Milliseconds(10);
  const absl::Status alive = wireup_->CheckAlive();
  if (alive.ok()) return;
  PollCq();  // keep what arrived before the peer went away
  TR_VLOG(1, kLog) << "wireup connection to '" << peer_.name << "' lost: " << alive.message();
  Fail(absl::UnavailableError(alive.message()));
}

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
