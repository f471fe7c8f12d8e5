// The unix-socket side channel of the shm backend: a listening socket per
// context, and a framed, non-blocking, fd-passing stream per endpoint.
//
// The side channel carries only the handshake and region announcements; the
// data path (puts, notifications, messages) never touches it. Its second job
// is liveness: the kernel closes a dead process's sockets, so EOF or
// ECONNRESET on it is how a survivor learns that its peer died.
#ifndef TOKENRAIL_TRANSPORT_SHM_SOCKET_H_
#define TOKENRAIL_TRANSPORT_SHM_SOCKET_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fd.h"
#include "transport/shm/wire.h"

namespace tokenrail {
namespace transport {
namespace shm {

// Creates a non-blocking listening unix stream socket at `path` (which must
// not exist), with file mode 0600. Paths longer than sun_path are reached
// through /proc/self/fd of their directory.
absl::StatusOr<UniqueFd> ListenUnix(const std::string& path);

// Starts a non-blocking connection to `path`. ResourceExhausted when the
// listener's backlog is full (EAGAIN: retry). Unavailable when nobody listens
// there (ECONNREFUSED, ENOENT): a context listens before its address exists
// and stops only when it is destroyed, so its owner is gone.
absl::StatusOr<UniqueFd> ConnectUnix(const std::string& path);

// Removes sockets named <prefix>*.sock in `dir` that are owned by this user,
// older than a minute and refuse connections: a live context listens until it
// is destroyed, so these were left by killed processes. Returns how many.
int RemoveStaleSockets(const std::string& dir, const std::string& prefix);

// Accepts one pending connection, non-blocking; an invalid fd when none.
absl::StatusOr<UniqueFd> AcceptUnix(int listen_fd);

struct Frame {
  FrameType type;
  std::string payload;
  UniqueFd fd;  // valid when FrameCarriesFd(type)
};

// Framed stream over a connected non-blocking unix socket. Frames are
// {u32 type, u32 length, payload}; an fd rides with the first byte of its
// frame. Not thread-safe.
class SocketChannel {
 public:
  explicit SocketChannel(UniqueFd fd) : fd_(std::move(fd)) {}
  SocketChannel(SocketChannel&&) = default;
  SocketChannel& operator=(SocketChannel&&) = default;

  // Queues a frame (passing `fd` along when valid; the channel closes its
  // copy once sent) and sends what the socket accepts now.
  absl::Status Send(FrameType type, absl::string_view payload, UniqueFd fd = UniqueFd());
  // Sends queued output the socket accepts now. Unavailable when the peer is gone.
  absl::Status Flush();
  bool has_output() const { return !out_.empty(); }

  // Reads what the socket holds without blocking and returns the next
  // complete frame, or nullopt. After the peer closed: Unavailable once every
  // complete frame was returned. DataLoss for malformed input.
  absl::StatusOr<std::optional<Frame>> Receive();

  int fd() const { return fd_.get(); }

 private:
  struct OutFrame {
    std::string bytes;
    UniqueFd fd;
    size_t sent = 0;
  };
  absl::Status ReadAvailable();

  UniqueFd fd_;
  std::deque<OutFrame> out_;
  std::string in_;               // received bytes not yet parsed
  std::deque<UniqueFd> in_fds_;  // received fds, in arrival order
  bool eof_ = false;
  absl::Status read_error_;
};

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_SHM_SOCKET_H_
