// Registered memory and remote regions of the ucx backend.
//
// A UcxMemoryRegion is ucp_mem_map'ed (registered, or allocated by UCP for
// AllocateMemory so that shared-memory transports can map it into peers) and
// listed in its context's region table under a region id and a random
// cookie; both travel in the remote key and are re-checked by the receiver.
// A UcxRemoteRegion is a peer's region unpacked on one endpoint; it carries
// the unpacked UCP rkey when the endpoint puts through RMA.
//
// Both must be destroyed before their context (transport.h); if they are
// not, the context releases their UCX handles when it goes and they become
// inert.
#ifndef TOKENRAIL_TRANSPORT_UCX_MEMORY_H_
#define TOKENRAIL_TRANSPORT_UCX_MEMORY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "transport/transport.h"
#include "transport/ucx/handles.h"
#include "transport/ucx/peer.h"
#include "transport/ucx/wire.h"

namespace tokenrail {
namespace transport {
namespace ucx {

class UcxContext;

class UcxMemoryRegion final : public MemoryRegion {
 public:
  UcxMemoryRegion(UcxContext* ctx, void* data, size_t size, MemoryKind kind, uint64_t id,
                  uint64_t cookie, UcpMem mem);
  // Stops the context from accepting puts into the region, waits (bounded)
  // for rendezvous receives into it, then unmaps it.
  ~UcxMemoryRegion() override;

  absl::StatusOr<std::string> PackRemoteKey() const override;

  const UcxContext* context() const { return ctx_; }
  uint64_t id() const { return id_; }

  // Context teardown: unmap now and detach from the context.
  void Orphan();

 private:
  UcxContext* ctx_;
  const uint64_t id_;
  const uint64_t cookie_;
  UcpMem mem_;
};

class UcxRemoteRegion final : public RemoteRegion {
 public:
  UcxRemoteRegion(UcxContext* ctx, uint64_t peer_serial, const KeyInfo& key, UcpRkeyPtr rkey,
                  bool rma);
  ~UcxRemoteRegion() override;

  uint64_t peer_serial() const { return peer_serial_; }
  // Puts into this region use ucp_put_nbx.
  bool rma() const { return rma_ && rkey_ != nullptr; }
  const PutTarget& target() const { return target_; }

  // Context teardown: destroy the rkey now and detach from the context.
  void ReleaseKey();

 private:
  UcxContext* ctx_;
  const uint64_t peer_serial_;
  UcpRkeyPtr rkey_;
  const bool rma_;
  PutTarget target_;
};

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_UCX_MEMORY_H_
