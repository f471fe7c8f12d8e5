#include "transport/oob.h"

#include <thread>

#include "gtest/gtest.h"

namespace tokenrail {
namespace transport {
namespace {

TEST(OobTest, ExchangeOverLoopback) {
  absl::StatusOr<OobListener> listener = OobListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok()) << listener.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  std::thread client([&] {
    absl::StatusOr<OobChannel> ch = OobChannel::Connect("127.0.0.1", listener->port(), deadline);
    ASSERT_TRUE(ch.ok()) << ch.status();
    EXPECT_EQ(*ch->Exchange("from client", deadline), "from server");
    EXPECT_TRUE(ch->Send(std::string(1 << 20, 'x')).ok());
  });
  absl::StatusOr<OobChannel> server = listener->Accept(deadline);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(*server->Exchange("from server", deadline), "from client");
  EXPECT_EQ(server->Recv(deadline)->size(), 1u << 20);
  client.join();
  // The client closed: the next receive says so instead of hanging.
  EXPECT_EQ(server->Recv(deadline).status().code(), absl::StatusCode::kUnavailable);
}

TEST(OobTest, RecvTimesOut) {
  absl::StatusOr<OobListener> listener = OobListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  absl::StatusOr<OobChannel> ch =
      OobChannel::Connect("127.0.0.1", listener->port(), absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(ch.ok());
  EXPECT_EQ(ch->Recv(absl::Now() + absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(listener->Accept(absl::Now() + absl::Milliseconds(1)).ok(), true);
}

}  // namespace
}  // namespace transport
}  // namespace tokenrail
