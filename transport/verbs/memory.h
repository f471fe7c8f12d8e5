// Registered memory of the verbs backend and its remote keys.
//
// A VerbsMemoryRegion owns an ibv_mr (LOCAL_WRITE | REMOTE_WRITE, so it can be
// a put target; read-only host memory falls back to a source-only
// registration). Its remote key is a sealed {context id, region id, random
// cookie, addr, size, rkey}. The owning context keeps a RegionTable of live
// regions so a peer can validate a key before using it (Endpoint::
// UnpackRemoteKey sends a query; the table answers). After the round trip, the
// HCA enforces the rest on every put: the rkey names exactly [addr, addr+size)
// and is invalidated by ibv_dereg_mr, so a stale or forged key faults at the
// NIC (IBV_WC_REM_ACCESS_ERR) instead of writing anywhere.
//
// Thread safety: like the owning context (one thread at a time).
#ifndef TOKENRAIL_TRANSPORT_VERBS_MEMORY_H_
#define TOKENRAIL_TRANSPORT_VERBS_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "transport/transport.h"
#include "transport/verbs/device.h"
#include "transport/verbs/wire.h"

namespace tokenrail {
namespace transport {
namespace verbs {

// Anonymous page-aligned zeroed memory (mmap), unmapped on destruction.
class MappedBuffer {
 public:
  MappedBuffer() = default;
  MappedBuffer(MappedBuffer&& o) noexcept;
  MappedBuffer& operator=(MappedBuffer&& o) noexcept;
  MappedBuffer(const MappedBuffer&) = delete;
  MappedBuffer& operator=(const MappedBuffer&) = delete;
  ~MappedBuffer();

  // Rounds `size` up to whole pages. ResourceExhausted when mmap fails.
  static absl::StatusOr<MappedBuffer> Create(size_t size);
  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

// Live regions of one context, consulted when a peer validates a key.
class RegionTable {
 public:
  void Add(const RemoteKeyInfo& key) { regions_[key.region_id] = key; }
  void Remove(uint64_t region_id) { regions_.erase(region_id); }
  // OK when `key` names a live region with the same cookie and range;
  // otherwise InvalidArgument explaining which part does not match.
  absl::Status Validate(const RemoteKeyInfo& key) const;
  size_t size() const { return regions_.size(); }

 private:
  std::map<uint64_t, RemoteKeyInfo> regions_;
};

class VerbsMemoryRegion : public MemoryRegion {
 public:
  // Registers [data, data+size) with the device's PD. kCuda needs GPUDirect
  // RDMA (nvidia_peermem), else Unimplemented. `owned` (may be empty) is
  // memory the region keeps alive. `table` must outlive the region.
  static absl::StatusOr<std::unique_ptr<VerbsMemoryRegion>> Register(
      Device& device, RegionTable* table, uint64_t context_id, uint64_t region_id, uint64_t cookie,
      void* data, size_t size, MemoryKind kind, MappedBuffer owned);
  ~VerbsMemoryRegion() override;

  absl::StatusOr<std::string> PackRemoteKey() const override;

  uint32_t lkey() const { return mr_->lkey; }
  uint64_t context_id() const { return key_.context_id; }
  uint64_t region_id() const { return key_.region_id; }

 private:
  VerbsMemoryRegion(void* data, size_t size, MemoryKind kind) : MemoryRegion(data, size, kind) {}

  RegionTable* table_ = nullptr;
  RemoteKeyInfo key_;
  bool remote_writable_ = false;
  MappedBuffer owned_;  // freed after the MR below is deregistered
  IbvPtr<ibv_mr> mr_;
};

// A peer's region, unpacked and validated on one endpoint.
class VerbsRemoteRegion : public RemoteRegion {
 public:
  explicit VerbsRemoteRegion(const RemoteKeyInfo& key)
      : RemoteRegion(static_cast<size_t>(key.size)), key_(key) {}
  const RemoteKeyInfo& key() const { return key_; }

 private:
  RemoteKeyInfo key_;
};

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_VERBS_MEMORY_H_
