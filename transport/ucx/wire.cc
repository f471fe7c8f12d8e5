#include "transport/ucx/wire.h"

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

constexpr size_t kMaxNameBytes = 1024;
constexpr size_t kMaxWorkerAddressBytes = 64 << 10;
constexpr size_t kMaxHostIdBytes = 256;
constexpr size_t kMaxRkeyBytes = 64 << 10;

}  // namespace

std::string EncodeAddress(const AddressInfo& info) {
  ByteWriter w;
  w.Put<uint64_t>(info.context_id);
  w.PutBytes(info.name);
  w.PutBytes(info.worker_address);
  w.PutBytes(info.host_id);
  w.Put<uint8_t>(info.rma_classes);
  return SealBlob(kAddressMagic, kWireVersion, w.data());
}

absl::StatusOr<AddressInfo> DecodeAddress(absl::string_view blob) {
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kAddressMagic, kWireVersion, "ucx address"));
  ByteReader r(payload, "ucx address");
  AddressInfo info;
  TR_ASSIGN_OR_RETURN(info.context_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view name, r.GetBytes(kMaxNameBytes));
  TR_ASSIGN_OR_RETURN(absl::string_view worker, r.GetBytes(kMaxWorkerAddressBytes));
  TR_ASSIGN_OR_RETURN(absl::string_view host, r.GetBytes(kMaxHostIdBytes));
  TR_ASSIGN_OR_RETURN(info.rma_classes, r.Get<uint8_t>());
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (info.context_id == 0) return absl::InvalidArgumentError("ucx address: context id is 0");
  if (worker.empty()) return absl::InvalidArgumentError("ucx address: empty worker address");
  if ((info.rma_classes & ~(kRmaShm | kRmaNet)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ucx address: unknown RMA class bits 0x", absl::Hex(info.rma_classes)));
  }
  info.name = std::string(name);
  info.worker_address = std::string(worker);
  info.host_id = std::string(host);
  return info;
}

std::string EncodeKey(const KeyInfo& info) {
  ByteWriter w;
  w.Put<uint64_t>(info.context_id);
  w.Put<uint64_t>(info.region_id);
  w.Put<uint64_t>(info.cookie);
  w.Put<uint64_t>(info.size);
  w.Put<uint64_t>(info.address);
  w.Put<uint8_t>(info.kind == MemoryKind::kCuda ? 1 : 0);
  w.PutBytes(info.rkey);
  return SealBlob(kKeyMagic, kWireVersion, w.data());
}

absl::StatusOr<KeyInfo> DecodeKey(absl::string_view blob) {
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kKeyMagic, kWireVersion, "ucx remote key"));
  ByteReader r(payload, "ucx remote key");
  KeyInfo info;
  TR_ASSIGN_OR_RETURN(info.context_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(info.region_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(info.cookie, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(info.size, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(info.address, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(uint8_t kind, r.Get<uint8_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view rkey, r.GetBytes(kMaxRkeyBytes));
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (kind > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ucx remote key: unknown memory kind ", static_cast<int>(kind)));
  }
  if (info.context_id == 0 || info.region_id == 0) {
    return absl::InvalidArgumentError("ucx remote key: zero context or region id");
  }
  if (info.address + info.size < info.address) {
    return absl::InvalidArgumentError(absl::StrCat("ucx remote key: region of ", info.size,
                                                   " bytes at 0x", absl::Hex(info.address),
                                                   " wraps the address space"));
  }
  info.kind = kind == 1 ? MemoryKind::kCuda : MemoryKind::kHost;
  info.rkey = std::string(rkey);
  return info;
}

const char* RejectReasonName(uint32_t reason) {
  switch (reason) {
    case kRejectUnknownRegion:
      return "the region is not registered (anymore)";
    case kRejectBadCookie:
      return "the key's cookie does not match the registered region";
    case kRejectOutOfBounds:
      return "the range is outside the region";
    case kRejectLengthMismatch:
      return "the payload length does not match the header";
    case kRejectMemoryKind:
      return "eager data cannot be copied into device memory";
  }
  return "unknown reason";
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
