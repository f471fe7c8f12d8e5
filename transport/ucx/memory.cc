#include "transport/ucx/memory.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/ucs_status.h"
#include "transport/ucx/context.h"

namespace tokenrail {
namespace transport {
namespace ucx {

UcxMemoryRegion::UcxMemoryRegion(UcxContext* ctx, void* data, size_t size, MemoryKind kind,
                                 uint64_t id, uint64_t cookie, UcpMem mem)
    : MemoryRegion(data, size, kind), ctx_(ctx), id_(id), cookie_(cookie), mem_(std::move(mem)) {}

UcxMemoryRegion::~UcxMemoryRegion() {
  if (ctx_ != nullptr) ctx_->RemoveRegion(this);
  mem_.Reset();
}

void UcxMemoryRegion::Orphan() {
  mem_.Reset();
  ctx_ = nullptr;
}

absl::StatusOr<std::string> UcxMemoryRegion::PackRemoteKey() const {
  if (ctx_ == nullptr || mem_.get() == nullptr) {
    return absl::FailedPreconditionError("ucx: region outlived its context");
  }
  void* raw = nullptr;
  size_t len = 0;
  TR_RETURN_IF_ERROR(StatusFromUcs(ucp_rkey_pack(ctx_->ucp(), mem_.get(), &raw, &len),
                                   absl::StrCat("ucx: ucp_rkey_pack of region ", id_)));
  UcpRkeyBuffer buffer(raw);
  KeyInfo key;
  key.context_id = ctx_->id();
  key.region_id = id_;
  key.cookie = cookie_;
  key.size = size();
  key.address = reinterpret_cast<uint64_t>(data());
  key.kind = kind();
  key.rkey.assign(static_cast<const char*>(raw), len);
  return EncodeKey(key);
}

UcxRemoteRegion::UcxRemoteRegion(UcxContext* ctx, uint64_t peer_serial, const KeyInfo& key,
                                 UcpRkeyPtr rkey, bool rma)
    : RemoteRegion(key.size),
      ctx_(ctx),
      peer_serial_(peer_serial),
      rkey_(std::move(rkey)),
      rma_(rma) {
  target_.region_id = key.region_id;
  target_.cookie = key.cookie;
  target_.address = key.address;
  target_.kind = key.kind;
  target_.rkey = rkey_.get();
  ctx_->TrackRemoteRegion(this);
}

UcxRemoteRegion::~UcxRemoteRegion() {
  if (ctx_ != nullptr) ctx_->UntrackRemoteRegion(this);
}

void UcxRemoteRegion::ReleaseKey() {
  rkey_.reset();
  target_.rkey = nullptr;
  ctx_ = nullptr;
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
