// The transport conformance cases. Each test drives one side in this process
// and a conformance_peer process on the other side (see peer_process.h).
#include "transport/conformance/conformance.h"

#include <poll.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/status.h"
#include "transport/conformance/pattern.h"
#include "transport/conformance/peer_process.h"
#include "transport/registry.h"

namespace tokenrail {
namespace transport {
namespace {

constexpr absl::Duration kOpTimeout = absl::Seconds(120);
// A dead peer must turn into an error on the survivor within this bound.
constexpr absl::Duration kDeathBound = absl::Seconds(10);

absl::Time Deadline(absl::Duration d = kOpTimeout) { return absl::Now() + d; }

#define TR_ASSERT_OK(expr)                          \
  do {                                              \
    const absl::Status tr_s_ = (expr);              \
    ASSERT_TRUE(tr_s_.ok()) << #expr ": " << tr_s_; \
  } while (0)

#define TR_ASSERT_OK_AND_ASSIGN(lhs, expr)                      \
  auto TR_CT_CONCAT_(tr_v_, __LINE__) = (expr);                 \
  ASSERT_TRUE(TR_CT_CONCAT_(tr_v_, __LINE__).ok())              \
      << #expr ": " << TR_CT_CONCAT_(tr_v_, __LINE__).status(); \
  lhs = std::move(TR_CT_CONCAT_(tr_v_, __LINE__)).value()

#define TR_CT_CONCAT_INNER_(a, b) a##b
#define TR_CT_CONCAT_(a, b) TR_CT_CONCAT_INNER_(a, b)

PeerCommand Cmd(PeerOp op) {
  PeerCommand c;
  c.op = op;
  return c;
}

// kPutMany / kExpectMany: `count` puts of `size` bytes, `stride` apart, put i
// carrying the pattern of seed + i.
PeerCommand Many(PeerOp op, uint32_t count, size_t size, size_t stride, uint64_t seed) {
  PeerCommand c = Cmd(op);
  c.count = count;
  c.size = size;
  c.stride = stride;
  c.seed = seed;
  return c;
}

}  // namespace

TransportConformanceTest::TransportConformanceTest() = default;
TransportConformanceTest::~TransportConformanceTest() {
  // The endpoint goes before the peer and the context.
  ep_.reset();
  peer_.reset();
  ctx_.reset();
}

void TransportConformanceTest::SetUp() {
  const ConformanceConfig& config = GetParam();
  options_.name = "test";
  options_.params = config.params;
  TR_ASSERT_OK_AND_ASSIGN(const BackendEntry* entry, FindBackend(config.backend));
  absl::StatusOr<Capabilities> caps = entry->probe(options_);
  if (absl::IsUnavailable(caps.status())) {
    GTEST_SKIP() << config.backend << " not usable here: " << caps.status().message();
  }
  ASSERT_TRUE(caps.ok()) << caps.status();
  caps_ = *caps;
  TR_ASSERT_OK_AND_ASSIGN(ctx_, CreateContext(config.backend, options_));
}

void TransportConformanceTest::ConnectPeer() {
  TR_ASSERT_OK_AND_ASSIGN(peer_, PeerProcess::Spawn(GetParam()));
  TR_ASSERT_OK_AND_ASSIGN(std::string peer_address, peer_->Await(nullptr, Deadline()));
  TR_ASSERT_OK(peer_->SendRaw(ctx_->address()));
  TR_ASSERT_OK_AND_ASSIGN(ep_, ctx_->Connect(peer_address, Deadline(absl::Seconds(60))));
  TR_ASSERT_OK(peer_->Await(ctx_.get(), Deadline()).status());
  EXPECT_EQ(ep_->peer_name(), "peer");
  TR_ASSERT_OK(ep_->status());
}

absl::StatusOr<PeerRegion> TransportConformanceTest::AllocOnPeer(size_t size, uint8_t fill,
                                                                 bool unpack) {
  PeerCommand cmd = Cmd(PeerOp::kAlloc);
  cmd.size = size;
  cmd.fill = fill;
  TR_ASSIGN_OR_RETURN(std::string reply, peer_->Call(cmd, ctx_.get(), Deadline()));
  ByteReader r(reply, "alloc reply");
  PeerRegion region;
  TR_ASSIGN_OR_RETURN(region.index, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view key, r.GetBytes(1 << 20));
  region.key = std::string(key);
  if (unpack) {
    TR_ASSIGN_OR_RETURN(region.remote, ep_->UnpackRemoteKey(region.key));
    if (region.remote->size() != size) {
      return absl::InternalError(absl::StrCat("remote size ", region.remote->size()));
    }
  }
  return region;
}

std::unique_ptr<MemoryRegion> TransportConformanceTest::RegisterSource(std::vector<uint8_t>& buf) {
  absl::StatusOr<std::unique_ptr<MemoryRegion>> r =
      ctx_->RegisterMemory(buf.data(), buf.size(), MemoryKind::kHost);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

TEST_P(TransportConformanceTest, PublishesCapabilities) {
  EXPECT_EQ(caps_.backend, GetParam().backend);
  EXPECT_EQ(ctx_->capabilities().backend, GetParam().backend);
  EXPECT_GE(caps_.max_put_size, size_t{64} << 20);
  EXPECT_GE(caps_.max_message_size, 4096u);
  EXPECT_TRUE(caps_.intra_node || caps_.inter_node);
  EXPECT_FALSE(caps_.devices.empty());
  EXPECT_FALSE(ctx_->address().empty());
}

TEST_P(TransportConformanceTest, PutSizesAndUnalignedOffsets) {
  ASSERT_NO_FATAL_FAILURE(ConnectPeer());
  constexpr size_t kMax = size_t{64} << 20;
  TR_ASSERT_OK_AND_ASSIGN(PeerRegion dst, AllocOnPeer(kMax + 8192, 0x5A));
  std::vector<uint8_t> src(kMax + 4096);
  std::unique_ptr<MemoryRegion> src_region = RegisterSource(src);
  ASSERT_NE(src_region, nullptr);
  struct Case {
    size_t len, src_off, dst_off;
  };
  const Case cases[] = {{0, 0, 0},
                        {1, 0, 0},
                        {1, 1, 4097},
                        {7, 3, 5},
                        {8, 8, 8},
                        {63, 1, 63},
                        {64, 0, 64},
                        {1000, 13, 77},
                        {4096, 0, 4096},
                        {65537, 5, 3},
                        {(1 << 20) + 3, 7, 11},
                        {16 << 20, 1, 1},
                        {kMax, 0, 4096},
                        {kMax, 4096, 3}};
  uint32_t imm = 100;
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("len ", c.len, " src_off ", c.src_off, " dst_off ", c.dst_off));
    const uint64_t seed = imm * 7919;
    FillPattern(src.data() + c.src_off, c.len, seed);
    PeerCommand expect = Cmd(PeerOp::kExpectPut);
    expect.region = dst.index;
    expect.imm = imm;
    expect.size = c.len;
    expect.offset = c.dst_off;
    expect.seed = seed;
    TR_ASSERT_OK(peer_->Send(expect));
    TR_ASSERT_OK_AND_ASSIGN(Ticket t,
                            ep_->Put(*src_region, c.src_off, *dst.remote, c.dst_off, c.len, imm));
    TR_ASSERT_OK(ep_->WaitComplete(t, Deadline()));
    EXPECT_TRUE(*ep_->IsComplete(t));
    TR_ASSERT_OK(peer_->Await(ctx_.get(), Deadline()).status());
    ++imm;
  }
  TR_ASSERT_OK(ep_->Flush(Deadline()));
}

TEST_P(TransportConformanceTest, ManyOutstandingPutsNotifyInOrder) {
  ASSERT_NO_FATAL_FAILURE(ConnectPeer());
  constexpr uint32_t kCount = 2000;
  constexpr size_t kLen = 1000, kStride = 1024;
  TR_ASSERT_OK_AND_ASSIGN(PeerRegion dst, AllocOnPeer(kCount * kStride, 0x11));
  std::vector<uint8_t> src(kCount * kLen);
  std::unique_ptr<MemoryRegion> src_region = RegisterSource(src);
  ASSERT_NE(src_region, nullptr);
  for (uint32_t i = 0; i < kCount; ++i) FillPattern(src.data() + i * kLen, kLen, 5000 + i);

  PeerCommand expect = Many(PeerOp::kExpectMany, kCount, kLen, kStride, 5000);
  expect.region = dst.index;
  TR_ASSERT_OK(peer_->Send(expect));
  std::vector<Ticket> tickets;
  for (uint32_t i = 0; i < kCount; ++i) {
    TR_ASSERT_OK_AND_ASSIGN(Ticket t,
                            ep_->Put(*src_region, i * kLen, *dst.remote, i * kStride, kLen, i));
    if (!tickets.empty()) {
      ASSERT_EQ(t, tickets.back() + 1) << "tickets must be consecutive";
    }
    tickets.push_back(t);
  }
  TR_ASSERT_OK(ep_->Flush(Deadline()));
  for (Ticket t : tickets) EXPECT_TRUE(*ep_->IsComplete(t));
  TR_ASSERT_OK(peer_->Await(ctx_.get(), Deadline()).status());
}

TEST_P(TransportConformanceTest, PeerPutsArriveVerifiedAndInOrder) {
  ASSERT_NO_FATAL_FAILURE(ConnectPeer());
  constexpr uint32_t kCount = 300;
  constexpr size_t kLen = 3001, kStride = 4096;
  TR_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryRegion> mine,
                          ctx_->AllocateMemory(kCount * kStride, MemoryKind::kHost));
  std::memset(mine->data(), 0, mine->size());
  PeerCommand put = Many(PeerOp::kPutMany, kCount, kLen, kStride, 900);
  TR_ASSERT_OK_AND_ASSIGN(put.key, mine->PackRemoteKey());
  TR_ASSERT_OK(peer_->Send(put));
  const uint8_t* base = static_cast<const uint8_t*>(mine->data());
  for (uint32_t i = 0; i < kCount; ++i) {
    TR_ASSERT_OK_AND_ASSIGN(Notification n, ep_->WaitNotification(Deadline()));
    ASSERT_EQ(n.imm, i) << "notifications out of order";
    ASSERT_EQ(n.length, kLen);
    ASSERT_EQ(FirstPatternMismatch(base + i * kStride, kLen, 900 + i), kLen)
        << "data of put " << i << " not visible when its notification arrived";
  }
  TR_ASSERT_OK(peer_->Await(ctx_.get(), Deadline()).status());
  Notification extra;
  EXPECT_EQ(*ep_->PollNotifications(&extra, 1), 0u);
}

// Context::SetExplicitProgress: a loop that calls Progress() once per round
// and then only polls (as the daemon's proxy does) sees every notification
// and completion, both ways at once.
TEST_P(TransportConformanceTest, ExplicitProgressLoopSeesEverything) {
  ASSERT_NO_FATAL_FAILURE(ConnectPeer());
  ctx_->SetExplicitProgress(true);
  constexpr uint32_t kCount = 40;
  constexpr size_t kLen = 70000, kStride = 70016;  // rendezvous-sized on ucx
  TR_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryRegion> mine,
                          ctx_->AllocateMemory(kCount * kStride, MemoryKind::kHost));
  std::memset(mine->data(), 0, mine->size());
  TR_ASSERT_OK_AND_ASSIGN(PeerRegion dst, AllocOnPeer(kCount * kStride, 0x22));
  std::vector<uint8_t> src(kCount * kLen);
  std::unique_ptr<MemoryRegion> src_region = RegisterSource(src);
  ASSERT_NE(src_region, nullptr);
  for (uint32_t i = 0; i < kCount; ++i) FillPattern(src.data() + i * kLen, kLen, 7200 + i);

  // The peer first takes our puts, then puts into our memory; it runs its
  // commands in order, replying to each.
  PeerCommand expect = Many(PeerOp::kExpectMany, kCount, kLen, kStride, 7200);
  expect.region = dst.index;
  TR_ASSERT_OK(peer_->Send(expect));
  PeerCommand put = Many(PeerOp::kPutMany, kCount, kLen, kStride, 7100);
  TR_ASSERT_OK_AND_ASSIGN(put.key, mine->PackRemoteKey());
  TR_ASSERT_OK(peer_->Send(put));
  std::deque<Ticket> pending;
  for (uint32_t i = 0; i < kCount; ++i) {
    TR_ASSERT_OK_AND_ASSIGN(Ticket t,
                            ep_->Put(*src_region, i * kLen, *dst.remote, i * kStride, kLen, i));
    pending.push_back(t);
  }

  const uint8_t* base = static_cast<const uint8_t*>(mine->data());
  uint32_t got = 0;
  const absl::Time deadline = Deadline();
  while (got < kCount || !pending.empty()) {
    ASSERT_LT(absl::Now(), deadline)
        << "received " << got << " of " << kCount << ", " << pending.size() << " puts not complete";
    TR_ASSERT_OK(ctx_->Progress());
    Notification n[8];
    TR_ASSERT_OK_AND_ASSIGN(const size_t k, ep_->PollNotifications(n, 8));
    for (size_t i = 0; i < k; ++i, ++got) {
      ASSERT_EQ(n[i].imm, got) << "notifications out of order";
      ASSERT_EQ(n[i].length, kLen);
      ASSERT_EQ(FirstPatternMismatch(base + got * kStride, kLen, 7100 + got), kLen)
          << "data of put " << got << " not visible when its notification arrived";
    }
    while (!pending.empty()) {
      TR_ASSERT_OK_AND_ASSIGN(const bool done, ep_->IsComplete(pending.front()));
      if (!done) break;
      pending.pop_front();
    }
  }
  TR_ASSERT_OK(peer_->Await(ctx_.get(), Deadline()).status());  // our puts, verified there
  TR_ASSERT_OK(peer_->Await(ctx_.get(), Deadline()).status());  // its puts
}

TEST_P(TransportConformanceTest, ControlMessagesBothWays) {
  ASSERT_NO_FATAL_FAILURE(ConnectPeer());
  const size_t max = std::min<size_t>(caps_.max_message_size, 64 << 10);
  EXPECT_EQ(ep_->SendMessage(std::string(caps_.max_message_size + 1, 'x')).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::string> sent;
  for (uint32_t i = 0; i < 60; ++i) {
    const size_t size = i == 0 ? 0 : i == 1 ? max : (i * 7919) % (max + 1);
    std::string msg(size, '\0');
    FillPattern(reinterpret_cast<uint8_t*>(msg.data()), size, i);
    sent.push_back(std::move(msg));
  }
  PeerCommand echo = Cmd(PeerOp::kEchoMessages);
  echo.count = sent.size();
  TR_ASSERT_OK(peer_->Send(echo));
  for (const std::string& m : sent) TR_ASSERT_OK(ep_->SendMessage(m));
  for (size_t i = 0; i < sent.size(); ++i) {
    TR_ASSERT_OK_AND_ASSIGN(std::string back, ep_->WaitMessage(Deadline()));
    ASSERT_EQ(back, sent[i]) << "message " << i << " (size " << sent[i].size() << ")";
  }
  TR_ASSERT_OK(peer_->Await(ctx_.get(), Deadline()).status());
  std::string none;
  EXPECT_FALSE(*ep_->PollMessage(&none));
}

TEST_P(TransportConformanceTest, BadPutsAndKeysFailAndTouchNothing) {
  ASSERT_NO_FATAL_FAILURE(ConnectPeer());
  TR_ASSERT_OK_AND_ASSIGN(PeerRegion good, AllocOnPeer(4096, 0xAB));
  TR_ASSERT_OK_AND_ASSIGN(PeerRegion stale, AllocOnPeer(4096, 0xCD, /*unpack=*/false));
  PeerCommand dereg = Cmd(PeerOp::kDeregister);
  dereg.region = stale.index;
  TR_ASSERT_OK(peer_->Call(dereg, ctx_.get(), Deadline()).status());

  std::vector<uint8_t> src(8192, 0xEE);
  std::unique_ptr<MemoryRegion> s = RegisterSource(src);
  ASSERT_NE(s, nullptr);
  constexpr size_t kHuge = std::numeric_limits<size_t>::max();
  const auto invalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(ep_->Put(*s, 0, *good.remote, 4000, 200, 1).status().code(), invalid);
  EXPECT_EQ(ep_->Put(*s, 0, *good.remote, 4097, 0, 1).status().code(), invalid);
  EXPECT_EQ(ep_->Put(*s, 0, *good.remote, kHuge - 10, 20, 1).status().code(), invalid);
  EXPECT_EQ(ep_->Put(*s, 8000, *good.remote, 0, 400, 1).status().code(), invalid);
  EXPECT_EQ(ep_->Put(*s, kHuge - 1, *good.remote, 0, 2, 1).status().code(), invalid);

  std::string corrupt = good.key;
  corrupt[corrupt.size() / 2] ^= 0x40;
  TR_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryRegion> mine,
                          ctx_->AllocateMemory(4096, MemoryKind::kHost));
  TR_ASSERT_OK_AND_ASSIGN(std::string foreign, mine->PackRemoteKey());
  const std::pair<const char*, std::string> bad_keys[] = {
      {"corrupt", corrupt},
      {"truncated", good.key.substr(0, good.key.size() / 2)},
      {"empty", ""},
      {"garbage", "not a key at all"},
      {"stale (deregistered)", stale.key},
      {"made by another context", foreign},
  };
  for (const auto& [what, key] : bad_keys) {
    absl::StatusOr<std::unique_ptr<RemoteRegion>> r = ep_->UnpackRemoteKey(key);
    EXPECT_EQ(r.status().code(), invalid) << what << " key: " << r.status();
    EXPECT_FALSE(r.status().message().empty());
  }
  TR_ASSERT_OK(ep_->status());

  PeerCommand check = Cmd(PeerOp::kCheckFill);
  check.region = good.index;
  check.fill = 0xAB;
  TR_ASSERT_OK(peer_->Call(check, ctx_.get(), Deadline()).status());

  // The endpoint still works after the refused operations.
  FillPattern(src.data(), 100, 42);
  PeerCommand expect = Cmd(PeerOp::kExpectPut);
  expect.region = good.index;
  expect.imm = 9;
  expect.size = 100;
  expect.offset = 10;
  expect.seed = 42;
  TR_ASSERT_OK(peer_->Send(expect));
  TR_ASSERT_OK(ep_->Put(*s, 0, *good.remote, 10, 100, 9).status());
  TR_ASSERT_OK(ep_->Flush(Deadline()));
  TR_ASSERT_OK(peer_->Await(ctx_.get(), Deadline()).status());
}

TEST_P(TransportConformanceTest, MalformedAddressesAreRejected) {
  const std::string own = ctx_->address();
  ASSERT_GT(own.size(), 16u);
  uint32_t magic;
  uint16_t version;
  std::memcpy(&magic, own.data(), 4);
  std::memcpy(&version, own.data() + 4, 2);
  std::string flipped = own;
  flipped[own.size() / 2] ^= 0x01;
  const std::string payload = own.substr(12, own.size() - 16);
  const std::pair<const char*, std::string> bad[] = {
      {"empty", ""},
      {"garbage", "garbage address"},
      {"truncated", own.substr(0, own.size() / 2)},
      {"corrupt", flipped},
      {"future version", SealBlob(magic, version + 1, payload)},
      {"wrong magic", SealBlob(magic ^ 0xFFFF, version, payload)},
      {"own address", own},
  };
  for (const auto& [what, address] : bad) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<Endpoint>> ep =
        ctx_->Connect(address, Deadline(absl::Seconds(5)));
    EXPECT_EQ(ep.status().code(), absl::StatusCode::kInvalidArgument)
        << what << ": " << ep.status();
    EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << what;
  }
}

TEST_P(TransportConformanceTest, PeerKilledWhilePuttingFailsSurvivor) {
  ASSERT_NO_FATAL_FAILURE(ConnectPeer());
  constexpr size_t kChunk = 1 << 20;
  TR_ASSERT_OK_AND_ASSIGN(PeerRegion dst, AllocOnPeer(4 * kChunk, 0));
  TR_ASSERT_OK(peer_->Call(Cmd(PeerOp::kSink), ctx_.get(), Deadline()).status());
  std::vector<uint8_t> src(kChunk, 0x77);
  std::unique_ptr<MemoryRegion> s = RegisterSource(src);
  ASSERT_NE(s, nullptr);

  absl::Time killed_at = absl::InfiniteFuture();
  absl::Status first_error;
  for (uint32_t i = 0; absl::Now() < killed_at + kDeathBound + absl::Seconds(5); ++i) {
    if (i == 50) {
      peer_->Kill();
      killed_at = absl::Now();
    }
    absl::Status st = ep_->Put(*s, 0, *dst.remote, (i % 4) * kChunk, kChunk, i).status();
    if (st.ok() && i % 8 == 7) st = ep_->Flush(absl::Now() + kDeathBound);
    ctx_->Progress().IgnoreError();
    if (!st.ok()) {
      ASSERT_GE(i, 50u) << "failed before the peer was killed: " << st;
      first_error = st;
      break;
    }
  }
  const absl::Duration detect = absl::Now() - killed_at;
  ASSERT_FALSE(first_error.ok()) << "puts kept succeeding after the peer died";
  EXPECT_LE(detect, kDeathBound) << first_error;
  EXPECT_EQ(first_error.code(), absl::StatusCode::kUnavailable) << first_error;

  // The error is sticky and every operation returns it promptly.
  const absl::Time start = absl::Now();
  EXPECT_EQ(ep_->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ep_->Put(*s, 0, *dst.remote, 0, 8, 1).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ep_->Flush(Deadline()).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ep_->WaitNotification(Deadline()).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ep_->SendMessage("x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ep_->WaitMessage(Deadline()).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_NE(ep_->status().message().find("peer"), absl::string_view::npos) << ep_->status();
}

TEST_P(TransportConformanceTest, PeerKilledWhileWaitingFailsSurvivor) {
  ASSERT_NO_FATAL_FAILURE(ConnectPeer());
  TR_ASSERT_OK(peer_->Call(Cmd(PeerOp::kSink), ctx_.get(), Deadline()).status());
  std::atomic<int64_t> killed_at_ns{0};
  std::thread killer([&] {
    absl::SleepFor(absl::Milliseconds(300));
    peer_->Kill();
    killed_at_ns = absl::ToUnixNanos(absl::Now());
  });
  absl::StatusOr<Notification> n = ep_->WaitNotification(Deadline(absl::Seconds(60)));
  const absl::Time returned = absl::Now();
  killer.join();
  ASSERT_FALSE(n.ok()) << "a notification arrived from a peer that sent none";
  EXPECT_EQ(n.status().code(), absl::StatusCode::kUnavailable) << n.status();
  EXPECT_LE(returned - absl::FromUnixNanos(killed_at_ns), kDeathBound);
  const absl::Time start = absl::Now();
  EXPECT_EQ(ep_->WaitMessage(Deadline()).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

// Context::EventFd: a receiver that sleeps in poll() on the armed fd is woken
// by the peer's puts (never by the poll timeout) and by the peer's death.
TEST_P(TransportConformanceTest, EventFdWakesSleepingReceiver) {
  ASSERT_NO_FATAL_FAILURE(ConnectPeer());
  const int fd = ctx_->EventFd();
  if (fd < 0) {
    TR_ASSERT_OK_AND_ASSIGN(const bool armed, ctx_->ArmEventFd());
    EXPECT_FALSE(armed) << "armed without an event fd";
    GTEST_SKIP() << GetParam().backend << " has no event fd: its callers poll";
  }
  // Far beyond what a wake-up takes: reaching it means a lost wake-up.
  constexpr int kLostWakeupMs = 30'000;
  // Arms until armed (a backend may report pending work a few times first).
  auto arm = [&]() -> absl::StatusOr<bool> {
    for (int i = 0; i < 1000; ++i) {
      TR_ASSIGN_OR_RETURN(const bool armed, ctx_->ArmEventFd());
      if (armed) return true;
    }
    return false;
  };
  auto sleep_on_fd = [&](int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms);
  };

  // Rendezvous-sized puts on ucx (several network round trips each).
  constexpr uint32_t kCount = 16;
  constexpr size_t kLen = 70000, kStride = 70016;
  TR_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MemoryRegion> mine,
                          ctx_->AllocateMemory(kCount * kStride, MemoryKind::kHost));
  std::memset(mine->data(), 0, mine->size());
  PeerCommand put = Many(PeerOp::kPutMany, kCount, kLen, kStride, 4242);
  TR_ASSERT_OK_AND_ASSIGN(put.key, mine->PackRemoteKey());
  // Armed before the peer does anything: its first put must wake us.
  TR_ASSERT_OK_AND_ASSIGN(const bool armed_first, arm());
  ASSERT_TRUE(armed_first) << "ArmEventFd kept reporting work on an idle context";
  TR_ASSERT_OK(peer_->Send(put));
  const uint8_t* base = static_cast<const uint8_t*>(mine->data());
  uint32_t got = 0;
  int sleeps = 0;
  bool armed = true;
  while (got < kCount) {
    if (armed) {
      ASSERT_EQ(sleep_on_fd(kLostWakeupMs), 1) << "no wake-up while waiting for put " << got;
      ++sleeps;
    }
    Notification n;
    TR_ASSERT_OK_AND_ASSIGN(const size_t k, ep_->PollNotifications(&n, 1));
    if (k == 1) {
      ASSERT_EQ(n.imm, got) << "notifications out of order";
      ASSERT_EQ(n.length, kLen);
      ASSERT_EQ(FirstPatternMismatch(base + got * kStride, kLen, 4242 + got), kLen)
          << "data of put " << got << " not visible when its notification arrived";
      ++got;
      armed = false;
      continue;
    }
    TR_ASSERT_OK_AND_ASSIGN(armed, ctx_->ArmEventFd());
  }
  EXPECT_GE(sleeps, 1);
  TR_ASSERT_OK(peer_->Await(ctx_.get(), Deadline()).status());

  // A put the peer reports done, arming first: either arming sees it
  // pending (refuses) or, if it had not arrived yet, its arrival wakes the
  // sleeper. Never a lost wake-up.
  put.count = 1;
  put.size = 8;
  put.seed = 77;
  TR_ASSERT_OK(peer_->Call(put, ctx_.get(), Deadline()).status());
  Notification n;
  size_t k = 0;
  for (int i = 0; i < 1000 && k == 0; ++i) {
    TR_ASSERT_OK_AND_ASSIGN(const bool armed_pending, ctx_->ArmEventFd());
    if (armed_pending) {
      ASSERT_EQ(sleep_on_fd(kLostWakeupMs), 1) << "no wake-up for the pending put";
    }
    TR_ASSERT_OK_AND_ASSIGN(k, ep_->PollNotifications(&n, 1));
  }
  ASSERT_EQ(k, 1u);
  EXPECT_EQ(n.imm, 0u);
  EXPECT_EQ(n.length, 8u);

  // The peer's death wakes a sleeper.
  TR_ASSERT_OK(peer_->Call(Cmd(PeerOp::kSink), ctx_.get(), Deadline()).status());
  TR_ASSERT_OK_AND_ASSIGN(const bool armed_idle, arm());
  ASSERT_TRUE(armed_idle);
  std::thread killer([&] {
    absl::SleepFor(absl::Milliseconds(200));
    peer_->Kill();
  });
  const absl::Time start = absl::Now();
  absl::Status failure;
  bool sleeping = true;
  while (absl::Now() - start < kDeathBound + absl::Seconds(5)) {
    if (sleeping) {
      const int rc = sleep_on_fd(kLostWakeupMs);
      if (rc != 1) break;  // reported below
    }
    (void)ctx_->Progress();
    failure = ep_->status();
    if (!failure.ok()) break;
    absl::StatusOr<bool> rearmed = ctx_->ArmEventFd();
    if (!rearmed.ok()) break;
    failure = ep_->status();
    if (!failure.ok()) break;
    sleeping = *rearmed;
  }
  killer.join();
  ASSERT_FALSE(failure.ok()) << "the peer's death did not wake the sleeper";
  EXPECT_EQ(failure.code(), absl::StatusCode::kUnavailable) << failure;
  EXPECT_LE(absl::Now() - start, kDeathBound + absl::Milliseconds(200));
}

TEST_P(TransportConformanceTest, ConnectToDeadPeerFailsByDeadline) {
  TR_ASSERT_OK_AND_ASSIGN(peer_, PeerProcess::Spawn(GetParam()));
  TR_ASSERT_OK_AND_ASSIGN(std::string peer_address, peer_->Await(nullptr, Deadline()));
  peer_->Kill();
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<Endpoint>> ep =
      ctx_->Connect(peer_address, Deadline(absl::Seconds(3)));
  EXPECT_FALSE(ep.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(ep.status()) || absl::IsUnavailable(ep.status()))
      << ep.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_P(TransportConformanceTest, GpuMemoryIsSupportedOrRefusedClearly) {
  if (caps_.gpu_memory) GTEST_SKIP() << "GPU registration is covered by the GPU tests";
  char fake[64];
  absl::Status s = ctx_->RegisterMemory(fake, sizeof(fake), MemoryKind::kCuda).status();
  EXPECT_TRUE(absl::IsUnimplemented(s) || absl::IsUnavailable(s)) << s;
  EXPECT_FALSE(s.message().empty());
}

}  // namespace transport
}  // namespace tokenrail
