// A connection between two shm contexts.
//
// Data path (no syscalls): Put checks ranges, memcpys into the peer's region
// mapped here and publishes {imm, length} on the peer's inbound notification
// ring with a release store, so the receiver that pops it sees the data. A
// full ring parks notifications in a local FIFO, pushed in order by later
// puts, Progress and waits; a put is complete when its memcpy returned, and
// Flush waits until the FIFO is empty. Control messages take a second ring
// in the same channel, with their own FIFO.
//
// Keys: the peer announces each region it allocates, with its memfd, on the
// side channel before AllocateMemory returns, so before any key for it can
// exist; revocations travel the same way when a region is destroyed. Each
// frame is followed by a counter update in shared memory (regions announced,
// revocations sent). UnpackRemoteKey therefore validates a key against the
// peer's live regions here, without a round trip that would need the peer
// to be running transport code at that moment: an id beyond the announced
// counter was never allocated, an id below it is looked up once its frame
// is read. Every put compares the revocation counter with the frames it has
// applied (one cached load), so once the peer's region destructor returned,
// no put lands in that region's pages.
//
// Sleeping receivers: the context's event fd watches every side channel; a
// receiver that armed it gets one kWake frame from the peer's next put or
// message (see ring.h), a dead peer's EOF wakes it too.
//
// Failure: EOF or a reset on the side channel (the kernel closes a dead
// process's sockets), a malformed frame or ring record, fail the endpoint
// with a sticky status naming the peer. The side channel is checked in
// Progress, in every wait once per Backoff slow turn, every 1024 empty polls,
// every 1024 puts or 16 MiB put, and by status().
//
// Threading: one thread at a time, with its context (transport.h).
#ifndef TOKENRAIL_TRANSPORT_SHM_ENDPOINT_H_
#define TOKENRAIL_TRANSPORT_SHM_ENDPOINT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "transport/shm/memory.h"
#include "transport/shm/ring.h"
#include "transport/shm/socket.h"
#include "transport/shm/wire.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {
namespace shm {

class ShmContext;

class ShmEndpoint final : public Endpoint {
 public:
  // `inbound` was created here (we consume it), `outbound` by the peer.
  ShmEndpoint(ShmContext* ctx, AddressInfo peer, SocketChannel sock, Channel inbound,
              Channel outbound);
  ~ShmEndpoint() override;

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
  absl::Status status() const override;

  // For the context. All non-blocking.
  // Reads the side channel, sends queued frames, pushes queued notifications
  // and messages; fails the endpoint on errors.
  void Service();
  void AnnounceRegion(const ShmMemoryRegion& region);
  void AnnounceWatermark(uint64_t next_region_id);
  void RevokeRegion(uint64_t region_id);
  // The context is being destroyed before this endpoint (a caller bug).
  void DetachContext();
  // The event fd protocol (ring.h): whether the inbound rings hold anything,
  // and asking the peer for a wake frame after its next publication.
  bool HasInbound() const { return notify_in_.HasData() || message_in_.HasData(); }
  void Arm() { inbound_.armed().store(1, std::memory_order_relaxed); }
  int socket_fd() const { return sock_.fd(); }
  bool failed() const { return !status_.ok(); }

 private:
  // Polls `ready` until it returns true, the endpoint fails or `deadline`
  // passes; progresses the whole context on Backoff slow turns.
  absl::Status Wait(absl::Time deadline, absl::string_view what, absl::FunctionRef<bool()> ready);
  void Fail(absl::Status status);
  // Maps a side-channel error to the endpoint's failure.
  absl::Status PeerError(const absl::Status& s) const;
  absl::Status HandleFrame(Frame frame);
  void PushNotification(uint32_t imm, uint64_t length);
  // After publishing into the outbound rings: a wake frame if the peer
  // armed its event fd.
  void WakePeer();
  void DrainNotifications();
  void DrainMessages();
  // Applies revocations the peer published in shared memory but whose frames
  // this side has not read yet.
  absl::Status SyncRevocations();
  // Every kIdlePollsPerService empty polls, services the context.
  void IdlePoll();

  static constexpr uint32_t kIdlePollsPerService = 1024;
  static constexpr uint32_t kPutsPerService = 1024;
  static constexpr uint64_t kBytesPerService = 16 << 20;

  const uint64_t serial_;  // process-unique: ties RemoteRegions to this endpoint
  ShmContext* ctx_;
  const AddressInfo peer_;
  const std::string peer_label_;  // "peer 'name' (pid N)"
  SocketChannel sock_;
  Channel inbound_;
  Channel outbound_;
  NotifyProducer notify_out_;
  NotifyConsumer notify_in_;
  MessageProducer message_out_;
  MessageConsumer message_in_;
  std::deque<Notification> queued_notifications_;  // ring was full; in post order
  std::deque<std::string> queued_messages_;
  Ticket last_ticket_ = 0;
  std::map<uint64_t, std::shared_ptr<PeerRegion>> peer_regions_;  // live, by region id
  uint64_t peer_watermark_ = 1;    // region ids below it are announced or dead
  uint64_t revocations_seen_ = 0;  // revoke frames applied (peer's sequence)
  uint64_t revocations_sent_ = 0;
  uint32_t idle_polls_ = 0;
  uint32_t puts_since_service_ = 0;
  uint64_t bytes_since_service_ = 0;
  absl::Status status_;
};

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_SHM_ENDPOINT_H_
