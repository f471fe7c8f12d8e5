#include "transport/conformance/peer_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace {

// The peer binary, a data dependency set by transport_conformance_test
// (defs.bzl) relative to the runfiles root, which is the test's working dir.
std::string PeerBinaryPath() {
  const char* path = std::getenv("TR_CONFORMANCE_PEER");
  return path != nullptr ? path : "conformance_peer";
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerProcess>> PeerProcess::Spawn(const ConformanceConfig& config) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return StatusFromErrno(errno, "socketpair");
  }
  std::vector<std::string> params;
  for (const auto& [k, v] : config.params) params.push_back(absl::StrCat(k, "=", v));
  const std::string path = PeerBinaryPath();
  std::vector<std::string> args = {path, absl::StrCat("--backend=", config.backend),
                                   absl::StrCat("--params=", absl::StrJoin(params, ",")),
                                   absl::StrCat("--oob_fd=", fds[1])};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) return StatusFromErrno(errno, "fork");
  if (pid == 0) {
    ::fcntl(fds[1], F_SETFD, 0);  // keep the peer's end across exec
    ::execv(path.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  return std::unique_ptr<PeerProcess>(new PeerProcess(pid, OobChannel(UniqueFd(fds[0]))));
}

PeerProcess::~PeerProcess() { Kill(); }

void PeerProcess::Kill() {
  const pid_t pid = pid_.exchange(-1);
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

absl::StatusOr<std::string> PeerProcess::Await(Context* progress, absl::Time deadline) {
  for (int idle = 0;; ++idle) {
    pollfd p{oob_.fd(), POLLIN, 0};
    const int rc = ::poll(&p, 1, idle < 2000 ? 0 : 1);
    if (rc > 0) {
      TR_ASSIGN_OR_RETURN(std::string frame, oob_.Recv(deadline));
      return DecodeReply(frame);
    }
    if (progress != nullptr) progress->Progress().IgnoreError();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError("timed out waiting for the peer process");
    }
  }
}

absl::StatusOr<std::string> PeerProcess::Call(const PeerCommand& cmd, Context* progress,
                                              absl::Time deadline) {
  TR_RETURN_IF_ERROR(Send(cmd));
  return Await(progress, deadline);
}

}  // namespace transport
}  // namespace tokenrail
