#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/arena/attach_protocol.h"
#include "runtime/arena/unix_socket.h"

namespace tokenrail {
namespace runtime {
namespace {

TEST(AttachProtocolTest, RoundTripsEveryType) {
  AttachMessage hello;
  hello.type = AttachMessageType::kHello;
  hello.seq = 1;
  hello.local_rank = 3;
  hello.pid = 4242;
  auto h = DecodeAttachMessage(EncodeAttachMessage(hello));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->type, AttachMessageType::kHello);
  EXPECT_EQ(h->local_rank, 3);
  EXPECT_EQ(h->pid, 4242);

  AttachMessage welcome;
  welcome.type = AttachMessageType::kWelcome;
  welcome.seq = 1;
  welcome.welcome = {"job-1", 1, 2, 1, 2, 3, 4, 1 << 20, {{0, 0, 4096}, {1, 4096, 100}}};
  auto w = DecodeAttachMessage(EncodeAttachMessage(welcome));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->welcome.job_id, "job-1");
  EXPECT_EQ(w->welcome.global_rank, 3);
  ASSERT_EQ(w->welcome.regions.size(), 2u);
  EXPECT_EQ(w->welcome.regions[1].offset, 4096u);

  auto e = DecodeAttachMessage(
      EncodeAttachMessage(AttachMessage::Error(9, absl::AlreadyExistsError("taken"))));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->seq, 9u);
  EXPECT_EQ(e->error().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(e->error().message(), "taken");

  AttachMessage alloc;
  alloc.type = AttachMessageType::kAllocated;
  alloc.region = {7, 512, 1000};
  auto a = DecodeAttachMessage(EncodeAttachMessage(alloc));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->region.id, 7u);
  EXPECT_EQ(a->region.size, 1000u);
}

TEST(AttachProtocolTest, RejectsMalformedInputWithoutCrashing) {
  AttachMessage welcome;
  welcome.type = AttachMessageType::kWelcome;
  welcome.welcome = {"j", 0, 1, 0, 1, 0, 1, 1 << 20, {}};
  const std::string good = EncodeAttachMessage(welcome);
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_EQ(DecodeAttachMessage(good.substr(0, len)).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  std::string flipped = good;
  flipped[20] ^= 0x40;
  EXPECT_EQ(DecodeAttachMessage(flipped).status().code(), absl::StatusCode::kInvalidArgument);

  // Inconsistent topology inside a well-formed blob.
  welcome.welcome.global_rank = 5;
  auto bad = DecodeAttachMessage(EncodeAttachMessage(welcome));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("inconsistent topology"), std::string::npos);
}

class UnixSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat("/tmp/tr-attach-test-", ::getpid(), ".sock");
    ::unlink(path_.c_str());
  }
  void TearDown() override { ::unlink(path_.c_str()); }
  std::string path_;
};

TEST_F(UnixSocketTest, ListensWithMode0600AndPassesFds) {
  auto listener = ListenSeqpacket(path_);
  ASSERT_TRUE(listener.ok()) << listener.status();
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto client = ConnectSeqpacket(path_, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(WaitReadable(listener->get(), absl::Seconds(5)).value());
  auto server = AcceptSeqpacket(listener->get());
  ASSERT_TRUE(server.ok() && server->valid());
  auto cred = GetPeerCredentials(server->get());
  ASSERT_TRUE(cred.ok());
  EXPECT_EQ(cred->uid, ::getuid());
  EXPECT_EQ(cred->pid, ::getpid());

  UniqueFd memfd(::memfd_create("x", MFD_CLOEXEC));
  absl::Status sent = SendPacket(server->get(), "hello", memfd.get());
  ASSERT_TRUE(sent.ok()) << sent;
  auto p = ReceivePacket(client->get(), 1024, true);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->data, "hello");
  EXPECT_TRUE(p->fd.valid());
  EXPECT_FALSE(PeerClosed(client->get()));

  // A second listener on a live path is refused (its probe connection is
  // accepted and dropped here).
  EXPECT_EQ(ListenSeqpacket(path_).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(WaitReadable(listener->get(), absl::Seconds(5)).value());
  EXPECT_TRUE(AcceptSeqpacket(listener->get()).ok());

  // Oversize messages are refused, not truncated silently.
  ASSERT_TRUE(SendPacket(server->get(), std::string(2000, 'x')).ok());
  EXPECT_EQ(ReceivePacket(client->get(), 1024, true).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Non-blocking receive with nothing waiting; then EOF after close.
  auto none = ReceivePacket(client->get(), 1024, false);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->eof);
  EXPECT_TRUE(none->data.empty());
  server->Reset();
  EXPECT_TRUE(PeerClosed(client->get()));
  auto eof = ReceivePacket(client->get(), 1024, true);
  ASSERT_TRUE(eof.ok());
  EXPECT_TRUE(eof->eof);

  // After the listener closes, its stale file is replaced by a new listener.
  listener->Reset();
  auto again = ListenSeqpacket(path_);
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_F(UnixSocketTest, ConnectTimesOutNamingThePath) {
  auto c = ConnectSeqpacket(path_, absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(c.status().message().find(path_), std::string::npos);
  auto longpath = ListenSeqpacket(std::string(200, 'a'));
  EXPECT_EQ(longpath.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace runtime
}  // namespace tokenrail
