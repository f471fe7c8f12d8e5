// A SIGKILLed peer must turn into a sticky Unavailable on the survivor within
// seconds: through the transport's error (TCP reset) and through UCX
// keepalive where no connection breaks (shared memory).
//
// The peer is a forked child that re-executes this binary in peer mode (a
// fresh process image, so no UCX state is inherited across fork), connects
// back over a socketpair-bootstrapped exchange, and is then killed.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "transport/ucx/ucx_test_util.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

constexpr char kPeerFdEnv[] = "TR_UCX_FAILURE_PEER_FD";
constexpr char kPeerTlsEnv[] = "TR_UCX_FAILURE_PEER_TLS";
constexpr size_t kRegion = 1 << 20;

bool WriteAll(int fd, const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t len) {
  char* p = static_cast<char*>(data);
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool WriteFrame(int fd, const std::string& s) {
  const uint32_t len = static_cast<uint32_t>(s.size());
  return WriteAll(fd, &len, sizeof(len)) && WriteAll(fd, s.data(), s.size());
}

bool ReadFrame(int fd, std::string* s) {
  uint32_t len = 0;
  if (!ReadAll(fd, &len, sizeof(len)) || len > (1u << 20)) return false;
  s->resize(len);
  return ReadAll(fd, s->data(), len);
}

std::map<std::string, std::string> ParamsFor(const std::string& tls) {
  if (tls.empty()) return {};
  return {{"tls", tls}};
}

// Peer mode: connect to the parent, publish a region, progress until killed.
int RunPeer(int fd, const std::string& tls) {
  absl::StatusOr<std::unique_ptr<Context>> ctx = MakeUcxContext("child", ParamsFor(tls));
  if (!ctx.ok()) {
    fprintf(stderr, "child: %s\n", ctx.status().ToString().c_str());
    return 1;
  }
  std::string parent;
  if (!WriteFrame(fd, (*ctx)->address()) || !ReadFrame(fd, &parent)) return 2;
  absl::StatusOr<std::unique_ptr<Endpoint>> ep =
      (*ctx)->Connect(parent, absl::Now() + absl::Seconds(30));
  if (!ep.ok()) {
    fprintf(stderr, "child: %s\n", ep.status().ToString().c_str());
    return 3;
  }
  absl::StatusOr<std::unique_ptr<MemoryRegion>> region =
      (*ctx)->AllocateMemory(kRegion, MemoryKind::kHost);
  if (!region.ok() || !WriteFrame(fd, *(*region)->PackRemoteKey())) return 4;
  for (;;) (void)(*ep)->WaitMessage(absl::Now() + absl::Hours(1));
}

class UcxPeerDeathTest : public ::testing::TestWithParam<std::string> {};

TEST_P(UcxPeerDeathTest, SigkilledPeerBecomesStickyUnavailable) {
  const std::string tls = GetParam();
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(sv[0]);
    const int fd = dup(sv[1]);  // without CLOEXEC: survives the exec
    setenv(kPeerFdEnv, std::to_string(fd).c_str(), 1);
    setenv(kPeerTlsEnv, tls.c_str(), 1);
    execl("/proc/self/exe", "ucx_failure_peer", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(sv[1]);
  const int fd = sv[0];
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
  } reaper{pid};

  absl::StatusOr<std::unique_ptr<Context>> ctx = MakeUcxContext("parent", ParamsFor(tls));
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  std::string child_address, key;
  ASSERT_TRUE(WriteFrame(fd, (*ctx)->address()));
  ASSERT_TRUE(ReadFrame(fd, &child_address)) << "child did not start";
  absl::StatusOr<std::unique_ptr<Endpoint>> ep =
      (*ctx)->Connect(child_address, absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(ep.ok()) << ep.status();
  ASSERT_TRUE(ReadFrame(fd, &key));
  absl::StatusOr<std::unique_ptr<RemoteRegion>> remote = (*ep)->UnpackRemoteKey(key);
  ASSERT_TRUE(remote.ok()) << remote.status();
  absl::StatusOr<std::unique_ptr<MemoryRegion>> src =
      (*ctx)->AllocateMemory(kRegion, MemoryKind::kHost);
  ASSERT_TRUE(src.ok()) << src.status();

  // The pair works.
  absl::StatusOr<Ticket> t = (*ep)->Put(**src, 0, **remote, 0, kRegion, 1);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE((*ep)->WaitComplete(*t, absl::Now() + absl::Seconds(10)).ok());
  ASSERT_TRUE((*ep)->Flush(absl::Now() + absl::Seconds(10)).ok());

  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  reaper.pid = 0;
  const absl::Time killed = absl::Now();

  // Posted after the death but before it is noticed: pending, then failed.
  absl::StatusOr<Ticket> pending = (*ep)->Put(**src, 0, **remote, 0, kRegion, 2);

  absl::StatusOr<Notification> n = (*ep)->WaitNotification(killed + absl::Seconds(10));
  const absl::Duration detected = absl::Now() - killed;
  ASSERT_EQ(n.status().code(), absl::StatusCode::kUnavailable) << n.status();
  EXPECT_LT(detected, absl::Seconds(10));
  std::fprintf(stderr, "tls='%s': peer death detected after %s: %s\n", tls.c_str(),
               absl::FormatDuration(detected).c_str(), n.status().ToString().c_str());
  EXPECT_TRUE(absl::StrContains(n.status().message(), "'child'")) << n.status();

  // Sticky: every pending and later operation returns it.
  const absl::Time soon = absl::Now() + absl::Seconds(1);
  EXPECT_EQ((*ep)->status().code(), absl::StatusCode::kUnavailable);
  if (pending.ok()) {
    EXPECT_EQ((*ep)->WaitComplete(*pending, soon).code(), absl::StatusCode::kUnavailable);
  } else {
    EXPECT_EQ(pending.status().code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ((*ep)->WaitComplete(*t, soon).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*ep)->Put(**src, 0, **remote, 0, 8, 3).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ((*ep)->Flush(soon).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*ep)->SendMessage("x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*ep)->WaitMessage(soon).status().code(), absl::StatusCode::kUnavailable);
  Notification out;
  EXPECT_EQ((*ep)->PollNotifications(&out, 1).status().code(), absl::StatusCode::kUnavailable);
  std::string msg;
  EXPECT_EQ((*ep)->PollMessage(&msg).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*ep)->UnpackRemoteKey(key).status().code(), absl::StatusCode::kUnavailable);
  close(fd);
}

INSTANTIATE_TEST_SUITE_P(Transports, UcxPeerDeathTest, ::testing::Values("tcp", "", "shm"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           if (info.param.empty()) return std::string("DefaultTransports");
                           return info.param == "tcp" ? std::string("Tcp")
                                                      : std::string("SharedMemoryOnly");
                         });

}  // namespace
}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

int main(int argc, char** argv) {
  // Peer mode (see RunPeer): this binary re-executed by the test's child.
  if (const char* fd_env = getenv(tokenrail::transport::ucx::kPeerFdEnv)) {
    int fd = -1;
    if (!absl::SimpleAtoi(fd_env, &fd)) return 100;
    const char* tls = getenv(tokenrail::transport::ucx::kPeerTlsEnv);
    return tokenrail::transport::ucx::RunPeer(fd, tls != nullptr ? tls : "");
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
