// The TCP wireup channel on loopback: framing, partial reads, EOF as peer
// death, oversized frames, deadlines.
#include "transport/verbs/wireup.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "gtest/gtest.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

uint32_t Loopback() { return htonl(INADDR_LOOPBACK); }

struct Pair {
  WireupConn dialer;
  WireupConn acceptor;
};

Pair Connect(WireupListener& l) {
  absl::StatusOr<WireupConn> d =
      WireupConn::Dial(Loopback(), l.port(), absl::Now() + absl::Seconds(5));
  EXPECT_TRUE(d.ok()) << d.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    absl::StatusOr<std::optional<WireupConn>> a = l.TryAccept();
    EXPECT_TRUE(a.ok()) << a.status();
    if (a->has_value()) return Pair{*std::move(d), std::move(**a)};
    absl::SleepFor(absl::Milliseconds(1));
  }
  ADD_FAILURE() << "accept timed out";
  return Pair{*std::move(d), WireupConn(UniqueFd())};
}

TEST(VerbsWireupTest, ListenerReportsAddress) {
  absl::StatusOr<WireupListener> l = WireupListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_NE(l->port(), 0);
  EXPECT_EQ(l->ipv4(), Loopback());
  absl::StatusOr<std::optional<WireupConn>> none = l->TryAccept();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(WireupListener::Listen("not-an-ip", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VerbsWireupTest, FramesBothWays) {
  absl::StatusOr<WireupListener> l = WireupListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(l.ok());
  Pair p = Connect(*l);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  ASSERT_TRUE(p.dialer.SendFrame("hello", deadline).ok());
  ASSERT_TRUE(p.dialer.SendFrame("", deadline).ok());
  ASSERT_TRUE(p.dialer.SendFrame(std::string(3000, 'q'), deadline).ok());
  absl::StatusOr<std::string> f = p.acceptor.RecvFrame(4096, deadline);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f, "hello");
  f = p.acceptor.RecvFrame(4096, deadline);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, "");
  f = p.acceptor.RecvFrame(4096, deadline);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, std::string(3000, 'q'));
  ASSERT_TRUE(p.acceptor.SendFrame("reply", deadline).ok());
  f = p.dialer.RecvFrame(4096, deadline);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, "reply");
  EXPECT_TRUE(p.dialer.CheckAlive().ok());
  EXPECT_TRUE(p.acceptor.CheckAlive().ok());
}

TEST(VerbsWireupTest, PartialFrameIsNotDelivered) {
  absl::StatusOr<WireupListener> l = WireupListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(l.ok());
  Pair p = Connect(*l);
  // Length 10, only 4 bytes of body so far.
  const char partial[] = {10, 0, 0, 0, 'a', 'b', 'c', 'd'};
  ASSERT_EQ(::send(p.dialer.fd(), partial, sizeof(partial), 0), 8);
  absl::SleepFor(absl::Milliseconds(20));
  absl::StatusOr<std::optional<std::string>> f = p.acceptor.TryRecvFrame(4096);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->has_value());
  ASSERT_EQ(::send(p.dialer.fd(), "efghij", 6, 0), 6);
  absl::StatusOr<std::string> full = p.acceptor.RecvFrame(4096, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(*full, "abcdefghij");
}

TEST(VerbsWireupTest, OversizedFrameRejected) {
  absl::StatusOr<WireupListener> l = WireupListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(l.ok());
  Pair p = Connect(*l);
  const uint32_t huge = 1u << 30;
  ASSERT_EQ(::send(p.dialer.fd(), &huge, sizeof(huge), 0), 4);
  absl::StatusOr<std::string> f = p.acceptor.RecvFrame(4096, absl::Now() + absl::Seconds(5));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("1073741824"), absl::string_view::npos) << f.status();
}

TEST(VerbsWireupTest, CloseIsUnavailable) {
  absl::StatusOr<WireupListener> l = WireupListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(l.ok());
  Pair p = Connect(*l);
  { WireupConn gone = std::move(p.dialer); }  // the peer process exits
  absl::SleepFor(absl::Milliseconds(20));
  absl::Status alive = p.acceptor.CheckAlive();
  EXPECT_EQ(alive.code(), absl::StatusCode::kUnavailable) << alive;
  EXPECT_EQ(p.acceptor.RecvFrame(4096, absl::Now() + absl::Seconds(5)).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(VerbsWireupTest, DataAfterHandshakeIsAProtocolError) {
  absl::StatusOr<WireupListener> l = WireupListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(l.ok());
  Pair p = Connect(*l);
  ASSERT_TRUE(p.dialer.SendFrame("late", absl::Now() + absl::Seconds(1)).ok());
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(p.acceptor.CheckAlive().code(), absl::StatusCode::kInvalidArgument);
}

TEST(VerbsWireupTest, RecvDeadline) {
  absl::StatusOr<WireupListener> l = WireupListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(l.ok());
  Pair p = Connect(*l);
  const absl::Time start = absl::Now();
  absl::Status s = p.acceptor.RecvFrame(4096, start + absl::Milliseconds(100)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(90));
}

TEST(VerbsWireupTest, DialRetriesThenGivesUp) {
  uint16_t port;
  {
    absl::StatusOr<WireupListener> l = WireupListener::Listen("127.0.0.1", 0);
    ASSERT_TRUE(l.ok());
    port = l->port();
  }  // closed: connections are refused
  const absl::Time start = absl::Now();
  absl::Status s = WireupConn::Dial(Loopback(), port, start + absl::Milliseconds(200)).status();
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find(std::to_string(port)), absl::string_view::npos) << s;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));
}

TEST(VerbsWireupTest, BackoffEventuallySleeps) {
  Backoff b;
  const absl::Time start = absl::Now();
  for (int i = 0; i < 1100; ++i) b.Pause();
  // 64 spins + 192 yields + ~770 short sleeps, then 200 us each.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(10));
}

}  // namespace
}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
