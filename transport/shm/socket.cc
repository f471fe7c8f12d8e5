#include "transport/shm/socket.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

constexpr size_t kFrameHeader = 8;
constexpr size_t kMaxFramePayload = 64 << 10;
constexpr size_t kMaxFdsPerRead = 16;
constexpr size_t kReadChunk = 16 << 10;
constexpr size_t kMaxReadPerCall = 1 << 20;  // bounds the time one Receive spends

// A sockaddr for `path`; when it is too long for sun_path, the address goes
// through /proc/self/fd/<dir fd>/<base> and `dir` keeps that directory open
// until the bind/connect is done.
struct UnixAddress {
  sockaddr_un addr{};
  socklen_t len = 0;
  UniqueFd dir;
};

absl::StatusOr<UnixAddress> MakeAddress(const std::string& path) {
  UnixAddress a;
  a.addr.sun_family = AF_UNIX;
  std::string target = path;
  if (target.size() >= sizeof(a.addr.sun_path)) {
    const size_t slash = path.rfind('/');
    const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    a.dir.Reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!a.dir.valid()) return StatusFromErrno(errno, absl::StrCat("shm: open directory ", dir));
    target = absl::StrCat("/proc/self/fd/", a.dir.get(), path.substr(slash));
    if (target.size() >= sizeof(a.addr.sun_path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("shm: socket name in '", path, "' is too long for a unix socket"));
    }
  }
  std::memcpy(a.addr.sun_path, target.c_str(), target.size() + 1);
  a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + target.size() + 1);
  return a;
}

absl::StatusOr<UniqueFd> NewSocket() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return StatusFromErrno(errno, "shm: socket(AF_UNIX)");
  return fd;
}

}  // namespace

absl::StatusOr<UniqueFd> ListenUnix(const std::string& path) {
  TR_ASSIGN_OR_RETURN(UnixAddress a, MakeAddress(path));
  TR_ASSIGN_OR_RETURN(UniqueFd fd, NewSocket());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a.addr), a.len) != 0) {
    return StatusFromErrno(errno, absl::StrCat("shm: bind ", path));
  }
  // Nobody can connect before listen(), so tightening the mode here leaves
  // no window in which another user could reach the socket.
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), SOMAXCONN) != 0) {
    absl::Status s = StatusFromErrno(errno, absl::StrCat("shm: chmod/listen ", path));
    ::unlink(path.c_str());
    return s;
  }
  return fd;
}

absl::StatusOr<UniqueFd> ConnectUnix(const std::string& path) {
  TR_ASSIGN_OR_RETURN(UnixAddress a, MakeAddress(path));
  TR_ASSIGN_OR_RETURN(UniqueFd fd, NewSocket());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a.addr), a.len) != 0) {
    const int e = errno;
    absl::Status s = StatusFromErrno(e, absl::StrCat("connect to ", path));
    if (e == EAGAIN) return absl::ResourceExhaustedError(s.message());
    if (e == ENOENT || e == ECONNREFUSED) {
      return absl::UnavailableError(absl::StrCat(
          s.message(),
          ": nobody listens there (the peer's context was destroyed or its "
          "process died; or the path is not visible from here: use a shared shm dir)"));
    }
    return s;
  }
  return fd;
}

int RemoveStaleSockets(const std::string& dir, const std::string& prefix) {
  constexpr time_t kMinAgeSeconds = 60;  // far beyond a context's bind-to-listen gap
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  int removed = 0;
  const time_t now = ::time(nullptr);
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (!absl::StartsWith(name, prefix) || !absl::EndsWith(name, ".sock")) continue;
    const std::string path = absl::StrCat(dir, "/", name);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != ::geteuid() ||
        now - st.st_mtime < kMinAgeSeconds) {
      continue;
    }
    absl::StatusOr<UnixAddress> a = MakeAddress(path);
    absl::StatusOr<UniqueFd> fd = NewSocket();
    if (!a.ok() || !fd.ok()) continue;
    if (::connect(fd->get(), reinterpret_cast<sockaddr*>(&a->addr), a->len) != 0 &&
        errno == ECONNREFUSED && ::unlink(path.c_str()) == 0) {
      ++removed;
    }
  }
  ::closedir(d);
  return removed;
}

absl::StatusOr<UniqueFd> AcceptUnix(int listen_fd) {
  UniqueFd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (fd.valid()) return fd;
  const int e = errno;
  // ECONNABORTED: the client gave up before we accepted; nothing to do.
  if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED) return UniqueFd();
  return StatusFromErrno(e, "shm: accept on the listening socket");
}

absl::Status SocketChannel::Send(FrameType type, absl::string_view payload, UniqueFd fd) {
  OutFrame f;
  f.bytes.reserve(kFrameHeader + payload.size());
  const uint32_t header[2] = {static_cast<uint32_t>(type), static_cast<uint32_t>(payload.size())};
  f.bytes.append(reinterpret_cast<const char*>(header), sizeof(header));
  f.bytes.append(payload.data(), payload.size());
  f.fd = std::move(fd);
  out_.push_back(std::move(f));
  return Flush();
}

absl::Status SocketChannel::Flush() {
  while (!out_.empty()) {
    OutFrame& f = out_.front();
    iovec iov{f.bytes.data() + f.sent, f.bytes.size() - f.sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (f.sent == 0 && f.fd.valid()) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      const int raw = f.fd.get();
      std::memcpy(CMSG_DATA(c), &raw, sizeof(int));
    }
    const ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return absl::OkStatus();
      if (errno == EINTR) continue;
      return StatusFromErrno(errno, "shm: send on the side channel");
    }
    f.sent += static_cast<size_t>(n);
    if (n > 0) f.fd.Reset();  // the kernel holds its own reference now
    if (f.sent == f.bytes.size()) out_.pop_front();
  }
  return absl::OkStatus();
}

absl::Status SocketChannel::ReadAvailable() {
  size_t total = 0;
  while (!eof_ && total < kMaxReadPerCall) {
    char buf[kReadChunk];
    iovec iov{buf, sizeof(buf)};
    alignas(cmsghdr) char control[CMSG_SPACE(kMaxFdsPerRead * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    const int e = errno;
    if (n > 0) in_.append(buf, static_cast<size_t>(n));
    if (n < 0) {
      if (e == EAGAIN || e == EWOULDBLOCK) return absl::OkStatus();
      if (e == EINTR) continue;
      return StatusFromErrno(e, "shm: receive on the side channel");
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int raw;
        std::memcpy(&raw, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        in_fds_.emplace_back(raw);
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
      return absl::DataLossError(
          "shm: the kernel dropped file descriptors sent by the peer (fd limit reached?)");
    }
    if (n == 0) eof_ = true;
    total += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Frame>> SocketChannel::Receive() {
  if (read_error_.ok()) read_error_ = ReadAvailable();
  if (in_.size() >= kFrameHeader) {
    uint32_t header[2];
    std::memcpy(header, in_.data(), sizeof(header));
    const auto type = static_cast<FrameType>(header[0]);
    if (header[0] < static_cast<uint32_t>(FrameType::kHello) ||
        header[0] > static_cast<uint32_t>(FrameType::kWake) || header[1] > kMaxFramePayload) {
      return absl::DataLossError(absl::StrCat("shm: malformed side-channel frame (type ", header[0],
                                              ", length ", header[1], ")"));
    }
    if (in_.size() >= kFrameHeader + header[1]) {
      Frame f;
      f.type = type;
      f.payload = in_.substr(kFrameHeader, header[1]);
      in_.erase(0, kFrameHeader + header[1]);
      if (FrameCarriesFd(type)) {
        if (in_fds_.empty()) {
          return absl::DataLossError(absl::StrCat("shm: side-channel frame of type ", header[0],
                                                  " arrived without its file descriptor"));
        }
        f.fd = std::move(in_fds_.front());
        in_fds_.pop_front();
      }
      return std::optional<Frame>(std::move(f));
    }
  }
  if (!read_error_.ok()) return read_error_;
  if (eof_) return absl::UnavailableError("connection closed");
  return std::optional<Frame>();
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
