#include "transport/verbs/wireup.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

int MillisUntil(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
}

// Waits for `events` on fd; DeadlineExceeded when the deadline passes.
absl::Status PollFd(int fd, short events, absl::Time deadline, absl::string_view what) {
  pollfd p{fd, events, 0};
  while (true) {
    const int rc = ::poll(&p, 1, MillisUntil(deadline));
    if (rc > 0) return absl::OkStatus();
    if (rc == 0) return absl::DeadlineExceededError(absl::StrCat("verbs wireup: timed out ", what));
    if (errno != EINTR) return StatusFromErrno(errno, absl::StrCat("verbs wireup: poll ", what));
  }
}

void TuneSocket(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  // Detect a peer host that disappeared without a FIN within ~15 s.
  const int idle = 5, interval = 2, count = 5;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  const unsigned user_timeout_ms = 15000;
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
}

std::string Endpoint(uint32_t ipv4, uint16_t port) {
  char buf[INET_ADDRSTRLEN] = {};
  in_addr a{};
  a.s_addr = ipv4;
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return absl::StrCat(buf, ":", port);
}

}  // namespace

absl::StatusOr<WireupConn> WireupConn::Dial(uint32_t ipv4, uint16_t port, absl::Time deadline) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = ipv4;
  addr.sin_port = htons(port);
  const std::string where = Endpoint(ipv4, port);
  while (true) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return StatusFromErrno(errno, "verbs wireup: socket");
    int err = 0;
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        TR_RETURN_IF_ERROR(PollFd(fd.get(), POLLOUT, deadline, absl::StrCat("dialing ", where)));
        socklen_t len = sizeof(err);
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      }
    }
    if (err == 0) {
      TuneSocket(fd.get());
      return WireupConn(std::move(fd));
    }
    if ((err != ECONNREFUSED && err != ECONNRESET) || absl::Now() >= deadline) {
      return StatusFromErrno(err, absl::StrCat("verbs wireup: connect to ", where));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status WireupConn::SendFrame(absl::string_view frame, absl::Time deadline) {
  const uint32_t len = static_cast<uint32_t>(frame.size());
  std::string buf(reinterpret_cast<const char*>(&len), sizeof(len));
  buf.append(frame.data(), frame.size());
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = ::send(fd_.get(), buf.data() + done, buf.size() - done, MSG_NOSIGNAL);
    if (n >= 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      TR_RETURN_IF_ERROR(PollFd(fd_.get(), POLLOUT, deadline, "sending"));
      continue;
    }
    return StatusFromErrno(errno, "verbs wireup: send");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> WireupConn::TryRecvFrame(size_t max_frame) {
  while (true) {
    if (in_.size() >= sizeof(uint32_t)) {
      uint32_t len;
      std::memcpy(&len, in_.data(), sizeof(len));
      if (len > max_frame) {
        return absl::InvalidArgumentError(absl::StrCat("verbs wireup: peer announced a frame of ",
                                                       len, " bytes (limit ", max_frame, ")"));
      }
      if (in_.size() >= sizeof(len) + len) {
        std::string frame = in_.substr(sizeof(len), len);
        in_.erase(0, sizeof(len) + len);
        return std::optional<std::string>(std::move(frame));
      }
    }
    char buf[4096];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return absl::UnavailableError("connection closed by peer");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<std::string>();
    return StatusFromErrno(errno, "verbs wireup: recv");
  }
}

absl::StatusOr<std::string> WireupConn::RecvFrame(size_t max_frame, absl::Time deadline) {
  while (true) {
    TR_ASSIGN_OR_RETURN(std::optional<std::string> frame, TryRecvFrame(max_frame));
    if (frame.has_value()) return *std::move(frame);
    TR_RETURN_IF_ERROR(PollFd(fd_.get(), POLLIN, deadline, "waiting for the peer's reply"));
  }
}

absl::Status WireupConn::CheckAlive() {
  char c;
  const ssize_t n = ::recv(fd_.get(), &c, 1, MSG_DONTWAIT | MSG_PEEK);
  if (n == 0) return absl::UnavailableError("wireup connection closed (peer process exited)");
  if (n > 0) {
    return absl::InvalidArgumentError(
        "unexpected data on the wireup connection after the handshake");
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return absl::OkStatus();
  return StatusFromErrno(errno, "wireup connection");
}

absl::StatusOr<WireupListener> WireupListener::Listen(const std::string& host, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("verbs wireup: bad IPv4 address '", host, "'"));
  }
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return StatusFromErrno(errno, "verbs wireup: socket");
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return StatusFromErrno(errno, absl::StrCat("verbs wireup: bind ", host, ":", port));
  }
  if (::listen(fd.get(), 128) != 0) return StatusFromErrno(errno, "verbs wireup: listen");
  socklen_t len = sizeof(addr);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return StatusFromErrno(errno, "verbs wireup: getsockname");
  }
  WireupListener l;
  l.fd_ = std::move(fd);
  l.ipv4_ = addr.sin_addr.s_addr;
  l.port_ = ntohs(addr.sin_port);
  return l;
}

absl::StatusOr<std::optional<WireupConn>> WireupListener::TryAccept() {
  while (true) {
    UniqueFd fd(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd.valid()) {
      TuneSocket(fd.get());
      return std::optional<WireupConn>(WireupConn(std::move(fd)));
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<WireupConn>();
    return StatusFromErrno(errno, "verbs wireup: accept");
  }
}

void Backoff::Pause() {
  if (n_ < (1 << 20)) ++n_;
  if (n_ < 64) return;  // spin: completions usually arrive within microseconds
  if (n_ < 256) {
    sched_yield();
    return;
  }
  absl::SleepFor(absl::Microseconds(n_ < 1024 ? 20 : 200));
}

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
