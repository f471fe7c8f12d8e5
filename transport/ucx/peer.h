// Per-peer protocol state of a ucx context: the UCP endpoint to one peer
// context, the put/notification/message sequencing in both directions, and
// the small control protocol (hello, acks, key validation, bye).
//
// A Peer is owned by its UcxContext, which creates it on Connect() or when the
// peer's hello arrives first, and retires it when the user's Endpoint is
// destroyed. UCX callbacks (request completions, active messages, endpoint
// errors) reference the Peer, so the context frees it only after its UCP
// endpoint is closed and no request that points at it is outstanding.
//
// Threading: driven by the thread that drives the context (UCP worker in
// single-thread mode); methods named On* run inside ucp_worker_progress and
// only record state: replies and notification batches go out from Service(),
// which the context calls after each progress round.
//
// Sequencing. Every put gets a ticket (1, 2, ...) that doubles as its
// sequence number at the receiver, which delivers notifications strictly in
// that order: rendezvous receives and RMA notification batches finish out of
// order, so completed puts wait in a reorder window until their predecessors
// are delivered (or rejected). The receiver reports "every seq <= N was
// processed", plus any rejected seqs, in an Ack, sent when the sender asks
// (AckReq) and whenever a put was rejected. A ticket is complete once its
// local operations finished and the peer acknowledged it, so a rejected put
// reliably fails with InvalidArgument while the endpoint stays usable.
#ifndef TOKENRAIL_TRANSPORT_UCX_PEER_H_
#define TOKENRAIL_TRANSPORT_UCX_PEER_H_

#include <ucp/api/ucp.h>

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transport/transport.h"
#include "transport/ucx/wire.h"

namespace tokenrail {
namespace transport {
namespace ucx {

class UcxContext;

// Where a put goes, from an unpacked remote key.
struct PutTarget {
  uint64_t region_id = 0;
  uint64_t cookie = 0;
  uint64_t address = 0;  // base in the peer's address space
  MemoryKind kind = MemoryKind::kHost;
  ucp_rkey_h rkey = nullptr;  // null: active-message path only
};

class Peer {
 public:
  Peer(UcxContext* ctx, uint64_t remote_id, uint64_t serial);
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  ~Peer();

  uint64_t remote_id() const { return remote_id_; }
  // Unique per Peer object in a context; ties RemoteRegions to it.
  uint64_t serial() const { return serial_; }
  // "peer 'node1/rank3'" for messages.
  std::string Describe() const;
  const std::string& name() const { return name_; }

  // ---- Connection -------------------------------------------------------
  // Creates the UCP endpoint to `addr` (error mode PEER), decides the put
  // path and sends our hello. Non-blocking.
  absl::Status Open(const AddressInfo& addr);
  bool hello_received() const { return hello_received_; }
  bool bound() const { return bound_; }
  void set_bound() { bound_ = true; }
  bool use_rma() const { return use_rma_; }
  // RMA through an rkey is used only where UCP can map the remote region
  // (shared memory without a network RMA class: UCX 1.13's shm transports
  // reach only memory they allocated; elsewhere UCP emulates the put).
  bool rma_needs_mapping() const { return rma_needs_mapping_; }
  ucp_ep_h ep() const { return ep_; }

  // Says goodbye if healthy, closes the UCP endpoint (abandoning pending
  // operations) and waits, bounded, for the close. Idempotent.
  void Close();
  // No UCX request refers to this peer any more: it may be freed.
  bool Drained() const { return ep_ == nullptr && inflight_ == 0; }

  // ---- Errors -----------------------------------------------------------
  // OK, or the sticky Unavailable that failed this peer.
  const absl::Status& error() const { return error_; }
  void Fail(const absl::Status& status);
  // Fails the peer for a malformed or impossible message.
  void ProtocolError(absl::string_view what);

  // ---- Send side (caller context) ----------------------------------------
  // Posts a put of `length` bytes at `src` (registered with `src_memh`) to
  // `dst` + `offset`. `rma` picks ucp_put_nbx over active messages.
  absl::StatusOr<Ticket> PostPut(const void* src, size_t length, const PutTarget& dst,
                                 uint64_t offset, uint32_t imm, bool rma);
  // True once `ticket` completed locally and was acknowledged by the peer;
  // InvalidArgument if the peer rejected it, the sticky error if failed.
  // Asks the peer for an acknowledgement when only that is missing.
  absl::StatusOr<bool> TicketComplete(Ticket ticket);
  // True once every put posted so far completed at the peer (asks for it).
  absl::StatusOr<bool> AllDelivered();
  absl::Status SendMessage(absl::string_view message, size_t max_size);
  // Starts a key validation round trip; TakeKeyVerdict polls for the answer.
  absl::StatusOr<uint64_t> SendKeyQuery(const KeyInfo& key);
  bool TakeKeyVerdict(uint64_t query_id, uint32_t* verdict);
  bool KeyValidated(uint64_t region_id, uint64_t cookie) const {
    return validated_keys_.count({region_id, cookie}) != 0;
  }
  void RememberKey(uint64_t region_id, uint64_t cookie) {
    validated_keys_.insert({region_id, cookie});
  }

  // ---- Receive side (inside ucp_worker_progress) -------------------------
  void OnHello(absl::string_view name);
  ucs_status_t OnPut(const PutHeader& h, void* data, size_t length,
                     const ucp_am_recv_param_t* param);
  void OnNotify(const NotifyEntry* entries, size_t count);
  void OnAckReq(uint64_t seq);
  void OnAck(const AckHeader& h, const RejectEntry* rejects, size_t count);
  void OnMessage(uint64_t seq, absl::string_view payload);
  void OnKeyQuery(const KeyQueryHeader& h);
  void OnKeyReply(const KeyReplyHeader& h);
  void OnBye();

  // Completions (UCX callbacks).
  void OnSendDone(int kind, uint64_t ticket, ucs_status_t status);
  void OnRecvDone(uint64_t seq, uint64_t region_id, ucs_status_t status);
  void OnFlushDone(ucs_status_t status);
  void OnEpError(ucs_status_t status);

  // ---- Consumer side -----------------------------------------------------
  size_t PopNotifications(Notification* out, size_t max);
  bool PopMessage(std::string* out);
  // Notifications or messages delivered but not popped yet.
  bool HasDeliveries() const { return !notifications_.empty() || !messages_.empty(); }

  // Deferred work after a progress round: RMA notification batches, acks,
  // key replies. Called by the context.
  void Service();
  bool dirty = false;  // queued for Service() (owned by the context)

 private:
  struct TicketState {
    uint16_t pending = 0;  // local UCX operations not yet completed
  };
  enum SlotState : uint8_t { kEmpty = 0, kReceiving, kDone, kRejected };
  struct Slot {
    SlotState state = kEmpty;
    uint32_t imm = 0;
    uint64_t length = 0;
  };
  struct Control {
    uint16_t id;
    std::string header;
    std::string payload;
  };

  // Sends an eager active message whose header and payload are copied.
  absl::Status SendControlNow(uint16_t id, const void* header, size_t header_len,
                              absl::string_view payload);
  // Queues one for Service() (used from inside callbacks).
  void QueueControl(uint16_t id, const void* header, size_t header_len, absl::string_view payload);
  void MarkDirty();
  void RequestAck(uint64_t seq);
  absl::Status PostAmPut(const void* src, size_t length, const PutTarget& dst, uint64_t offset,
                         uint32_t imm, uint32_t flags, Ticket ticket);
  absl::Status PostRmaPut(const void* src, size_t length, const PutTarget& dst, uint64_t offset,
                          uint32_t imm, uint32_t flags, Ticket ticket);
  void MaybeStartFlush();
  absl::Status SendNotifies(const std::vector<NotifyEntry>& entries);
  // Tracks a UCX request: null means done, an error is returned.
  absl::Status Track(ucs_status_ptr_t request, int kind, Ticket ticket, void* op,
                     absl::string_view what);
  void RetireTickets();
  void RejectTicket(uint64_t seq, uint32_t reason);

  // Receive-side reorder window.
  Slot* ClaimSlot(uint64_t seq);
  void FinishSlot(uint64_t seq, SlotState state, uint32_t reject_reason);
  void Deliver();
  uint64_t delivered_seq() const { return next_deliver_ - 1; }

  UcxContext* const ctx_;
  const uint64_t remote_id_;
  const uint64_t serial_;
  std::string name_;
  ucp_ep_h ep_ = nullptr;
  bool hello_received_ = false;
  bool bound_ = false;
  bool closed_ = false;
  bool use_rma_ = false;
  bool rma_needs_mapping_ = false;
  absl::Status error_;
  // UCX requests (sends, receives, flushes) whose callbacks will reference us.
  size_t inflight_ = 0;

  // Send side.
  Ticket next_ticket_ = 1;
  Ticket ticket_base_ = 1;           // tickets below are complete
  std::deque<TicketState> tickets_;  // [ticket_base_, next_ticket_)
  std::map<Ticket, absl::Status> failed_tickets_;
  uint64_t acked_seq_ = 0;
  uint64_t ack_requested_ = 0;
  std::vector<NotifyEntry> awaiting_flush_;  // RMA puts posted, not yet flushed
  std::vector<NotifyEntry> flushing_;        // covered by the flush in flight
  bool flush_in_flight_ = false;
  bool flush_done_ = false;
  uint64_t next_message_out_ = 1;
  uint64_t next_query_ = 1;
  std::map<uint64_t, uint32_t> key_verdicts_;
  std::set<std::pair<uint64_t, uint64_t>> validated_keys_;

  // Receive side.
  uint64_t next_deliver_ = 1;
  std::deque<Slot> window_;  // seqs [next_deliver_, ...)
  std::deque<Notification> notifications_;
  uint64_t ack_wanted_ = 0;
  uint64_t ack_sent_ = 0;
  std::vector<RejectEntry> pending_rejects_;
  uint64_t next_message_in_ = 1;
  std::map<uint64_t, std::string> message_reorder_;
  std::deque<std::string> messages_;
  std::vector<Control> outbox_;
};

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_UCX_PEER_H_
