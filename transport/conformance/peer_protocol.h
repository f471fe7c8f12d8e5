// Commands the conformance test sends to its peer process over the OOB
// channel, and the peer's replies. Internal to the conformance suite.
#ifndef TOKENRAIL_TRANSPORT_CONFORMANCE_PEER_PROTOCOL_H_
#define TOKENRAIL_TRANSPORT_CONFORMANCE_PEER_PROTOCOL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace transport {

enum class PeerOp : uint8_t {
  kAlloc = 1,     // size, fill -> reply: region index (u32) + remote key
  kExpectPut,     // region, imm, len, offset, seed: wait one notification, verify data+guards
  kExpectMany,    // region, count, len, stride, seed: notifications imm 0..count-1 in order
  kCheckFill,     // region, fill: every byte of the region still equals fill
  kDeregister,    // region: destroy it (its key goes stale)
  kEchoMessages,  // count: receive `count` control messages, send each back
  kPutMany,       // key, count, len, stride, seed: put to the test process, imm 0..count-1
  kSink,          // reply, then consume notifications forever (until killed)
};

struct PeerCommand {
  PeerOp op = PeerOp::kAlloc;
  uint32_t region = 0;
  uint32_t count = 0;
  uint32_t imm = 0;
  uint8_t fill = 0;
  uint64_t size = 0;    // alloc size or put length
  uint64_t offset = 0;  // destination offset
  uint64_t stride = 0;
  uint64_t seed = 0;
  std::string key;
};

std::string EncodeCommand(const PeerCommand& cmd);
absl::StatusOr<PeerCommand> DecodeCommand(absl::string_view frame);

// Replies: OK with a payload, or an error message.
std::string EncodeReply(const absl::StatusOr<std::string>& reply);
absl::StatusOr<std::string> DecodeReply(absl::string_view frame);

// Guard bytes checked on each side of every put target range.
constexpr size_t kGuardBytes = 64;

}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_CONFORMANCE_PEER_PROTOCOL_H_
