#include "transport/oob.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace {

absl::StatusOr<sockaddr_in> Resolve(const std::string& host, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) == 1) return addr;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("oob: cannot resolve host '", host, "'"));
  }
  addr.sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
  freeaddrinfo(res);
  return addr;
}

int MillisUntil(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
}

absl::Status WaitReadable(int fd, absl::Time deadline, absl::string_view what) {
  pollfd p{fd, POLLIN, 0};
  while (true) {
    const int rc = ::poll(&p, 1, MillisUntil(deadline));
    if (rc > 0) return absl::OkStatus();
    if (rc == 0) return absl::DeadlineExceededError(absl::StrCat("oob: timed out in ", what));
    if (errno != EINTR) return StatusFromErrno(errno, absl::StrCat("oob: poll in ", what));
  }
}

}  // namespace

absl::StatusOr<OobListener> OobListener::Listen(const std::string& host, uint16_t port) {
  TR_ASSIGN_OR_RETURN(sockaddr_in addr, Resolve(host, port));
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return StatusFromErrno(errno, "oob: socket");
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return StatusFromErrno(errno, absl::StrCat("oob: bind ", host, ":", port));
  }
  if (::listen(fd.get(), 64) != 0) return StatusFromErrno(errno, "oob: listen");
  socklen_t len = sizeof(addr);
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return OobListener(std::move(fd), ntohs(addr.sin_port));
}

absl::StatusOr<OobChannel> OobListener::Accept(absl::Time deadline) {
  TR_RETURN_IF_ERROR(WaitReadable(fd_.get(), deadline, "accept"));
  UniqueFd fd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!fd.valid()) return StatusFromErrno(errno, "oob: accept");
  const int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return OobChannel(std::move(fd));
}

absl::StatusOr<OobChannel> OobChannel::Connect(const std::string& host, uint16_t port,
                                               absl::Time deadline) {
  TR_ASSIGN_OR_RETURN(sockaddr_in addr, Resolve(host, port));
  while (true) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return StatusFromErrno(errno, "oob: socket");
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      const int one = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return OobChannel(std::move(fd));
    }
    const int err = errno;
    if ((err != ECONNREFUSED && err != ENETUNREACH) || absl::Now() >= deadline) {
      return StatusFromErrno(err, absl::StrCat("oob: connect to ", host, ":", port));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status OobChannel::Send(absl::string_view frame) {
  if (frame.size() > kMaxFrame) {
    return absl::InvalidArgumentError(absl::StrCat("oob: frame of ", frame.size(), " bytes"));
  }
  const uint64_t len = frame.size();
  std::string buf(reinterpret_cast<const char*>(&len), sizeof(len));
  buf.append(frame.data(), frame.size());
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = ::send(fd_.get(), buf.data() + done, buf.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return StatusFromErrno(errno, "oob: send");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status OobChannel::ReadFull(char* buf, size_t len, absl::Time deadline) {
  size_t done = 0;
  while (done < len) {
    TR_RETURN_IF_ERROR(WaitReadable(fd_.get(), deadline, "recv"));
    const ssize_t n = ::recv(fd_.get(), buf + done, len - done, 0);
    if (n == 0) return absl::UnavailableError("oob: peer closed the channel");
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return StatusFromErrno(errno, "oob: recv");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> OobChannel::Recv(absl::Time deadline) {
  uint64_t len = 0;
  TR_RETURN_IF_ERROR(ReadFull(reinterpret_cast<char*>(&len), sizeof(len), deadline));
  if (len > kMaxFrame) {
    return absl::InvalidArgumentError(absl::StrCat("oob: peer sent a frame of ", len, " bytes"));
  }
  std::string out(len, '\0');
  TR_RETURN_IF_ERROR(ReadFull(out.data(), len, deadline));
  return out;
}

absl::StatusOr<std::string> OobChannel::Exchange(absl::string_view mine, absl::Time deadline) {
  TR_RETURN_IF_ERROR(Send(mine));
  return Recv(deadline);
}

}  // namespace transport
}  // namespace tokenrail
