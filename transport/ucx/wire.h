// What ucx peers exchange: the address blob (out of band), remote keys (out
// of band), and the active messages between their workers.
//
// Blobs are SealBlob-framed (magic, version 1, CRC) and parsed with
// ByteReader; anything malformed is InvalidArgument naming the problem.
// Active-message headers are fixed-size little-endian PODs, accepted only
// when the received header length matches exactly; every header starts with
// the sender's context id so that the receiver maps it to the right peer.
#ifndef TOKENRAIL_TRANSPORT_UCX_WIRE_H_
#define TOKENRAIL_TRANSPORT_UCX_WIRE_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {
namespace ucx {

inline constexpr uint32_t kAddressMagic = 0x41584355;  // "UCXA"
inline constexpr uint32_t kKeyMagic = 0x4b584355;      // "UCXK"
inline constexpr uint16_t kWireVersion = 1;

// Fabrics over which this context can do native RMA (UCP RMA lanes exist).
enum RmaClass : uint8_t {
  kRmaShm = 1 << 0,  // shared memory: reaches peers on the same host
  kRmaNet = 1 << 1,  // network (InfiniBand/RoCE/...): reaches any peer
};

struct AddressInfo {
  uint64_t context_id = 0;
  std::string name;
  std::string worker_address;  // ucp_worker_get_address bytes
  std::string host_id;         // kernel boot id: same value = same host
  uint8_t rma_classes = 0;     // RmaClass bits
};

std::string EncodeAddress(const AddressInfo& info);
absl::StatusOr<AddressInfo> DecodeAddress(absl::string_view blob);

struct KeyInfo {
  uint64_t context_id = 0;  // the registering context
  uint64_t region_id = 0;
  uint64_t cookie = 0;  // random per region; re-checked on every put
  uint64_t size = 0;
  uint64_t address = 0;  // region base in the owner's address space (RMA)
  MemoryKind kind = MemoryKind::kHost;
  std::string rkey;  // ucp_rkey_pack bytes
};

std::string EncodeKey(const KeyInfo& info);
absl::StatusOr<KeyInfo> DecodeKey(absl::string_view blob);

// Active-message ids registered on the worker.
enum AmId : uint16_t {
  kAmHello = 1,     // HelloHeader + name: "I connected to you"
  kAmPut = 2,       // PutHeader + payload (eager or rendezvous)
  kAmNotify = 3,    // NotifyHeader + NotifyEntry[count]: RMA puts landed
  kAmAckReq = 4,    // AckReqHeader: "tell me once you processed seq"
  kAmAck = 5,       // AckHeader + RejectEntry[count]
  kAmMessage = 6,   // MessageHeader + payload
  kAmKeyQuery = 7,  // KeyQueryHeader
  kAmKeyReply = 8,  // KeyReplyHeader
  kAmBye = 9,       // ByeHeader: the sender closed its endpoint
};
inline constexpr uint16_t kAmFirst = kAmHello;
inline constexpr uint16_t kAmLast = kAmBye;

struct HelloHeader {
  uint64_t context_id;
  uint32_t version;
  uint32_t reserved;
};

// Put and notification flags.
enum PutFlags : uint32_t {
  // The sender waits for acknowledgements: report progress (coalesced, once
  // per progress round) without waiting for an explicit AckReq.
  kPutFlagAckWanted = 1 << 0,
};

struct PutHeader {
  uint64_t context_id;
  uint64_t seq;  // == the sender's ticket
  uint64_t region_id;
  uint64_t cookie;
  uint64_t offset;
  uint64_t length;
  uint32_t imm;
  uint32_t flags;  // PutFlags
};

struct NotifyHeader {
  uint64_t context_id;
  uint32_t count;
  uint32_t reserved;
};

struct NotifyEntry {
  uint64_t seq;
  uint64_t region_id;
  uint64_t cookie;
  uint64_t offset;
  uint64_t length;
  uint32_t imm;
  uint32_t flags;  // PutFlags
};

struct AckReqHeader {
  uint64_t context_id;
  uint64_t seq;
};

// Why the receiver refused a put.
enum RejectReason : uint32_t {
  kRejectUnknownRegion = 1,
  kRejectBadCookie = 2,
  kRejectOutOfBounds = 3,
  kRejectLengthMismatch = 4,
  kRejectMemoryKind = 5,
};
const char* RejectReasonName(uint32_t reason);

struct AckHeader {
  uint64_t context_id;
  uint64_t delivered_seq;  // every seq <= this was delivered or rejected
  uint32_t reject_count;
  uint32_t reserved;
};

struct RejectEntry {
  uint64_t seq;
  uint32_t reason;
  uint32_t reserved;
};

struct MessageHeader {
  uint64_t context_id;
  uint64_t seq;
};

struct KeyQueryHeader {
  uint64_t context_id;
  uint64_t query_id;
  uint64_t region_id;
  uint64_t cookie;
  uint64_t size;
};

enum KeyVerdict : uint32_t {
  kKeyValid = 0,
  kKeyUnknownRegion = 1,
  kKeyBadCookie = 2,
  kKeyBadSize = 3,
};

struct KeyReplyHeader {
  uint64_t context_id;
  uint64_t query_id;
  uint32_t verdict;
  uint32_t reserved;
};

struct ByeHeader {
  uint64_t context_id;
};

// Copies a received header into `out` when its length matches exactly.
template <typename T>
bool ReadHeader(const void* header, size_t length, T* out) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (header == nullptr || length != sizeof(T)) return false;
  std::memcpy(out, header, sizeof(T));
  return true;
}

// Every header begins with the sender's context id (0 when too short).
inline uint64_t SenderId(const void* header, size_t length) {
  uint64_t id = 0;
  if (header != nullptr && length >= sizeof(id)) std::memcpy(&id, header, sizeof(id));
  return id;
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_UCX_WIRE_H_
