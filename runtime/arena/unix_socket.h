// SOCK_SEQPACKET unix sockets between tokenraild and its ranks: listening
// with file mode 0600, peer credentials, one message per call with an
// optional fd (SCM_RIGHTS).
//
// All functions are thread-compatible: distinct sockets may be used from
// different threads; one socket from one thread at a time.
#ifndef TOKENRAIL_RUNTIME_ARENA_UNIX_SOCKET_H_
#define TOKENRAIL_RUNTIME_ARENA_UNIX_SOCKET_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fd.h"

namespace tokenrail {
namespace runtime {

// Binds and listens on `path` (non-blocking, close-on-exec). The file gets
// mode 0600 before the socket starts listening, so no other user can connect
// even briefly. A stale socket file nobody listens on is replaced; a live one
// is AlreadyExists naming the path. InvalidArgument for a path longer than
// sun_path.
absl::StatusOr<UniqueFd> ListenSeqpacket(const std::string& path);

// Connects to `path`, retrying while nobody listens yet (ENOENT,
// ECONNREFUSED) until `deadline`: DeadlineExceeded naming the path. The
// returned socket is blocking and close-on-exec.
absl::StatusOr<UniqueFd> ConnectSeqpacket(const std::string& path, absl::Time deadline);

// Accepts one pending connection without blocking; an invalid fd when none.
absl::StatusOr<UniqueFd> AcceptSeqpacket(int listen_fd);

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};
absl::StatusOr<PeerCredentials> GetPeerCredentials(int fd);

// Sends one message (and `pass_fd` when >= 0) without blocking for long:
// seqpacket messages are atomic. Unavailable when the peer is gone.
absl::Status SendPacket(int fd, absl::string_view message, int pass_fd = -1);

struct Packet {
  bool eof = false;  // the peer closed; no message
  std::string data;
  UniqueFd fd;  // received with the message, if any
};
// Receives one message. With `block` false returns an empty, non-eof Packet
// when nothing is waiting. A message longer than `max_size` is
// InvalidArgument. Received fds are close-on-exec.
absl::StatusOr<Packet> ReceivePacket(int fd, size_t max_size, bool block);

// Waits until `fd` is readable (or closed) or `timeout` passes; true when
// readable.
absl::StatusOr<bool> WaitReadable(int fd, absl::Duration timeout);

// True when the peer closed the connection (non-blocking peek).
bool PeerClosed(int fd);

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_ARENA_UNIX_SOCKET_H_
