#include "transport/verbs/memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/ibverbs_status.h"
#include "common/logging.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace verbs {

MappedBuffer::MappedBuffer(MappedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedBuffer& MappedBuffer::operator=(MappedBuffer&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

MappedBuffer::~MappedBuffer() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

absl::StatusOr<MappedBuffer> MappedBuffer::Create(size_t size) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  if (size == 0 || size > (size_t{1} << 46)) {
    return absl::InvalidArgumentError(absl::StrCat("verbs: cannot allocate ", size, " bytes"));
  }
  const size_t rounded = (size + page - 1) / page * page;
  void* p = ::mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        StatusFromErrno(errno, absl::StrCat("verbs: mmap of ", rounded, " bytes")).message());
  }
  MappedBuffer b;
  b.data_ = static_cast<char*>(p);
  b.size_ = rounded;
  return b;
}

absl::Status RegionTable::Validate(const RemoteKeyInfo& key) const {
  auto it = regions_.find(key.region_id);
  if (it == regions_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("region ", key.region_id, " is not registered (deregistered or never was)"));
  }
  const RemoteKeyInfo& live = it->second;
  if (live.cookie != key.cookie) {
    return absl::InvalidArgumentError(
        absl::StrCat("region ", key.region_id, ": cookie does not match (stale or forged key)"));
  }
  if (live.addr != key.addr || live.size != key.size || live.rkey != key.rkey) {
    return absl::InvalidArgumentError(
        absl::StrCat("region ", key.region_id, ": key names 0x", absl::Hex(key.addr), "+", key.size,
                     " rkey 0x", absl::Hex(key.rkey), ", the region is 0x", absl::Hex(live.addr),
                     "+", live.size, " rkey 0x", absl::Hex(live.rkey)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<VerbsMemoryRegion>> VerbsMemoryRegion::Register(
    Device& device, RegionTable* table, uint64_t context_id, uint64_t region_id, uint64_t cookie,
    void* data, size_t size, MemoryKind kind, MappedBuffer owned) {
  if (data == nullptr || size == 0) {
    return absl::InvalidArgumentError(absl::StrCat("verbs: cannot register ", size, " bytes at 0x",
                                                   absl::Hex(reinterpret_cast<uintptr_t>(data))));
  }
  if (kind == MemoryKind::kCuda && !GpuDirectAvailable()) {
    return absl::UnimplementedError(
        "verbs: registering GPU memory needs GPUDirect RDMA (kernel module nvidia_peermem), "
        "which is not loaded on this host");
  }
  std::unique_ptr<VerbsMemoryRegion> r(new VerbsMemoryRegion(data, size, kind));
  r->owned_ = std::move(owned);
  const int rw = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
  r->mr_.reset(ibv_reg_mr(device.pd.get(), data, size, rw));
  r->remote_writable_ = r->mr_ != nullptr;
  if (r->mr_ == nullptr && kind == MemoryKind::kHost &&
      (errno == EFAULT || errno == EACCES || errno == EPERM)) {
    // Read-only pages (e.g. a const table): usable as a put source only.
    r->mr_.reset(ibv_reg_mr(device.pd.get(), data, size, 0));
  }
  if (r->mr_ == nullptr) {
    return StatusFromIbv(
        -1, absl::StrCat("verbs: ibv_reg_mr of ", size, " bytes at 0x",
                         absl::Hex(reinterpret_cast<uintptr_t>(data)), " on ", device.where()));
  }
  r->key_ = RemoteKeyInfo{
      context_id,  region_id, cookie, reinterpret_cast<uint64_t>(data), static_cast<uint64_t>(size),
      r->mr_->rkey};
  if (r->remote_writable_) {
    r->table_ = table;
    table->Add(r->key_);
  }
  return r;
}

VerbsMemoryRegion::~VerbsMemoryRegion() {
  // Unlisted first so no new key validates, then the MR (invalidating the
  // rkey at the HCA), then the memory.
  if (table_ != nullptr) table_->Remove(key_.region_id);
  mr_.reset();
}

absl::StatusOr<std::string> VerbsMemoryRegion::PackRemoteKey() const {
  if (!remote_writable_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "verbs: region ", key_.region_id,
        " is read-only memory, registered as a put source only; it cannot be a put target"));
  }
  return verbs::PackRemoteKey(key_);
}

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
