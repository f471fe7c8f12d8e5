// Typed options of the shm backend, parsed once from TransportOptions::params.
#ifndef TOKENRAIL_TRANSPORT_SHM_OPTIONS_H_
#define TOKENRAIL_TRANSPORT_SHM_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tokenrail {
namespace transport {
namespace shm {

// Largest control message (Capabilities::max_message_size). Every message
// ring holds at least two of them, so one full-size message always fits into
// an empty ring whatever the peer's configuration.
inline constexpr size_t kMaxMessageSize = 64 << 10;

struct ShmOptions {
  // Directory of the listening unix socket (mode 0600, unlinked when the
  // context is destroyed). Peers must be able to reach it by the same path.
  std::string dir = "/tmp";
  // Slots of each inbound notification ring; a power of two. Puts beyond a
  // full ring wait in a local FIFO, so this bounds buffering, not correctness.
  uint32_t ring_entries = 1024;
  // Bytes of each inbound control-message ring; a power of two, at least
  // 256 KiB (two maximum-size messages plus framing).
  uint64_t message_ring_bytes = 256 << 10;
  // How long a wait busy-polls before it starts yielding and sleeping.
  absl::Duration spin = absl::Microseconds(100);
};

// key -> help text, for the registry entry and `tokenrail-bench info`.
std::vector<std::pair<std::string, std::string>> ShmOptionsHelp();

// Parses `params` over the defaults. Unknown keys and bad values are
// InvalidArgument naming the key and the value.
absl::StatusOr<ShmOptions> ParseShmOptions(const std::map<std::string, std::string>& params);

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_SHM_OPTIONS_H_
