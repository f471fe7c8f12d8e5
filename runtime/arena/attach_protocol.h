// The rank <-> daemon control protocol on the node's unix socket
// (SOCK_SEQPACKET: one message per datagram, ordered, reliable; EOF tells
// either side that the other process is gone).
//
// Every message is SealBlob('TRAT', kAttachProtocolVersion, payload) with
// payload = type(u32) seq(u64) fields...; the data path never uses the
// socket (it runs on the arena's rings).
//
//   rank                                  daemon
//   Hello{local_rank, pid}           ->
//                                    <-   Welcome{topology, regions} + arena fd
//                                         (SCM_RIGHTS), or Error{code, message}
//   Allocate{size} / Barrier{}       ->   (collective: answered when every rank
//                                    <-   of the job entered it)
//                                         Allocated{region} / BarrierDone / Error
//   Detach{}                         ->
//                                    <-   Detached{}
//
// A reply echoes its request's seq. Decoding never trusts its input: short,
// corrupt or unknown messages are InvalidArgument naming the problem.
#ifndef TOKENRAIL_RUNTIME_ARENA_ATTACH_PROTOCOL_H_
#define TOKENRAIL_RUNTIME_ARENA_ATTACH_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace runtime {

inline constexpr uint32_t kAttachMagic = 0x54415254;  // "TRAT"
inline constexpr uint16_t kAttachProtocolVersion = 1;
// Upper bound of one message (a Welcome with a full region table).
inline constexpr size_t kMaxAttachMessage = 256 << 10;
// Regions a job may allocate (symmetric allocations are few and large).
inline constexpr uint32_t kMaxRegions = 4096;

enum class AttachMessageType : uint32_t {
  kHello = 1,
  kWelcome = 2,
  kError = 3,
  kAllocate = 4,
  kAllocated = 5,
  kBarrier = 6,
  kBarrierDone = 7,
  kDetach = 8,
  kDetached = 9,
};

absl::string_view AttachMessageTypeName(AttachMessageType type);

// One symmetric region: the same offset in every rank's heap on every node.
struct RegionInfo {
  uint32_t id = 0;
  uint64_t offset = 0;  // inside a rank heap
  uint64_t size = 0;
};

struct WelcomeInfo {
  std::string job_id;
  int32_t node_id = 0;
  int32_t nodes = 0;
  int32_t local_rank = 0;
  int32_t ranks_per_node = 0;
  int32_t global_rank = 0;
  int32_t world_size = 0;
  uint64_t arena_bytes = 0;
  std::vector<RegionInfo> regions;  // already allocated (re-attach)
};

// A flat message; which fields are meaningful depends on `type`.
struct AttachMessage {
  AttachMessageType type = AttachMessageType::kError;
  uint64_t seq = 0;
  int32_t local_rank = -1;  // kHello
  int32_t pid = 0;          // kHello
  WelcomeInfo welcome;      // kWelcome
  int32_t code = 0;         // kError: absl::StatusCode
  std::string message;      // kError
  uint64_t size = 0;        // kAllocate
  RegionInfo region;        // kAllocated

  // kError as a Status (never OK: a zero code reads as Internal).
  absl::Status error() const;
  static AttachMessage Error(uint64_t seq, const absl::Status& status);
};

std::string EncodeAttachMessage(const AttachMessage& m);
absl::StatusOr<AttachMessage> DecodeAttachMessage(absl::string_view bytes);

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_ARENA_ATTACH_PROTOCOL_H_
