// TCP side channel of the verbs backend: a listener per context and one
// connection per endpoint. Connect() exchanges QP blobs over it (the way
// perftest and NCCL bootstrap RC QPs); afterwards the connection stays open as
// a liveness signal: EOF or a reset means the peer process died, which the
// endpoint turns into a sticky Unavailable. Kernel TCP keepalives catch a
// peer host that vanished without closing.
//
// Frames are a u32 little-endian length followed by that many bytes (a sealed
// wireup frame, see wire.h). Sockets are non-blocking; calls taking a deadline
// poll until it passes. Not thread-safe (owned by one context/endpoint).
#ifndef TOKENRAIL_TRANSPORT_VERBS_WIREUP_H_
#define TOKENRAIL_TRANSPORT_VERBS_WIREUP_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fd.h"

namespace tokenrail {
namespace transport {
namespace verbs {

class WireupConn {
 public:
  explicit WireupConn(UniqueFd fd) : fd_(std::move(fd)) {}
  WireupConn(WireupConn&&) = default;
  WireupConn& operator=(WireupConn&&) = default;

  // Connects to ipv4 (network order):port, retrying refused connections
  // until `deadline` (the peer context may not exist yet).
  static absl::StatusOr<WireupConn> Dial(uint32_t ipv4, uint16_t port, absl::Time deadline);

  // Sends one frame (at most `max_frame` bytes), waiting for buffer space
  // until `deadline`.
  absl::Status SendFrame(absl::string_view frame, absl::Time deadline);
  // Non-blocking: a complete frame, or nullopt when none has fully arrived.
  // Unavailable when the peer closed or reset the connection;
  // InvalidArgument when it announces a frame larger than `max_frame`.
  absl::StatusOr<std::optional<std::string>> TryRecvFrame(size_t max_frame);
  // Waits for a frame until `deadline` (DeadlineExceeded).
  absl::StatusOr<std::string> RecvFrame(size_t max_frame, absl::Time deadline);
  // Non-blocking liveness check after the handshake, when the peer sends
  // nothing more: Unavailable on EOF/reset, InvalidArgument if it sent data.
  absl::Status CheckAlive();

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::string in_;  // bytes received, not yet returned as frames
};

class WireupListener {
 public:
  WireupListener() = default;
  WireupListener(WireupListener&&) = default;
  WireupListener& operator=(WireupListener&&) = default;

  // Binds host:port (IPv4 literal; port 0 picks one) and listens.
  static absl::StatusOr<WireupListener> Listen(const std::string& host, uint16_t port);

  // Non-blocking: an accepted connection, or nullopt when none is pending.
  absl::StatusOr<std::optional<WireupConn>> TryAccept();

  uint32_t ipv4() const { return ipv4_; }  // network order
  uint16_t port() const { return port_; }  // host order
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  uint32_t ipv4_ = 0;
  uint16_t port_ = 0;
};

// Spin, then yield, then sleep: waits stay responsive without burning a core
// (the machines running tests have two).
class Backoff {
 public:
  void Pause();
  void Reset() { n_ = 0; }

 private:
  int n_ = 0;
};

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_VERBS_WIREUP_H_
