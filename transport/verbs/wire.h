// Everything the verbs backend puts on a wire, as plain structs with Pack /
// Unpack functions (no verbs calls here, so every format is unit-tested on
// hosts without RDMA):
//   - the context address (Context::address()),
//   - the per-pair QP blob exchanged over the TCP wireup connection,
//   - remote keys (MemoryRegion::PackRemoteKey()),
//   - wireup frames (TCP) and in-band control messages (verbs SEND).
// Address, QP blob, key and wireup frame are SealBlob-framed (magic, version
// 1, CRC-32C): Unpack never trusts its input and reports a malformed blob as
// InvalidArgument naming the problem. In-band messages travel inside an RC
// connection (ICRC-protected, peer already authenticated by the wireup) and
// are parsed with the same bounds-checked reader, without a CRC.
#ifndef TOKENRAIL_TRANSPORT_VERBS_WIRE_H_
#define TOKENRAIL_TRANSPORT_VERBS_WIRE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace transport {
namespace verbs {

using Gid = std::array<uint8_t, 16>;

// "TRVA", "TRVQ", "TRVK", "TRVW" as little-endian u32.
inline constexpr uint32_t kAddressMagic = 0x41565254;
inline constexpr uint32_t kQpMagic = 0x51565254;
inline constexpr uint32_t kKeyMagic = 0x4b565254;
inline constexpr uint32_t kWireupMagic = 0x57565254;
inline constexpr uint16_t kWireVersion = 1;

// Largest control message payload, and the receive slot that holds it with
// its in-band header.
inline constexpr size_t kMaxMessageSize = 4096;
inline constexpr size_t kInbandHeaderSize = 8;
inline constexpr size_t kRecvSlotSize = kMaxMessageSize + 64;

enum class LinkLayer : uint8_t { kInfiniBand = 1, kEthernet = 2 };
const char* LinkLayerName(LinkLayer l);  // "IB" / "RoCE"

// Context::address(): where to dial for wireup and which port the context
// uses (checked for compatibility before a QP is created).
struct AddressInfo {
  uint64_t context_id = 0;
  std::string name;       // TransportOptions::name
  uint32_t ipv4 = 0;      // wireup listener, network byte order
  uint16_t tcp_port = 0;  // host byte order
  std::string device;     // "mlx5_0"
  uint8_t ib_port = 0;
  LinkLayer link_layer = LinkLayer::kInfiniBand;
  uint16_t lid = 0;
  Gid gid{};
  uint16_t mtu = 0;  // bytes
};
std::string PackAddress(const AddressInfo& a);
absl::StatusOr<AddressInfo> UnpackAddress(absl::string_view blob);

// One side of an RC QP pair, exchanged over the wireup connection.
struct QpInfo {
  uint64_t context_id = 0;  // the sender's context
  uint16_t lid = 0;
  Gid gid{};
  uint32_t qpn = 0;          // 24 bits
  uint32_t psn = 0;          // 24 bits
  uint16_t mtu = 0;          // bytes: 256..4096, a power of two
  uint32_t recv_depth = 0;   // receives posted before the exchange = initial credits
  uint64_t credit_addr = 0;  // where the peer RDMA-writes its receive counter to us
  uint32_t credit_rkey = 0;
};
std::string PackQpInfo(const QpInfo& q);
absl::StatusOr<QpInfo> UnpackQpInfo(absl::string_view blob);

// MemoryRegion::PackRemoteKey().
struct RemoteKeyInfo {
  uint64_t context_id = 0;
  uint64_t region_id = 0;
  uint64_t cookie = 0;
  uint64_t addr = 0;
  uint64_t size = 0;
  uint32_t rkey = 0;
};
std::string PackRemoteKey(const RemoteKeyInfo& k);
absl::StatusOr<RemoteKeyInfo> UnpackRemoteKey(absl::string_view blob);

// Frames on the TCP wireup connection. The dialer (lower context id) sends
// kHello with its QP blob; the acceptor answers kAccept with its own (after
// its QP reached RTS) or kReject with a reason; the dialer confirms kReady once
// its QP reached RTS. After that the connection only signals liveness.
enum class WireupType : uint8_t { kHello = 1, kAccept = 2, kReject = 3, kReady = 4 };
struct WireupFrame {
  WireupType type = WireupType::kHello;
  uint64_t from_context = 0;
  uint64_t to_context = 0;
  std::string from_name;
  std::string body;  // QP blob (hello/accept) or reason (reject)
};
std::string PackWireupFrame(const WireupFrame& f);
absl::StatusOr<WireupFrame> UnpackWireupFrame(absl::string_view blob);
// Largest sealed wireup frame accepted from a socket.
inline constexpr size_t kMaxWireupFrame = 4096;

// In-band control messages, sent with IBV_WR_SEND into the peer's receive
// slots: 8-byte header {type u8, 0 u8[7]} then the body.
enum class InbandType : uint8_t { kUser = 1, kKeyQuery = 2, kKeyReply = 3, kPutDone = 4 };
struct InbandMessage {
  InbandType type = InbandType::kUser;
  absl::string_view payload;  // kUser (points into the parsed buffer)
  uint64_t request_id = 0;    // kKeyQuery / kKeyReply
  RemoteKeyInfo key;          // kKeyQuery (context_id unused)
  bool ok = false;            // kKeyReply
  std::string reason;         // kKeyReply when !ok
  uint32_t imm = 0;           // kPutDone: notification of a multi-chunk put
  uint64_t length = 0;        // kPutDone
};
std::string EncodeUserMessage(absl::string_view payload);
std::string EncodeKeyQuery(uint64_t request_id, const RemoteKeyInfo& key);
std::string EncodeKeyReply(uint64_t request_id, bool ok, absl::string_view reason);
std::string EncodePutDone(uint32_t imm, uint64_t length);
absl::StatusOr<InbandMessage> ParseInband(absl::string_view data);

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_VERBS_WIRE_H_
