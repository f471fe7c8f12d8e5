// The verbs Endpoint: one RC QP to one peer context.
//
// Data path
//   Put = IBV_WR_RDMA_WRITE_WITH_IMM (imm = the user's 32 bits, in network
//   order on the wire). RC executes a QP's work requests in order, so the
//   peer's notifications come in post order and each one only after its data
//   is placed. A put larger than the port's max message size is split into
//   plain RDMA WRITEs followed by a small SEND carrying {imm, total length}
//   (the write-with-imm completion could only report the last chunk's length).
//   Control messages (and the internal key-validation messages) are SENDs
//   into pre-posted receive slots of kRecvSlotSize bytes.
// Flow control
//   Every write-with-imm and SEND consumes one receive WQE at the peer, so the
//   sender holds credits = WQEs the peer posted for it. The receiver reposts
//   WQEs in batches and RDMA-writes its cumulative "posted" counter into a
//   word the sender registered (an 8-byte write consumes no receive WQE, so
//   credit returns never need credits themselves: no reserved credits, no
//   deadlock). The sender never overruns the receive queue, so RNR NAKs do
//   not happen. Operations without credit, send slot or SQ space wait, in
//   order, in a software queue: any number of puts may be outstanding.
// Completions
//   Selective signaling: every signal_interval-th WR is signaled; wr_id is the
//   WR's sequence number and RC completes in order, so a signaled completion
//   retires every earlier WR. Waits that need an unsignaled WR retired post a
//   signaled zero-length RDMA WRITE. Put tickets complete when their last WR
//   is retired.
// Failure
//   A failed work completion, an async QP error, or EOF on the TCP wireup
//   connection (the peer process exited) fails the endpoint: the error names
//   the peer and is returned by every later call. Notifications and messages
//   that arrived before the failure are still delivered first.
//
// Thread safety: one thread at a time (see transport.h). Calls do not block
// except the Wait*/Flush/UnpackRemoteKey calls, which take deadlines.
#ifndef TOKENRAIL_TRANSPORT_VERBS_ENDPOINT_H_
#define TOKENRAIL_TRANSPORT_VERBS_ENDPOINT_H_

#include <infiniband/verbs.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "transport/transport.h"
#include "transport/verbs/device.h"
#include "transport/verbs/memory.h"
#include "transport/verbs/options.h"
#include "transport/verbs/qp.h"
#include "transport/verbs/wire.h"
#include "transport/verbs/wireup.h"

namespace tokenrail {
namespace transport {
namespace verbs {

class VerbsEndpoint;

// The context's list of live endpoints (for Progress and async events).
class EndpointSet {
 public:
  void Add(VerbsEndpoint* e) { list_.push_back(e); }
  void Remove(VerbsEndpoint* e) {
    list_.erase(std::remove(list_.begin(), list_.end(), e), list_.end());
  }
  const std::vector<VerbsEndpoint*>& list() const { return list_; }

 private:
  std::vector<VerbsEndpoint*> list_;
};

// What an endpoint borrows from its context (which outlives it).
struct EndpointEnv {
  Device* device = nullptr;
  const VerbsOptions* options = nullptr;
  RegionTable* regions = nullptr;
  EndpointSet* endpoints = nullptr;
  uint64_t context_id = 0;
  absl::Duration rpc_timeout = absl::Seconds(30);  // key validation round trip
  // Acks pending async events; ibv_destroy_qp/cq block until the events of
  // their object are acked, so the endpoint calls this before destruction.
  std::function<void()> drain_async_events;
};

class VerbsEndpoint : public Endpoint {
 public:
  // Creates the CQ and the QP (moved to INIT) and posts the receive WQEs.
  static absl::StatusOr<std::unique_ptr<VerbsEndpoint>> Create(const EndpointEnv& env,
                                                               const AddressInfo& peer);
  ~VerbsEndpoint() override;

  // Wireup steps, driven by VerbsContext::Connect.
  QpInfo LocalQpInfo() const;
  absl::Status Establish(const QpInfo& remote);  // INIT -> RTR -> RTS
  void AttachWireup(WireupConn conn);            // then joins the context's set

  uint32_t qp_num() const { return qp_->qp_num; }
  const ibv_cq* cq() const { return cq_.get(); }
  // Fails the endpoint (first error wins); used for async device events.
  void Fail(const absl::Status& status);
  // Advances completions, receives, queued posts and credit returns.
  absl::Status Progress();
  // Context::ArmEventFd support: requests a completion event for the next
  // CQ entry; counts work completions seen; delivered but unpolled data;
  // the liveness socket (its EOF means the peer died), -1 before wireup.
  absl::Status RequestCqEvent();
  uint64_t completions_seen() const { return completions_seen_; }
  bool HasDeliveries() const { return !notifications_.empty() || !messages_.empty(); }
  int wireup_fd() const { return wireup_.has_value() ? wireup_->fd() : -1; }

  // Endpoint interface.
  const std::string& peer_name() const override { return peer_.name; }
  absl::StatusOr<std::unique_ptr<RemoteRegion>> UnpackRemoteKey(absl::string_view key) override;
  absl::StatusOr<Ticket> Put(const MemoryRegion& src, size_t src_offset, const RemoteRegion& dst,
                             size_t dst_offset, size_t length, uint32_t imm) override;
  absl::StatusOr<bool> IsComplete(Ticket ticket) override;
  absl::Status WaitComplete(Ticket ticket, absl::Time deadline) override;
  absl::Status Flush(absl::Time deadline) override;
  absl::StatusOr<size_t> PollNotifications(Notification* out, size_t max) override;
  absl::StatusOr<Notification> WaitNotification(absl::Time deadline) override;
  absl::Status SendMessage(absl::string_view message) override;
  absl::StatusOr<bool> PollMessage(std::string* out) override;
  absl::StatusOr<std::string> WaitMessage(absl::Time deadline) override;
  absl::Status status() const override { return status_; }

 private:
  static constexpr uint64_t kRecvBit = uint64_t{1} << 63;
  static constexpr int kBatch = 16;

  // A put or a send waiting for credit, send slot or SQ space.
  struct PendingOp {
    bool is_put = true;
    // Put.
    Ticket ticket = 0;
    uint64_t src_addr = 0;
    uint32_t lkey = 0;
    uint64_t dst_addr = 0;
    uint32_t rkey = 0;
    uint64_t length = 0;
    uint64_t posted = 0;     // bytes already posted as plain-write chunks
    uint64_t first_seq = 0;  // WR sequence of the first chunk, 0 until posted
    uint32_t imm = 0;
    bool host_source = true;  // inline posting copies with the CPU: never GPU memory
    uint64_t region_id = 0;
    uint64_t dst_offset = 0;
    // Send: the encoded in-band message.
    std::string payload;
  };
  // A posted put, until its last WR is retired.
  struct InflightPut {
    Ticket ticket;
    uint64_t first_seq;
    uint64_t last_seq;
    uint64_t region_id;
    uint64_t dst_offset;
    uint64_t length;
  };
  // Work requests built in order and posted with one doorbell.
  struct WrBatch {
    ibv_send_wr wr[kBatch];
    ibv_sge sge[kBatch];
    int n = 0;
  };

  VerbsEndpoint(const EndpointEnv& env, const AddressInfo& peer) : env_(env), peer_(peer) {}

  // Posting (endpoint_post.cc).
  bool SqFull() const { return sq_posted_ - sq_completed_ >= max_send_wr_; }
  uint64_t Credits() const;
  ibv_send_wr* Append(WrBatch& b, bool signal);
  void FlushBatch(WrBatch& b);
  bool AppendSend(WrBatch& b, absl::string_view payload);
  void PostPending();
  void RequestSignal();
  void Replenish(bool force);
  void SendCredits();
  void PollCq();
  void HandleWc(const ibv_wc& wc);
  void HandleInband(absl::string_view data);
  void Retire();
  absl::Status SendError(const ibv_wc& wc) const;
  void CheckWireup(bool now);
  void EnqueueSend(std::string payload);
  char* recv_slot(uint32_t i) const { return recv_buf_.data() + size_t{i} * kRecvSlotSize; }
  char* send_slot(uint32_t i) const {
    return send_buf_.data() + kSendHeader + size_t{i} * kRecvSlotSize;
  }
  std::string Describe() const;  // queue state for timeout messages

  static constexpr size_t kSendHeader = 64;  // credit source word, then send slots

  EndpointEnv env_;
  AddressInfo peer_;
  absl::Status status_;

  // Resources, declared so that destruction runs wireup, QP, CQ, MRs, memory.
  MappedBuffer recv_buf_;
  MappedBuffer send_buf_;
  MappedBuffer credit_buf_;  // the word the peer writes its receive counter to
  IbvPtr<ibv_mr> recv_mr_;
  IbvPtr<ibv_mr> send_mr_;
  IbvPtr<ibv_mr> credit_mr_;
  IbvPtr<ibv_cq> cq_;
  IbvPtr<ibv_qp> qp_;
  std::optional<WireupConn> wireup_;
  bool in_set_ = false;
  uint64_t completions_seen_ = 0;

  // Limits granted by the device.
  uint64_t max_send_wr_ = 0;
  uint32_t recv_slots_ = 0;
  uint32_t max_inline_ = 0;
  uint64_t max_chunk_ = 0;
  uint64_t signal_interval_ = 1;
  uint32_t local_psn_ = 0;

  // Send queue: WR sequence numbers start at 1.
  uint64_t sq_posted_ = 0;
  uint64_t sq_completed_ = 0;
  uint64_t last_signaled_ = 0;
  std::deque<PendingOp> pending_;
  std::deque<InflightPut> inflight_;
  Ticket next_ticket_ = 1;
  Ticket completed_ticket_ = 0;
  Ticket last_posted_ticket_ = 0;
  std::vector<uint32_t> free_send_slots_;
  std::deque<std::pair<uint64_t, uint32_t>> busy_send_slots_;  // (seq, slot)

  // Credits toward the peer.
  uint64_t initial_credits_ = 0;
  uint64_t consumed_ = 0;
  uint64_t peer_credit_addr_ = 0;
  uint32_t peer_credit_rkey_ = 0;

  // Our receive queue.
  uint64_t recv_posted_total_ = 0;
  uint64_t recv_advertised_ = 0;
  uint32_t replenish_batch_ = 1;
  std::vector<uint32_t> free_recv_slots_;

  // Delivered to the user.
  std::deque<Notification> notifications_;
  std::deque<std::string> messages_;

  // Remote key validation.
  uint64_t next_request_ = 1;
  std::map<uint64_t, std::pair<bool, std::string>> key_replies_;
  std::map<uint64_t, RemoteKeyInfo> validated_;  // by region id

  absl::Time next_wireup_check_ = absl::InfinitePast();
};

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_VERBS_ENDPOINT_H_
