// The ucx backend's Endpoint: the user-facing handle on a Peer (peer.h).
// Semantics are transport.h's; blocking calls drive the context's progress
// until their deadline. UnpackRemoteKey blocks for one round trip to the peer
// the first time it sees a key (bounded by TransportOptions::connect_timeout).
// A ticket completes once its data left the source and the peer accepted (or
// rejected) the put. Destroying the endpoint says goodbye to the peer when
// healthy and force-closes the UCP endpoint, abandoning pending operations.
#ifndef TOKENRAIL_TRANSPORT_UCX_ENDPOINT_H_
#define TOKENRAIL_TRANSPORT_UCX_ENDPOINT_H_

#include <memory>
#include <string>

#include "transport/transport.h"
#include "transport/ucx/peer.h"

namespace tokenrail {
namespace transport {
namespace ucx {

class UcxContext;

class UcxEndpoint final : public Endpoint {
 public:
  UcxEndpoint(UcxContext* ctx, Peer* peer) : ctx_(ctx), peer_(peer) {}
  UcxEndpoint(const UcxEndpoint&) = delete;
  UcxEndpoint& operator=(const UcxEndpoint&) = delete;
  ~UcxEndpoint() override;

  const std::string& peer_name() const override { return peer_->name(); }
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
  absl::Status status() const override { return peer_->error(); }

  // The put path chosen for this peer (diagnostics and tests): true when
  // puts into regions UCP can reach use RMA.
  bool uses_rma() const { return peer_->use_rma(); }

 private:
  UcxContext* const ctx_;
  Peer* const peer_;  // owned by ctx_, retired in the destructor
};

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_UCX_ENDPOINT_H_
