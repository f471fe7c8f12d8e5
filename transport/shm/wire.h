// What shm peers exchange: the context address, remote keys, and the frames
// of the unix-socket side channel (handshake and region announcements).
// Everything is framed with SealBlob or a length-prefixed frame and parsed
// with ByteReader; malformed input is InvalidArgument (blobs from the user)
// or DataLoss (frames from a broken peer), never a crash.
#ifndef TOKENRAIL_TRANSPORT_SHM_WIRE_H_
#define TOKENRAIL_TRANSPORT_SHM_WIRE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace transport {
namespace shm {

// Context address (Context::address()).
struct AddressInfo {
  uint64_t context_id = 0;  // random per context
  std::string name;         // TransportOptions::name
  std::string socket_path;  // listening unix socket
  uint32_t pid = 0;         // for messages only: pid namespaces may differ
  std::string boot_id;      // /proc/sys/kernel/random/boot_id: same host check
};
std::string PackAddress(const AddressInfo& a);
absl::StatusOr<AddressInfo> UnpackAddress(absl::string_view blob);

// Remote key of a region made by AllocateMemory.
struct KeyInfo {
  uint64_t owner_id = 0;  // context id of the owner
  uint64_t region_id = 0;
  uint64_t size = 0;
  uint64_t cookie = 0;  // random per region: a guessed id is not enough
};
std::string PackKey(const KeyInfo& k);
absl::StatusOr<KeyInfo> UnpackKey(absl::string_view blob);

// Side-channel frames. Hello and Announce carry one fd (SCM_RIGHTS).
enum class FrameType : uint32_t {
  kHello = 1,      // first frame each way: identities + the sender's inbound channel fd
  kAnnounce = 2,   // a region the sender allocated, with its memfd
  kRevoke = 3,     // a region the sender destroyed
  kWatermark = 4,  // every region id below this was announced or is dead
  kWake = 5,       // the receiver armed its event fd and this side queued data for it
};
inline bool FrameCarriesFd(FrameType t) {
  return t == FrameType::kHello || t == FrameType::kAnnounce;
}

struct HelloFrame {
  uint64_t from_id = 0;
  uint64_t to_id = 0;
  std::string name;
  uint32_t pid = 0;
};
struct AnnounceFrame {
  uint64_t region_id = 0;
  uint64_t size = 0;
  uint64_t cookie = 0;
};
struct RevokeFrame {
  uint64_t region_id = 0;
  uint64_t sequence = 0;  // 1, 2, ... per direction; mirrors Channel::revocations()
};
struct WatermarkFrame {
  uint64_t next_region_id = 0;
};

std::string EncodeHello(const HelloFrame& f);
std::string EncodeAnnounce(const AnnounceFrame& f);
std::string EncodeRevoke(const RevokeFrame& f);
std::string EncodeWatermark(const WatermarkFrame& f);
absl::StatusOr<HelloFrame> DecodeHello(absl::string_view payload);
absl::StatusOr<AnnounceFrame> DecodeAnnounce(absl::string_view payload);
absl::StatusOr<RevokeFrame> DecodeRevoke(absl::string_view payload);
absl::StatusOr<WatermarkFrame> DecodeWatermark(absl::string_view payload);

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_SHM_WIRE_H_
