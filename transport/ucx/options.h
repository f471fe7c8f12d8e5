// Typed options of the ucx backend, parsed once from TransportOptions::params.
//
// UCX settings named here (tls, net_devices, keepalive_ms) are applied to the
// UCP configuration with ucp_config_modify. Everything else keeps UCX's own
// rules: the process's UCX_* environment still applies as UCX defines it, and
// an option given here overrides the matching UCX_* variable.
#ifndef TOKENRAIL_TRANSPORT_UCX_OPTIONS_H_
#define TOKENRAIL_TRANSPORT_UCX_OPTIONS_H_

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
namespace ucx {

// How Put() moves data.
enum class PutMode {
  // RMA where both peers reach each other over a fabric with native RMA
  // (shared memory on one host, or a network such as InfiniBand); active
  // messages with rendezvous elsewhere (TCP, where UCX 1.13 emulates put).
  kAuto,
  // Always ucp_put_nbx (UCX emulates it where the fabric has no RMA).
  kRma,
  // Always active messages (eager copy below rndv_thresh, zero-copy
  // rendezvous into the target region at and above it).
  kAm,
};

// How an RMA put's notification is ordered after its data.
enum class RmaNotify {
  // ucp_ep_flush_nbx, then the notification (flushes are batched: one in
  // flight covers every put posted before it). Correct on every fabric.
  kFlush,
  // ucp_worker_fence, then the notification. UCX 1.13 fences each transport
  // interface separately, so this orders data and notification only when
  // both travel on the same lane; for measurements.
  kFence,
};

inline constexpr size_t kMinMessageSize = 4096;
inline constexpr size_t kMaxMessageSizeLimit = 16 << 20;

struct UcxOptions {
  // UCX transport list (UCX_TLS syntax: "tcp", "shm", "^tcp", "rc,sm", ...).
  // Empty: UCX's default (the UCX_TLS environment variable, else all).
  std::string tls;
  // UCX network device list (UCX_NET_DEVICES syntax: "eth0", "mlx5_0:1").
  // Empty: UCX's default.
  std::string net_devices;
  PutMode put_mode = PutMode::kAuto;
  // Active-message puts of at least this many bytes use rendezvous (the
  // receiver pulls the data straight into the target region); smaller ones
  // are sent eagerly and copied out of the message. Measured over TCP: eager
  // costs less CPU per byte at 32 KiB, the two are even from 128 KiB up.
  size_t rndv_thresh = 64 << 10;
  // UCX keepalive interval, so that a dead peer is detected on transports
  // without a connection to break (shared memory). 0 disables keepalive.
  int64_t keepalive_ms = 1000;
  RmaNotify rma_notify = RmaNotify::kFlush;
  // Largest control message (Capabilities::max_message_size).
  size_t max_message_size = 64 << 10;
  // From TransportOptions.
  std::string name = "tokenrail";
  absl::Duration connect_timeout = absl::Seconds(30);
};

// key -> help text, for the registry entry and `tokenrail-bench info`.
std::vector<std::pair<std::string, std::string>> UcxOptionsHelp();

// Parses `params` over the defaults. Unknown keys and bad values are
// InvalidArgument naming the key and the value.
absl::StatusOr<UcxOptions> ParseUcxOptions(const std::map<std::string, std::string>& params);

const char* PutModeName(PutMode mode);

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_UCX_OPTIONS_H_
