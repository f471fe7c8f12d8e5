// Memory regions of the shm backend.
//
// Only regions from AllocateMemory (a sealed memfd the backend owns) can be
// put targets: their fd is announced to every connected peer, which maps the
// same pages. RegisterMemory wraps arbitrary caller memory, usable as a put
// source only (a put is a memcpy from it), so its PackRemoteKey is
// FailedPrecondition.
//
// A region must not outlive its context (transport.h); if it does, its
// destructor only releases its own memory.
#ifndef TOKENRAIL_TRANSPORT_SHM_MEMORY_H_
#define TOKENRAIL_TRANSPORT_SHM_MEMORY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transport/shm/mapping.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {
namespace shm {

class ShmContext;

class ShmMemoryRegion final : public MemoryRegion {
 public:
  // Caller memory, source only.
  ShmMemoryRegion(ShmContext* ctx, void* data, size_t size);
  // A memfd the region owns; `id` and `cookie` name it in remote keys.
  ShmMemoryRegion(ShmContext* ctx, uint64_t owner_id, uint64_t id, uint64_t cookie,
                  SharedFile file);
  ~ShmMemoryRegion() override;

  absl::StatusOr<std::string> PackRemoteKey() const override;

  bool is_target() const { return file_.map.valid(); }
  uint64_t id() const { return id_; }
  uint64_t cookie() const { return cookie_; }
  int fd() const { return file_.fd.get(); }

  // Called by a context destroyed before this region (a caller bug).
  void DetachContext() { ctx_ = nullptr; }

 private:
  ShmContext* ctx_;
  uint64_t owner_id_ = 0;
  uint64_t id_ = 0;
  uint64_t cookie_ = 0;
  SharedFile file_;
};

// A peer's target region, mapped here when the peer announced it. Shared by
// the endpoint's table and every RemoteRegion unpacked for it, so the mapping
// stays valid while any of them lives (after a revocation the pages are no
// longer the peer's memory, and puts to them are refused).
struct PeerRegion {
  uint64_t id = 0;
  uint64_t size = 0;
  uint64_t cookie = 0;
  Mapping map;         // valid when `error` is OK
  absl::Status error;  // why the announced fd could not be mapped
  bool revoked = false;
};

class ShmRemoteRegion final : public RemoteRegion {
 public:
  ShmRemoteRegion(uint64_t endpoint_serial, std::shared_ptr<PeerRegion> region)
      : RemoteRegion(region->size), endpoint_serial_(endpoint_serial), region_(std::move(region)) {}

  uint64_t endpoint_serial() const { return endpoint_serial_; }
  const PeerRegion& region() const { return *region_; }
  char* data() const { return region_->map.data(); }

 private:
  uint64_t endpoint_serial_;
  std::shared_ptr<PeerRegion> region_;
};

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_SHM_MEMORY_H_
