// Out-of-band byte channel for bootstrapping peers outside the control plane
// (benchmarks, conformance tests): exchanges address blobs and remote keys and
// synchronizes steps. Length-prefixed frames over a stream socket (TCP or a
// socketpair). Blocking calls take deadlines; a closed peer is Unavailable.
// Not thread-safe.
#ifndef TOKENRAIL_TRANSPORT_OOB_H_
#define TOKENRAIL_TRANSPORT_OOB_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fd.h"

namespace tokenrail {
namespace transport {

class OobListener {
 public:
  // Binds host:port (port 0 picks one) and listens.
  static absl::StatusOr<OobListener> Listen(const std::string& host, uint16_t port);
  uint16_t port() const { return port_; }
  absl::StatusOr<class OobChannel> Accept(absl::Time deadline);

 private:
  OobListener(UniqueFd fd, uint16_t port) : fd_(std::move(fd)), port_(port) {}
  UniqueFd fd_;
  uint16_t port_;
};

class OobChannel {
 public:
  static constexpr size_t kMaxFrame = 64 << 20;

  explicit OobChannel(UniqueFd fd) : fd_(std::move(fd)) {}
  // Retries refused connections until `deadline` (the listener may start later).
  static absl::StatusOr<OobChannel> Connect(const std::string& host, uint16_t port,
                                            absl::Time deadline);

  absl::Status Send(absl::string_view frame);
  absl::StatusOr<std::string> Recv(absl::Time deadline);

  // Send then receive: both sides call it to swap one blob each.
  absl::StatusOr<std::string> Exchange(absl::string_view mine, absl::Time deadline);

  int fd() const { return fd_.get(); }

 private:
  absl::Status ReadFull(char* buf, size_t len, absl::Time deadline);
  UniqueFd fd_;
};

}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_OOB_H_
