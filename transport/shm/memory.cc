#include "transport/shm/memory.h"

#include "absl/strings/str_cat.h"
#include "transport/shm/context.h"
#include "transport/shm/wire.h"

namespace tokenrail {
namespace transport {
namespace shm {

ShmMemoryRegion::ShmMemoryRegion(ShmContext* ctx, void* data, size_t size)
    : MemoryRegion(data, size, MemoryKind::kHost), ctx_(ctx) {}

ShmMemoryRegion::ShmMemoryRegion(ShmContext* ctx, uint64_t owner_id, uint64_t id, uint64_t cookie,
                                 SharedFile file)
    : MemoryRegion(file.map.data(), file.map.size(), MemoryKind::kHost),
      ctx_(ctx),
      owner_id_(owner_id),
      id_(id),
      cookie_(cookie),
      file_(std::move(file)) {}

ShmMemoryRegion::~ShmMemoryRegion() {
  if (ctx_ != nullptr) ctx_->ReleaseRegion(this);
}

absl::StatusOr<std::string> ShmMemoryRegion::PackRemoteKey() const {
  if (!is_target()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shm: region of ", size(), " bytes at ", absl::Hex(reinterpret_cast<uintptr_t>(data())),
        " came from RegisterMemory and can only be a put source; allocate put targets with "
        "AllocateMemory (a memfd that peers can map)"));
  }
  return PackKey(KeyInfo{owner_id_, id_, size(), cookie_});
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
