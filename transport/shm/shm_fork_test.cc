// Peer-death tests: the peer is a forked child process that the test kills.
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "transport/registry.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

// The survivor must see Unavailable within this bound (the conformance suite
// allows 10 s; the shm side channel reports death at once).
constexpr absl::Duration kDeathBound = absl::Seconds(3);

bool WriteFrame(int fd, const std::string& s) {
  const uint32_t len = static_cast<uint32_t>(s.size());
  std::string buf(reinterpret_cast<const char*>(&len), 4);
  buf += s;
  for (size_t off = 0; off < buf.size();) {
    const ssize_t n = ::write(fd, buf.data() + off, buf.size() - off);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool ReadFull(int fd, char* p, size_t len) {
  while (len > 0) {
    const ssize_t n = ::read(fd, p, len);
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadFrame(int fd, std::string* s) {
  uint32_t len;
  if (!ReadFull(fd, reinterpret_cast<char*>(&len), 4)) return false;
  s->resize(len);
  return ReadFull(fd, s->data(), len);
}

enum class ChildEnd { kRunForever, kExitAfterSetup };

// The child: connects back, offers a 4 MiB target region, echoes messages and
// consumes notifications until killed. Never returns into gtest.
[[noreturn]] void ChildMain(int fd, const std::string& dir, ChildEnd end) {
  TransportOptions o;
  o.name = "child";
  o.params["dir"] = dir;
  absl::StatusOr<std::unique_ptr<Context>> ctx = CreateContext("shm", o);
  if (!ctx.ok()) ::_exit(2);
  std::string parent_address;
  if (!WriteFrame(fd, (*ctx)->address()) || !ReadFrame(fd, &parent_address)) ::_exit(3);
  absl::StatusOr<std::unique_ptr<Endpoint>> ep =
      (*ctx)->Connect(parent_address, absl::Now() + absl::Seconds(30));
  if (!ep.ok()) ::_exit(4);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> region =
      (*ctx)->AllocateMemory(4 << 20, MemoryKind::kHost);
  if (!region.ok() || !WriteFrame(fd, *(*region)->PackRemoteKey())) ::_exit(5);
  if (end == ChildEnd::kExitAfterSetup) {
    std::string go;
    ReadFrame(fd, &go);
    ::_exit(0);  // no destructors: like a crash, the kernel cleans up
  }
  Notification n[64];
  std::string msg;
  while (true) {
    if (!(*ep)->PollNotifications(n, 64).ok()) ::_exit(6);
    absl::StatusOr<bool> got = (*ep)->PollMessage(&msg);
    if (!got.ok()) ::_exit(7);
    if (*got && !(*ep)->SendMessage(msg).ok()) ::_exit(8);
  }
}

class ShmForkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shm_fork_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    ep_.reset();
    region_.reset();
    ctx_.reset();
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (sock_ >= 0) ::close(sock_);
    // The killed child could not unlink its socket file.
    ::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  void StartChild(ChildEnd end) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::close(sv[0]);
      ChildMain(sv[1], dir_, end);
    }
    ::close(sv[1]);
    sock_ = sv[0];
    TransportOptions o;
    o.name = "parent";
    o.params["dir"] = dir_;
    absl::StatusOr<std::unique_ptr<Context>> ctx = CreateContext("shm", o);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    ctx_ = std::move(*ctx);
    std::string child_address, key;
    ASSERT_TRUE(ReadFrame(sock_, &child_address));
    ASSERT_TRUE(WriteFrame(sock_, ctx_->address()));
    absl::StatusOr<std::unique_ptr<Endpoint>> ep =
        ctx_->Connect(child_address, absl::Now() + absl::Seconds(30));
    ASSERT_TRUE(ep.ok()) << ep.status();
    ep_ = std::move(*ep);
    ASSERT_TRUE(ReadFrame(sock_, &key));
    absl::StatusOr<std::unique_ptr<RemoteRegion>> remote = ep_->UnpackRemoteKey(key);
    ASSERT_TRUE(remote.ok()) << remote.status();
    remote_ = std::move(*remote);
    src_buf_.assign(1 << 20, 0x5c);
    absl::StatusOr<std::unique_ptr<MemoryRegion>> src =
        ctx_->RegisterMemory(src_buf_.data(), src_buf_.size(), MemoryKind::kHost);
    ASSERT_TRUE(src.ok()) << src.status();
    region_ = std::move(*src);
  }

  // Every operation on the endpoint returns the same Unavailable, promptly.
  void ExpectStickyUnavailable(const absl::Status& first) {
    EXPECT_EQ(first.code(), absl::StatusCode::kUnavailable) << first;
    EXPECT_NE(first.message().find("peer 'child'"), absl::string_view::npos) << first;
    const absl::Time start = absl::Now();
    const absl::Time later = start + absl::Seconds(30);
    EXPECT_EQ(ep_->status(), first);
    EXPECT_EQ(ep_->Put(*region_, 0, *remote_, 0, 8, 1).status(), first);
    EXPECT_EQ(ep_->Flush(later), first);
    EXPECT_EQ(ep_->WaitNotification(later).status(), first);
    EXPECT_EQ(ep_->SendMessage("x"), first);
    EXPECT_EQ(ep_->WaitMessage(later).status(), first);
    EXPECT_EQ(ep_->WaitComplete(1, later), first);
    EXPECT_LT(absl::Now() - start, absl::Seconds(5))
        << "a failed endpoint must not wait for its 30 s deadlines";
  }

  std::string dir_;
  pid_t pid_ = -1;
  int sock_ = -1;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<Endpoint> ep_;
  std::unique_ptr<RemoteRegion> remote_;
  std::vector<uint8_t> src_buf_;
  std::unique_ptr<MemoryRegion> region_;
};

TEST_F(ShmForkTest, KilledPeerFailsAWaitingSurvivor) {
  ASSERT_NO_FATAL_FAILURE(StartChild(ChildEnd::kRunForever));
  // Prove the child is alive and serving before killing it.
  ASSERT_TRUE(ep_->SendMessage("ping").ok());
  absl::StatusOr<std::string> echo = ep_->WaitMessage(absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(*echo, "ping");
  ASSERT_EQ(::kill(pid_, SIGKILL), 0);
  const absl::Time killed = absl::Now();
  absl::StatusOr<Notification> n = ep_->WaitNotification(killed + absl::Seconds(60));
  const absl::Duration took = absl::Now() - killed;
  ASSERT_FALSE(n.ok());
  EXPECT_LE(took, kDeathBound);
  std::printf("survivor saw the death after %s\n", absl::FormatDuration(took).c_str());
  ExpectStickyUnavailable(n.status());
}

TEST_F(ShmForkTest, KilledPeerFailsASurvivorThatOnlyPuts) {
  ASSERT_NO_FATAL_FAILURE(StartChild(ChildEnd::kRunForever));
  absl::Time killed = absl::InfiniteFuture();
  absl::Status first;
  for (uint32_t i = 0; absl::Now() < killed + kDeathBound + absl::Seconds(2); ++i) {
    if (i == 100) {
      ASSERT_EQ(::kill(pid_, SIGKILL), 0);
      killed = absl::Now();
    }
    // Puts only: no Progress, no waits. The periodic side-channel check and
    // the full ring must still surface the death.
    first = ep_->Put(*region_, 0, *remote_, (i % 4) << 20, 1 << 20, i).status();
    if (!first.ok()) break;
  }
  ASSERT_FALSE(first.ok()) << "puts kept succeeding after the peer died";
  EXPECT_LE(absl::Now() - killed, kDeathBound);
  ExpectStickyUnavailable(first);
}

TEST_F(ShmForkTest, PeerThatExitsWithoutCleanupFailsTheSurvivor) {
  ASSERT_NO_FATAL_FAILURE(StartChild(ChildEnd::kExitAfterSetup));
  ASSERT_TRUE(WriteFrame(sock_, "exit"));
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> m = ep_->WaitMessage(start + absl::Seconds(60));
  ASSERT_FALSE(m.ok());
  EXPECT_LE(absl::Now() - start, kDeathBound);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid_, &wstatus, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  ExpectStickyUnavailable(m.status());
}

}  // namespace
}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
