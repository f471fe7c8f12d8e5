// End-to-end tests of the ucx backend between two contexts in one process:
// capability detection, puts in both put paths, messages, keys, errors.
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "transport/registry.h"
#include "transport/ucx/endpoint.h"
#include "transport/ucx/ucx_test_util.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

using Params = std::map<std::string, std::string>;

absl::Time In(absl::Duration d) { return absl::Now() + d; }

bool UsesRma(const Endpoint& ep) { return dynamic_cast<const UcxEndpoint&>(ep).uses_rma(); }

uint8_t Pattern(size_t put, size_t i) { return static_cast<uint8_t>(put * 131 + i * 7 + 1); }

// ---- Capability detection ------------------------------------------------

absl::StatusOr<Capabilities> Probe(const Params& params) {
  TransportOptions o;
  o.params = params;
  absl::StatusOr<const BackendEntry*> entry = FindBackend("ucx");
  if (!entry.ok()) return entry.status();
  return (*entry)->probe(o);
}

TEST(UcxCapabilitiesTest, TcpChoosesActiveMessages) {
  absl::StatusOr<Capabilities> caps = Probe({{"tls", "tcp"}});
  ASSERT_TRUE(caps.ok()) << caps.status();
  EXPECT_EQ(caps->backend, "ucx");
  EXPECT_TRUE(caps->intra_node);
  EXPECT_TRUE(caps->inter_node);
  EXPECT_FALSE(caps->gpu_memory);
  EXPECT_FALSE(caps->native_rma);
  EXPECT_GE(caps->max_message_size, 4096u);
  EXPECT_GE(caps->max_put_size, size_t{64} << 20);
  ASSERT_FALSE(caps->devices.empty());
  for (const std::string& d : caps->devices) {
    EXPECT_TRUE(absl::StartsWith(d, "tcp/")) << d;
    EXPECT_FALSE(absl::StrContains(d, "rma")) << d;
  }

  absl::StatusOr<UcxPair> p = ConnectUcxPair({{"tls", "tcp"}}, {{"tls", "tcp"}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(UsesRma(*p->ab));
  EXPECT_FALSE(UsesRma(*p->ba));
}

TEST(UcxCapabilitiesTest, SharedMemoryChoosesRma) {
  for (const Params& params : {Params{}, Params{{"tls", "shm"}}}) {
    absl::StatusOr<Capabilities> caps = Probe(params);
    ASSERT_TRUE(caps.ok()) << caps.status();
    EXPECT_TRUE(caps->native_rma) << (params.empty() ? "default" : "tls=shm");
    bool shm_rma = false;
    for (const std::string& d : caps->devices) shm_rma |= absl::StrContains(d, "(shm, rma)");
    EXPECT_TRUE(shm_rma);

    absl::StatusOr<UcxPair> p = ConnectUcxPair(params, params);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(UsesRma(*p->ab));
    EXPECT_TRUE(UsesRma(*p->ba));
  }
}

TEST(UcxCapabilitiesTest, PutModeOverridesAuto) {
  absl::StatusOr<Capabilities> am = Probe({{"put_mode", "am"}});
  ASSERT_TRUE(am.ok()) << am.status();
  EXPECT_FALSE(am->native_rma);
  absl::StatusOr<UcxPair> p =
      ConnectUcxPair({{"put_mode", "am"}}, {{"tls", "tcp"}, {"put_mode", "rma"}});
  // Different transport lists on the two sides still connect over TCP.
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(UsesRma(*p->ab));
  EXPECT_TRUE(UsesRma(*p->ba));
}

TEST(UcxCapabilitiesTest, BadParamsAndUnknownTransports) {
  EXPECT_EQ(Probe({{"bogus", "1"}}).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Capabilities> none = Probe({{"tls", "ud_mlx5"}});
  EXPECT_FALSE(none.ok());
}

TEST(UcxMemoryTest, CudaMemoryIsUnimplemented) {
  absl::StatusOr<std::unique_ptr<Context>> ctx = MakeUcxContext("a", {{"tls", "tcp"}});
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  ASSERT_FALSE((*ctx)->capabilities().gpu_memory) << "this test assumes Debian's UCX";
  char buf[64];
  EXPECT_EQ((*ctx)->RegisterMemory(buf, sizeof(buf), MemoryKind::kCuda).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ((*ctx)->AllocateMemory(64, MemoryKind::kCuda).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ((*ctx)->RegisterMemory(buf, 0, MemoryKind::kHost).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*ctx)->RegisterMemory(nullptr, 8, MemoryKind::kHost).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- Puts ------------------------------------------------------------------

struct PutCase {
  std::string label;
  Params params;
  bool allocate_target;  // AllocateMemory (else RegisterMemory) on the receiver
  bool expect_rma_endpoint;
};

class UcxPutTest : public ::testing::TestWithParam<PutCase> {};

TEST_P(UcxPutTest, PutsLandInPostOrderWithData) {
  const PutCase& c = GetParam();
  absl::StatusOr<UcxPair> p = ConnectUcxPair(c.params, c.params);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(UsesRma(*p->ab), c.expect_rma_endpoint);

  // Sizes across eager, rendezvous and large, at unaligned offsets, plus a
  // burst of small puts far beyond any hardware queue.
  std::vector<size_t> sizes = {0,
                               1,
                               3,
                               8,
                               4095,
                               4097,
                               65535,
                               65536 + 13,
                               100003,
                               size_t{1} << 20,
                               (size_t{4} << 20) + 5,
                               (size_t{64} << 20) - 3};
  for (int i = 0; i < 1500; ++i) sizes.push_back(1 + i % 97);
  std::vector<size_t> offsets;
  size_t total = 0;
  for (size_t s : sizes) {
    offsets.push_back(total + 3);
    total += s + 3;
  }
  const size_t region = total + 64;

  std::vector<uint8_t> src_buf(region);
  for (size_t k = 0; k < sizes.size(); ++k) {
    for (size_t i = 0; i < sizes[k]; ++i) src_buf[offsets[k] + i] = Pattern(k, i);
  }
  absl::StatusOr<std::unique_ptr<MemoryRegion>> src =
      p->a->RegisterMemory(src_buf.data(), src_buf.size(), MemoryKind::kHost);
  ASSERT_TRUE(src.ok()) << src.status();

  std::vector<uint8_t> dst_buf;
  absl::StatusOr<std::unique_ptr<MemoryRegion>> dst;
  if (c.allocate_target) {
    dst = p->b->AllocateMemory(region, MemoryKind::kHost);
  } else {
    dst_buf.resize(region);
    dst = p->b->RegisterMemory(dst_buf.data(), region, MemoryKind::kHost);
  }
  ASSERT_TRUE(dst.ok()) << dst.status();
  std::memset((*dst)->data(), 0xEE, region);
  absl::StatusOr<std::string> key = (*dst)->PackRemoteKey();
  ASSERT_TRUE(key.ok()) << key.status();

  std::vector<Ticket> tickets;
  {
    Pump pump(p->b.get());
    absl::StatusOr<std::unique_ptr<RemoteRegion>> remote = p->ab->UnpackRemoteKey(*key);
    ASSERT_TRUE(remote.ok()) << remote.status();
    EXPECT_EQ((*remote)->size(), region);
    for (size_t k = 0; k < sizes.size(); ++k) {
      // Source and destination offsets differ to catch mixed-up addressing.
      absl::StatusOr<Ticket> t =
          p->ab->Put(**src, offsets[k], **remote, offsets[k], sizes[k], static_cast<uint32_t>(k));
      ASSERT_TRUE(t.ok()) << "put " << k << ": " << t.status();
      EXPECT_EQ(*t, k + 1);
      tickets.push_back(*t);
    }
    absl::Status flushed = p->ab->Flush(In(absl::Seconds(60)));
    ASSERT_TRUE(flushed.ok()) << flushed;
    for (Ticket t : tickets) {
      absl::StatusOr<bool> done = p->ab->IsComplete(t);
      ASSERT_TRUE(done.ok()) << done.status();
      EXPECT_TRUE(*done) << "ticket " << t;
    }
  }
  std::vector<Notification> got(sizes.size() + 1);
  size_t n = 0;
  const absl::Time deadline = In(absl::Seconds(10));
  while (n < sizes.size() && absl::Now() < deadline) {
    absl::StatusOr<size_t> k = p->ba->PollNotifications(&got[n], got.size() - n);
    ASSERT_TRUE(k.ok()) << k.status();
    n += *k;
  }
  ASSERT_EQ(n, sizes.size());
  for (size_t k = 0; k < sizes.size(); ++k) {
    ASSERT_EQ(got[k].imm, k) << "notification " << k << " out of order";
    ASSERT_EQ(got[k].length, sizes[k]);
  }
  const uint8_t* out = static_cast<const uint8_t*>((*dst)->data());
  for (size_t k = 0; k < sizes.size(); ++k) {
    ASSERT_EQ(out[offsets[k] - 1], 0xEE) << "guard before put " << k;
    for (size_t i = 0; i < sizes[k]; ++i) {
      ASSERT_EQ(out[offsets[k] + i], Pattern(k, i)) << "put " << k << " byte " << i;
    }
  }
  absl::StatusOr<size_t> extra = p->ba->PollNotifications(got.data(), 1);
  ASSERT_TRUE(extra.ok());
  EXPECT_EQ(*extra, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Paths, UcxPutTest,
    ::testing::Values(
        PutCase{"TcpAuto", {{"tls", "tcp"}}, false, false},
        PutCase{"TcpSmallRndv", {{"tls", "tcp"}, {"rndv_thresh", "1K"}}, true, false},
        PutCase{"TcpForcedRma", {{"tls", "tcp"}, {"put_mode", "rma"}}, true, true},
        PutCase{"ShmAutoAllocated", {}, true, true}, PutCase{"ShmAutoRegistered", {}, false, true},
        PutCase{"ShmForcedAm", {{"put_mode", "am"}}, true, false},
        PutCase{"ShmRmaFence", {{"put_mode", "rma"}, {"rma_notify", "fence"}}, true, true}),
    [](const ::testing::TestParamInfo<PutCase>& info) { return info.param.label; });

// ---- Argument and key errors -------------------------------------------------

class UcxErrorTest : public ::testing::TestWithParam<Params> {};

TEST_P(UcxErrorTest, RangeErrorsPostNothing) {
  absl::StatusOr<UcxPair> p = ConnectUcxPair(GetParam(), GetParam());
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<std::unique_ptr<MemoryRegion>> src = p->a->AllocateMemory(4096, MemoryKind::kHost);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> dst = p->b->AllocateMemory(1024, MemoryKind::kHost);
  ASSERT_TRUE(src.ok() && dst.ok());
  Pump pump(p->b.get());
  absl::StatusOr<std::unique_ptr<RemoteRegion>> remote =
      p->ab->UnpackRemoteKey(*(*dst)->PackRemoteKey());
  ASSERT_TRUE(remote.ok()) << remote.status();
  const size_t kHuge = ~size_t{0};
  struct {
    size_t src_off, dst_off, len;
  } bad[] = {{0, 0, 1025}, {0, 1024, 1},  {0, kHuge, 2}, {kHuge, 0, 2},
             {4090, 0, 7}, {0, 1, kHuge}, {4097, 0, 0},  {0, 1025, 0}};
  for (const auto& b : bad) {
    absl::StatusOr<Ticket> t = p->ab->Put(**src, b.src_off, **remote, b.dst_off, b.len, 1);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument)
        << b.src_off << " " << b.dst_off << " " << b.len;
  }
  absl::StatusOr<Ticket> ok = p->ab->Put(**src, 4095, **remote, 1023, 1, 7);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, 1u) << "failed puts must not consume tickets";
  EXPECT_TRUE(p->ab->WaitComplete(*ok, In(absl::Seconds(10))).ok());
  EXPECT_EQ(p->ab->IsComplete(2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p->ab->IsComplete(0).status().code(), absl::StatusCode::kInvalidArgument);
  // A remote region unpacked on another endpoint, a foreign source region.
  absl::StatusOr<std::unique_ptr<MemoryRegion>> foreign =
      p->b->AllocateMemory(64, MemoryKind::kHost);
  ASSERT_TRUE(foreign.ok());
  EXPECT_EQ(p->ab->Put(**foreign, 0, **remote, 0, 8, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(UcxErrorTest, BadKeysAreRejected) {
  absl::StatusOr<UcxPair> p = ConnectUcxPair(GetParam(), GetParam());
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<std::unique_ptr<Context>> c = MakeUcxContext("c", GetParam());
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<std::unique_ptr<MemoryRegion>> live = p->b->AllocateMemory(256, MemoryKind::kHost);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> gone = p->b->AllocateMemory(256, MemoryKind::kHost);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> other =
      (*c)->AllocateMemory(256, MemoryKind::kHost);
  ASSERT_TRUE(live.ok() && gone.ok() && other.ok());
  const std::string key = *(*live)->PackRemoteKey();
  const std::string gone_key = *(*gone)->PackRemoteKey();
  const std::string other_key = *(*other)->PackRemoteKey();
  gone->reset();

  Pump pump(p->b.get());
  auto expect_invalid = [&](absl::string_view blob, absl::string_view what) {
    absl::StatusOr<std::unique_ptr<RemoteRegion>> r = p->ab->UnpackRemoteKey(blob);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << what << ": " << r.status();
    return r.status();
  };
  std::string corrupt = key;
  corrupt[corrupt.size() / 2] ^= 0x40;
  (void)expect_invalid(corrupt, "corrupt");
  (void)expect_invalid(key.substr(0, key.size() - 5), "truncated");
  (void)expect_invalid("", "empty");
  (void)expect_invalid(p->b->address(), "an address, not a key");
  absl::Status s = expect_invalid(other_key, "another context's key");
  EXPECT_TRUE(absl::StrContains(s.message(), "not by peer 'b'")) << s;
  s = expect_invalid(gone_key, "deregistered region");
  EXPECT_TRUE(absl::StrContains(s.message(), "not registered")) << s;
  absl::StatusOr<std::unique_ptr<RemoteRegion>> good = p->ab->UnpackRemoteKey(key);
  EXPECT_TRUE(good.ok()) << good.status();
  EXPECT_TRUE(p->ab->status().ok());
}

TEST_P(UcxErrorTest, PutIntoDeregisteredRegionFailsAndEndpointStaysUsable) {
  absl::StatusOr<UcxPair> p = ConnectUcxPair(GetParam(), GetParam());
  ASSERT_TRUE(p.ok()) << p.status();
  const size_t kBig = 1 << 20;  // rendezvous on every path
  absl::StatusOr<std::unique_ptr<MemoryRegion>> src = p->a->AllocateMemory(kBig, MemoryKind::kHost);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> doomed =
      p->b->AllocateMemory(kBig, MemoryKind::kHost);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> live =
      p->b->AllocateMemory(kBig, MemoryKind::kHost);
  ASSERT_TRUE(src.ok() && doomed.ok() && live.ok());
  std::memset((*src)->data(), 0x5A, kBig);
  std::memset((*live)->data(), 0, kBig);
  std::unique_ptr<RemoteRegion> r_doomed, r_live;
  {
    Pump pump(p->b.get());
    r_doomed = std::move(*p->ab->UnpackRemoteKey(*(*doomed)->PackRemoteKey()));
    r_live = std::move(*p->ab->UnpackRemoteKey(*(*live)->PackRemoteKey()));
  }
  doomed->reset();  // the key a holds is stale now
  Ticket small, big, good;
  {
    Pump pump(p->b.get());
    small = *p->ab->Put(**src, 0, *r_doomed, 0, 100, 1);
    big = *p->ab->Put(**src, 0, *r_doomed, 0, kBig, 2);
    good = *p->ab->Put(**src, 0, *r_live, 8, 1000, 3);
    for (Ticket t : {small, big}) {
      absl::Status s = p->ab->WaitComplete(t, In(absl::Seconds(10)));
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "ticket " << t << ": " << s;
    }
    EXPECT_TRUE(p->ab->WaitComplete(good, In(absl::Seconds(10))).ok());
    EXPECT_TRUE(p->ab->Flush(In(absl::Seconds(10))).ok());
    EXPECT_TRUE(p->ab->status().ok()) << p->ab->status();
  }
  absl::StatusOr<Notification> n = p->ba->WaitNotification(In(absl::Seconds(5)));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->imm, 3u) << "rejected puts must not be notified";
  EXPECT_EQ(n->length, 1000u);
  const uint8_t* out = static_cast<const uint8_t*>((*live)->data());
  EXPECT_EQ(out[7], 0);
  EXPECT_EQ(out[8], 0x5A);
  EXPECT_EQ(out[1007], 0x5A);
  EXPECT_EQ(out[1008], 0);
}

TEST_P(UcxErrorTest, ManyRejectedPutsAmongGoodOnes) {
  absl::StatusOr<UcxPair> p = ConnectUcxPair(GetParam(), GetParam());
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<std::unique_ptr<MemoryRegion>> src = p->a->AllocateMemory(4096, MemoryKind::kHost);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> doomed =
      p->b->AllocateMemory(4096, MemoryKind::kHost);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> live =
      p->b->AllocateMemory(4096, MemoryKind::kHost);
  ASSERT_TRUE(src.ok() && doomed.ok() && live.ok());
  std::unique_ptr<RemoteRegion> r_doomed, r_live;
  {
    Pump pump(p->b.get());
    r_doomed = std::move(*p->ab->UnpackRemoteKey(*(*doomed)->PackRemoteKey()));
    r_live = std::move(*p->ab->UnpackRemoteKey(*(*live)->PackRemoteKey()));
  }
  doomed->reset();
  // More rejections than one Ack carries, interleaved with good puts.
  constexpr int kPuts = 1500;
  std::vector<Ticket> tickets;
  {
    Pump pump(p->b.get());
    for (int i = 0; i < kPuts; ++i) {
      const bool good = i % 5 == 4;
      absl::StatusOr<Ticket> t =
          p->ab->Put(**src, 0, good ? *r_live : *r_doomed, 0, 16, static_cast<uint32_t>(i));
      ASSERT_TRUE(t.ok()) << t.status();
      tickets.push_back(*t);
    }
    ASSERT_TRUE(p->ab->Flush(In(absl::Seconds(30))).ok());
    for (int i = 0; i < kPuts; ++i) {
      absl::StatusOr<bool> done = p->ab->IsComplete(tickets[i]);
      if (i % 5 == 4) {
        EXPECT_TRUE(done.ok() && *done) << i << ": " << done.status();
      } else {
        EXPECT_EQ(done.status().code(), absl::StatusCode::kInvalidArgument) << i;
      }
    }
  }
  for (int i = 4; i < kPuts; i += 5) {
    absl::StatusOr<Notification> n = p->ba->WaitNotification(In(absl::Seconds(5)));
    ASSERT_TRUE(n.ok()) << n.status();
    ASSERT_EQ(n->imm, static_cast<uint32_t>(i));
  }
  Notification extra;
  EXPECT_EQ(*p->ba->PollNotifications(&extra, 1), 0u);
  EXPECT_TRUE(p->ab->status().ok());
}

TEST_P(UcxErrorTest, Messages) {
  absl::StatusOr<UcxPair> p = ConnectUcxPair(GetParam(), GetParam());
  ASSERT_TRUE(p.ok()) << p.status();
  const size_t max = p->a->capabilities().max_message_size;
  ASSERT_GE(max, size_t{64} << 10);
  std::vector<std::string> sent = {"", "hello", std::string(max, 'x'), std::string(5000, 'y')};
  for (int i = 0; i < 200; ++i) sent.push_back(absl::StrCat("message ", i));
  for (const std::string& m : sent) ASSERT_TRUE(p->ab->SendMessage(m).ok());
  EXPECT_EQ(p->ab->SendMessage(std::string(max + 1, 'z')).code(),
            absl::StatusCode::kInvalidArgument);
  Pump pump(p->a.get());
  for (size_t i = 0; i < sent.size(); ++i) {
    absl::StatusOr<std::string> m = p->ba->WaitMessage(In(absl::Seconds(10)));
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_EQ(*m, sent[i]) << "message " << i;
  }
  std::string none;
  EXPECT_FALSE(*p->ba->PollMessage(&none));
}

TEST_P(UcxErrorTest, ClosedPeerFailsEndpointWithUnavailable) {
  absl::StatusOr<UcxPair> p = ConnectUcxPair(GetParam(), GetParam());
  ASSERT_TRUE(p.ok()) << p.status();
  p->ba.reset();
  absl::StatusOr<Notification> n = p->ab->WaitNotification(In(absl::Seconds(10)));
  EXPECT_EQ(n.status().code(), absl::StatusCode::kUnavailable) << n.status();
  EXPECT_TRUE(absl::StrContains(n.status().message(), "'b'")) << n.status();
  EXPECT_EQ(p->ab->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(p->ab->SendMessage("x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(p->ab->Flush(In(absl::Seconds(1))).code(), absl::StatusCode::kUnavailable);
}

TEST_P(UcxErrorTest, ReconnectAfterPeerClosed) {
  absl::StatusOr<UcxPair> p = ConnectUcxPair(GetParam(), GetParam());
  ASSERT_TRUE(p.ok()) << p.status();
  p->ba.reset();
  EXPECT_EQ(p->ab->WaitNotification(In(absl::Seconds(10))).status().code(),
            absl::StatusCode::kUnavailable);
  // b connects again while a still holds its failed endpoint.
  absl::StatusOr<std::unique_ptr<Endpoint>> ba;
  std::thread t([&] { ba = p->b->Connect(p->a->address(), In(absl::Seconds(20))); });
  const absl::Time until = In(absl::Milliseconds(300));
  while (absl::Now() < until) ASSERT_TRUE(p->a->Progress().ok());
  EXPECT_EQ(p->a->Connect(p->b->address(), In(absl::Seconds(1))).status().code(),
            absl::StatusCode::kAlreadyExists);
  p->ab.reset();
  absl::StatusOr<std::unique_ptr<Endpoint>> ab =
      p->a->Connect(p->b->address(), In(absl::Seconds(20)));
  t.join();
  ASSERT_TRUE(ab.ok()) << ab.status();
  ASSERT_TRUE(ba.ok()) << ba.status();
  ASSERT_TRUE((*ab)->SendMessage("again").ok());
  absl::StatusOr<std::string> m = (*ba)->WaitMessage(In(absl::Seconds(10)));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, "again");
  ASSERT_TRUE((*ba)->SendMessage("back").ok());
  m = (*ab)->WaitMessage(In(absl::Seconds(10)));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, "back");
  ab->reset();
  ba->reset();
}

INSTANTIATE_TEST_SUITE_P(Transports, UcxErrorTest,
                         ::testing::Values(Params{{"tls", "tcp"}}, Params{}),
                         [](const ::testing::TestParamInfo<Params>& info) {
                           return info.param.empty() ? std::string("Default") : std::string("Tcp");
                         });

// ---- Connection errors ---------------------------------------------------------

TEST(UcxConnectTest, RejectsBadAddresses) {
  absl::StatusOr<std::unique_ptr<Context>> a = MakeUcxContext("a", {{"tls", "tcp"}});
  ASSERT_TRUE(a.ok()) << a.status();
  const absl::Time soon = In(absl::Seconds(2));
  EXPECT_EQ((*a)->Connect((*a)->address(), soon).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string corrupt = (*a)->address();
  corrupt[corrupt.size() / 2] ^= 1;
  EXPECT_EQ((*a)->Connect(corrupt, soon).status().code(), absl::StatusCode::kInvalidArgument);
  std::string other_backend = (*a)->address();
  other_backend[0] ^= 0x20;  // magic
  absl::Status s = (*a)->Connect(other_backend, soon).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "magic")) << s;
  EXPECT_EQ((*a)->Connect("", soon).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(UcxConnectTest, TimesOutWhenPeerNeverConnects) {
  absl::StatusOr<std::unique_ptr<Context>> a = MakeUcxContext("a", {{"tls", "tcp"}});
  absl::StatusOr<std::unique_ptr<Context>> b = MakeUcxContext("silent-b", {{"tls", "tcp"}});
  ASSERT_TRUE(a.ok() && b.ok());
  Pump pump(b->get());  // b progresses but never calls Connect
  absl::Status s = (*a)->Connect((*b)->address(), In(absl::Milliseconds(300))).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "silent-b")) << s;
}

}  // namespace
}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
