#include "runtime/arena/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status.h"

namespace tokenrail {
namespace runtime {
namespace {

absl::StatusOr<sockaddr_un> MakeAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path '", path, "' has ",
                                                   path.size(), " bytes; it must have 1..",
                                                   sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// True when something accepts connections at `addr` right now.
bool SomeoneListens(const sockaddr_un& addr) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return false;
  return ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
}

}  // namespace

absl::StatusOr<UniqueFd> ListenSeqpacket(const std::string& path) {
  TR_ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(path));
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(
          absl::StrCat("rank socket path ", path, " exists and is not a socket"));
    }
    if (SomeoneListens(addr)) {
      return absl::AlreadyExistsError(
          absl::StrCat("another daemon already serves the rank socket ", path));
    }
    ::unlink(path.c_str());  // stale: its daemon died without cleaning up
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return StatusFromErrno(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return StatusFromErrno(errno, absl::StrCat("bind ", path));
  }
  // Connections need listen(); restricting the mode first closes the window
  // in which another user could connect.
  if (::chmod(path.c_str(), 0600) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return StatusFromErrno(err, absl::StrCat("chmod 0600 ", path));
  }
  if (::listen(fd.get(), 128) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return StatusFromErrno(err, absl::StrCat("listen ", path));
  }
  return fd;
}

absl::StatusOr<UniqueFd> ConnectSeqpacket(const std::string& path, absl::Time deadline) {
  TR_ASSIGN_OR_RETURN(sockaddr_un addr, MakeAddress(path));
  absl::Duration pause = absl::Milliseconds(1);
  for (;;) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return StatusFromErrno(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
      return fd;
    }
    const int err = errno;
    if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN) {
      return StatusFromErrno(err, absl::StrCat("connect to the daemon socket ", path));
    }
    if (absl::Now() + pause > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no tokenraild is listening on ", path,
                                                      " (last error: ", std::strerror(err), ")"));
    }
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(pause));
    pause = std::min(pause * 2, absl::Milliseconds(100));
  }
}

absl::StatusOr<UniqueFd> AcceptSeqpacket(int listen_fd) {
  UniqueFd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
  if (fd.valid()) return fd;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
    return UniqueFd();
  }
  return StatusFromErrno(errno, "accept on the rank socket");
}

absl::StatusOr<PeerCredentials> GetPeerCredentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return StatusFromErrno(errno, "getsockopt(SO_PEERCRED)");
  }
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

absl::Status SendPacket(int fd, absl::string_view message, int pass_fd) {
  iovec iov{const_cast<char*>(message.data()), message.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (pass_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  for (;;) {
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(message.size())) return absl::OkStatus();
    if (n >= 0) return absl::InternalError("short send on a seqpacket socket");
    if (errno == EINTR) continue;
    return StatusFromErrno(errno, "send on the rank socket");
  }
}

absl::StatusOr<Packet> ReceivePacket(int fd, size_t max_size, bool block) {
  Packet p;
  p.data.resize(max_size + 1);  // one spare byte tells an oversize message
  iovec iov{p.data.data(), p.data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | (block ? 0 : MSG_DONTWAIT));
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (!block && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      p.data.clear();
      return p;
    }
    if (errno == ECONNRESET) {
      p.eof = true;
      p.data.clear();
      return p;
    }
    return StatusFromErrno(errno, "receive on the rank socket");
  }
  // Take ownership of every passed fd before looking at anything else, so
  // none leaks on an error path.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (!p.fd.valid()) {
        p.fd.Reset(received);
      } else {
        ::close(received);  // only one fd per message is expected
      }
    }
  }
  if (n == 0) {
    p.eof = true;
    p.data.clear();
    return p;
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || static_cast<size_t>(n) > max_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank socket message exceeds ", max_size, " bytes"));
  }
  p.data.resize(static_cast<size_t>(n));
  return p;
}

absl::StatusOr<bool> WaitReadable(int fd, absl::Duration timeout) {
  pollfd pfd{fd, POLLIN, 0};
  const int ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout)));
  const int rc = ::poll(&pfd, 1, ms);
  if (rc < 0) {
    if (errno == EINTR) return false;
    return StatusFromErrno(errno, "poll on the rank socket");
  }
  return rc > 0;
}

bool PeerClosed(int fd) {
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  return false;
}

}  // namespace runtime
}  // namespace tokenrail
