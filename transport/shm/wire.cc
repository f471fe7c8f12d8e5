#include "transport/shm/wire.h"

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

constexpr uint32_t kAddressMagic = 0x41534854;  // "THSA"
constexpr uint32_t kKeyMagic = 0x4b534854;      // "THSK"
constexpr uint16_t kVersion = 1;
constexpr size_t kMaxName = 1024;
constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxBootId = 64;

// Frame payloads are decoded from a peer that may be broken: a bad frame is
// DataLoss (the endpoint fails), not the caller's InvalidArgument.
absl::Status AsDataLoss(const absl::Status& s) {
  return s.ok() ? s : absl::DataLossError(s.message());
}

}  // namespace

std::string PackAddress(const AddressInfo& a) {
  ByteWriter w;
  w.Put<uint64_t>(a.context_id);
  w.PutBytes(a.name);
  w.PutBytes(a.socket_path);
  w.Put<uint32_t>(a.pid);
  w.PutBytes(a.boot_id);
  return SealBlob(kAddressMagic, kVersion, w.data());
}

absl::StatusOr<AddressInfo> UnpackAddress(absl::string_view blob) {
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kAddressMagic, kVersion, "shm address"));
  ByteReader r(payload, "shm address");
  AddressInfo a;
  TR_ASSIGN_OR_RETURN(a.context_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view name, r.GetBytes(kMaxName));
  TR_ASSIGN_OR_RETURN(absl::string_view path, r.GetBytes(kMaxPath));
  TR_ASSIGN_OR_RETURN(a.pid, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view boot_id, r.GetBytes(kMaxBootId));
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("shm address: socket path '", path, "' is not absolute"));
  }
  a.name = std::string(name);
  a.socket_path = std::string(path);
  a.boot_id = std::string(boot_id);
  return a;
}

std::string PackKey(const KeyInfo& k) {
  ByteWriter w;
  w.Put<uint64_t>(k.owner_id);
  w.Put<uint64_t>(k.region_id);
  w.Put<uint64_t>(k.size);
  w.Put<uint64_t>(k.cookie);
  return SealBlob(kKeyMagic, kVersion, w.data());
}

absl::StatusOr<KeyInfo> UnpackKey(absl::string_view blob) {
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kKeyMagic, kVersion, "shm remote key"));
  ByteReader r(payload, "shm remote key");
  KeyInfo k;
  TR_ASSIGN_OR_RETURN(k.owner_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(k.region_id, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(k.size, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(k.cookie, r.Get<uint64_t>());
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  return k;
}

std::string EncodeHello(const HelloFrame& f) {
  ByteWriter w;
  w.Put<uint64_t>(f.from_id);
  w.Put<uint64_t>(f.to_id);
  w.PutBytes(f.name);
  w.Put<uint32_t>(f.pid);
  return w.Release();
}

std::string EncodeAnnounce(const AnnounceFrame& f) {
  ByteWriter w;
  w.Put<uint64_t>(f.region_id);
  w.Put<uint64_t>(f.size);
  w.Put<uint64_t>(f.cookie);
  return w.Release();
}

std::string EncodeRevoke(const RevokeFrame& f) {
  ByteWriter w;
  w.Put<uint64_t>(f.region_id);
  w.Put<uint64_t>(f.sequence);
  return w.Release();
}

std::string EncodeWatermark(const WatermarkFrame& f) {
  ByteWriter w;
  w.Put<uint64_t>(f.next_region_id);
  return w.Release();
}

absl::StatusOr<HelloFrame> DecodeHello(absl::string_view payload) {
  ByteReader r(payload, "shm hello frame");
  HelloFrame f;
  absl::Status s = [&]() -> absl::Status {
    TR_ASSIGN_OR_RETURN(f.from_id, r.Get<uint64_t>());
    TR_ASSIGN_OR_RETURN(f.to_id, r.Get<uint64_t>());
    TR_ASSIGN_OR_RETURN(absl::string_view name, r.GetBytes(kMaxName));
    f.name = std::string(name);
    TR_ASSIGN_OR_RETURN(f.pid, r.Get<uint32_t>());
    return r.ExpectEnd();
  }();
  if (!s.ok()) return AsDataLoss(s);
  return f;
}

absl::StatusOr<AnnounceFrame> DecodeAnnounce(absl::string_view payload) {
  ByteReader r(payload, "shm announce frame");
  AnnounceFrame f;
  absl::Status s = [&]() -> absl::Status {
    TR_ASSIGN_OR_RETURN(f.region_id, r.Get<uint64_t>());
    TR_ASSIGN_OR_RETURN(f.size, r.Get<uint64_t>());
    TR_ASSIGN_OR_RETURN(f.cookie, r.Get<uint64_t>());
    return r.ExpectEnd();
  }();
  if (!s.ok()) return AsDataLoss(s);
  return f;
}

absl::StatusOr<RevokeFrame> DecodeRevoke(absl::string_view payload) {
  ByteReader r(payload, "shm revoke frame");
  RevokeFrame f;
  absl::Status s = [&]() -> absl::Status {
    TR_ASSIGN_OR_RETURN(f.region_id, r.Get<uint64_t>());
    TR_ASSIGN_OR_RETURN(f.sequence, r.Get<uint64_t>());
    return r.ExpectEnd();
  }();
  if (!s.ok()) return AsDataLoss(s);
  return f;
}

absl::StatusOr<WatermarkFrame> DecodeWatermark(absl::string_view payload) {
  ByteReader r(payload, "shm watermark frame");
  WatermarkFrame f;
  absl::Status s = [&]() -> absl::Status {
    TR_ASSIGN_OR_RETURN(f.next_region_id, r.Get<uint64_t>());
    return r.ExpectEnd();
  }();
  if (!s.ok()) return AsDataLoss(s);
  return f;
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
