#include "transport/shm/ring.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "transport/shm/options.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

constexpr uint64_t kMessageBytes = 256 << 10;

Channel MakeChannel(uint32_t entries, uint64_t message_bytes = kMessageBytes) {
  absl::StatusOr<Channel> c = Channel::Create(entries, message_bytes);
  EXPECT_TRUE(c.ok()) << c.status();
  return *std::move(c);
}

std::string Payload(size_t size, uint32_t seed) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + 1) & 0xff);
  return s;
}

TEST(NotifyRingTest, FillsExactlyToCapacityThenRefuses) {
  Channel c = MakeChannel(8);
  NotifyProducer p = c.notify_producer();
  NotifyConsumer q = c.notify_consumer();
  Notification n;
  EXPECT_FALSE(q.TryPop(&n));
  for (uint32_t i = 0; i < 8; ++i) ASSERT_TRUE(p.TryPush(i, 100 + i)) << i;
  EXPECT_FALSE(p.TryPush(99, 99)) << "a full ring must refuse";
  ASSERT_TRUE(q.TryPop(&n));
  EXPECT_EQ(n.imm, 0u);
  EXPECT_EQ(n.length, 100u);
  EXPECT_TRUE(p.TryPush(8, 108)) << "one slot was freed";
  EXPECT_FALSE(p.TryPush(9, 109));
  for (uint32_t i = 1; i <= 8; ++i) {
    ASSERT_TRUE(q.TryPop(&n));
    EXPECT_EQ(n.imm, i);
    EXPECT_EQ(n.length, 100u + i);
  }
  EXPECT_FALSE(q.TryPop(&n));
}

TEST(NotifyRingTest, WrapsAroundManyLapsInOrder) {
  Channel c = MakeChannel(4);
  NotifyProducer p = c.notify_producer();
  NotifyConsumer q = c.notify_consumer();
  uint32_t next_push = 0, next_pop = 0;
  // Uneven batches move the wrap point around the ring.
  for (int round = 0; round < 1000; ++round) {
    const int batch = 1 + round % 4;
    for (int i = 0; i < batch && p.TryPush(next_push, uint64_t{next_push} << 20); ++i) ++next_push;
    Notification n;
    for (int i = 0; i < 1 + (round * 7) % 4 && q.TryPop(&n); ++i) {
      ASSERT_EQ(n.imm, next_pop);
      ASSERT_EQ(n.length, uint64_t{next_pop} << 20);
      ++next_pop;
    }
  }
  EXPECT_GT(next_pop, 1000u);
}

TEST(NotifyRingTest, ConcurrentProducerAndConsumerKeepOrder) {
  Channel c = MakeChannel(64);
  NotifyProducer p = c.notify_producer();
  NotifyConsumer q = c.notify_consumer();
  constexpr uint32_t kCount = 200000;
  std::thread producer([&] {
    for (uint32_t i = 0; i < kCount; ++i) {
      while (!p.TryPush(i, uint64_t{i} * 3)) std::this_thread::yield();
    }
  });
  for (uint32_t i = 0; i < kCount; ++i) {
    Notification n;
    while (!q.TryPop(&n)) std::this_thread::yield();
    ASSERT_EQ(n.imm, i);
    ASSERT_EQ(n.length, uint64_t{i} * 3);
  }
  producer.join();
}

TEST(MessageRingTest, RoundTripsSizesFromEmptyToMax) {
  Channel c = MakeChannel(4);
  MessageProducer p = c.message_producer();
  MessageConsumer q = c.message_consumer();
  std::string out = "stale";
  ASSERT_FALSE(*q.TryPop(&out));
  const size_t sizes[] = {0, 1, 7, 8, 9, 4096, kMaxMessageSize - 1, kMaxMessageSize};
  for (size_t size : sizes) {
    const std::string m = Payload(size, static_cast<uint32_t>(size));
    ASSERT_TRUE(p.TryPush(m)) << size;
    absl::StatusOr<bool> got = q.TryPop(&out);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(*got);
    EXPECT_EQ(out, m) << size;
  }
}

TEST(MessageRingTest, RecordsWrapAcrossTheEndAndFullRingRefuses) {
  Channel c = MakeChannel(4);
  MessageProducer p = c.message_producer();
  MessageConsumer q = c.message_consumer();
  // 65531-byte records (65544 with framing) do not divide the ring, so they
  // start at ever different places and straddle its end.
  const size_t size = kMaxMessageSize - 5;
  std::string out;
  for (uint32_t i = 0; i < 40; ++i) {
    for (uint32_t k = 0; k < 3; ++k) ASSERT_TRUE(p.TryPush(Payload(size, i * 3 + k))) << i;
    EXPECT_FALSE(p.TryPush(Payload(size, 0))) << "four records exceed 256 KiB";
    for (uint32_t k = 0; k < 3; ++k) {
      ASSERT_TRUE(*q.TryPop(&out));
      ASSERT_EQ(out, Payload(size, i * 3 + k));
    }
    ASSERT_FALSE(*q.TryPop(&out));
  }
  // Small records fill the ring to the byte.
  const uint64_t per = MessageRecordSize(24);
  uint64_t pushed = 0;
  while (p.TryPush(Payload(24, 1))) ++pushed;
  EXPECT_EQ(pushed, kMessageBytes / per);
}

TEST(MessageRingTest, ConcurrentProducerAndConsumerKeepOrder) {
  Channel c = MakeChannel(4);
  MessageProducer p = c.message_producer();
  MessageConsumer q = c.message_consumer();
  constexpr uint32_t kCount = 20000;
  auto size_of = [](uint32_t i) -> size_t { return (i * 2654435761u) % 20000; };
  std::thread producer([&] {
    for (uint32_t i = 0; i < kCount; ++i) {
      const std::string m = Payload(size_of(i), i);
      while (!p.TryPush(m)) std::this_thread::yield();
    }
  });
  std::string out;
  for (uint32_t i = 0; i < kCount; ++i) {
    while (true) {
      absl::StatusOr<bool> got = q.TryPop(&out);
      ASSERT_TRUE(got.ok()) << got.status();
      if (*got) break;
      std::this_thread::yield();
    }
    ASSERT_EQ(out.size(), size_of(i)) << i;
    ASSERT_EQ(out, Payload(size_of(i), i)) << i;
  }
  producer.join();
}

TEST(ChannelTest, PeerMappingSeesTheCreatorsRings) {
  Channel created = MakeChannel(16, 512 << 10);
  absl::StatusOr<Channel> attached = Channel::Attach(created.fd(), "test channel");
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_EQ(attached->notify_entries(), 16u);
  EXPECT_EQ(attached->message_bytes(), 512u << 10);
  // Producer on the attached mapping, consumer on the creator's: two
  // addresses, the same pages.
  NotifyProducer p = attached->notify_producer();
  NotifyConsumer q = created.notify_consumer();
  ASSERT_TRUE(p.TryPush(7, 4096));
  Notification n;
  ASSERT_TRUE(q.TryPop(&n));
  EXPECT_EQ(n.imm, 7u);
  EXPECT_EQ(n.length, 4096u);
  MessageProducer mp = attached->message_producer();
  MessageConsumer mq = created.message_consumer();
  ASSERT_TRUE(mp.TryPush("hello"));
  std::string out;
  ASSERT_TRUE(*mq.TryPop(&out));
  EXPECT_EQ(out, "hello");
  created.revocations().store(3);
  EXPECT_EQ(attached->revocations().load(), 3u);
}

TEST(ChannelTest, AttachRejectsFilesThatAreNotChannels) {
  // Unsealed memfd: a peer could shrink it under our mapping.
  int raw = ::memfd_create("unsealed", MFD_CLOEXEC);
  ASSERT_GE(raw, 0);
  UniqueFd unsealed(raw);
  ASSERT_EQ(::ftruncate(unsealed.get(), 1 << 20), 0);
  absl::StatusOr<Channel> c = Channel::Attach(unsealed.get(), "unsealed");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_NE(c.status().message().find("sealed"), absl::string_view::npos) << c.status();

  // Sealed, right size class, wrong contents.
  absl::StatusOr<SharedFile> junk = CreateSharedFile("junk", 1 << 20);
  ASSERT_TRUE(junk.ok()) << junk.status();
  std::memset(junk->map.data(), 0x5a, junk->map.size());
  c = Channel::Attach(junk->fd.get(), "junk");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();

  // A real channel's header, but the sizes disagree with the file.
  Channel real = MakeChannel(8);
  absl::StatusOr<SharedFile> copy = CreateSharedFile("copy", 1 << 20);
  ASSERT_TRUE(copy.ok());
  absl::StatusOr<Channel> view = Channel::Attach(real.fd(), "real");
  ASSERT_TRUE(view.ok());
  void* hdr = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, real.fd(), 0);
  ASSERT_NE(hdr, MAP_FAILED);
  std::memcpy(copy->map.data(), hdr, 4096);
  ::munmap(hdr, 4096);
  c = Channel::Attach(copy->fd.get(), "resized");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
}

TEST(ChannelTest, CreateRejectsBadSizes) {
  EXPECT_FALSE(Channel::Create(3, kMessageBytes).ok());
  EXPECT_FALSE(Channel::Create(0, kMessageBytes).ok());
  EXPECT_FALSE(Channel::Create(8, 4096).ok());
  EXPECT_FALSE(Channel::Create(8, kMessageBytes + 8).ok());
}

TEST(MessageRingTest, CorruptRecordIsDataLoss) {
  absl::StatusOr<SharedFile> mem = CreateSharedFile("corrupt", sizeof(RingIndexes) + kMessageBytes);
  ASSERT_TRUE(mem.ok());
  auto* idx = new (mem->map.data()) RingIndexes;
  char* bytes = mem->map.data() + sizeof(RingIndexes);
  MessageProducer p(idx, bytes, kMessageBytes);
  MessageConsumer q(idx, bytes, kMessageBytes);
  ASSERT_TRUE(p.TryPush("abc"));
  uint32_t huge = 1u << 30;
  std::memcpy(bytes, &huge, 4);  // length field of the record
  std::string out;
  absl::StatusOr<bool> got = q.TryPop(&out);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  // A head that runs ahead of the ring's capacity is corrupt too.
  MessageConsumer q2(idx, bytes, kMessageBytes);
  idx->head.store(kMessageBytes * 4);
  EXPECT_EQ(q2.TryPop(&out).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
