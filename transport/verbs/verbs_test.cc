// Registry entry, probe and context creation. On hosts without RDMA (CI) the
// backend must say "no RDMA device"; on hosts with a device the loopback
// tests below run two contexts in one process through the NIC.
#include <atomic>
#include <cstring>
#include <thread>

#include "gtest/gtest.h"
#include "transport/registry.h"
#include "transport/verbs/context.h"
#include "transport/verbs/device.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

bool HostHasRdma() { return ListPorts().ok(); }

TEST(VerbsBackendTest, Registered) {
  absl::StatusOr<const BackendEntry*> e = FindBackend("verbs");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_FALSE((*e)->description.empty());
  EXPECT_EQ((*e)->params_help.size(), VerbsParamsHelp().size());
  EXPECT_TRUE((*e)->probe);
  EXPECT_TRUE((*e)->create);
}

TEST(VerbsBackendTest, NoDeviceIsUnavailable) {
  if (HostHasRdma()) GTEST_SKIP() << "this host has an RDMA device";
  TransportOptions opts;
  absl::Status probe = ProbeVerbs(opts).status();
  EXPECT_EQ(probe.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(probe.message(), "no RDMA device");

  absl::Status created = VerbsContext::Create(opts).status();
  EXPECT_EQ(created.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(created.message(), "no RDMA device");

  // Through the registry (probe first, annotated with the backend name).
  absl::Status via = CreateContext("verbs", opts).status();
  EXPECT_EQ(via.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(via.message().find("no RDMA device"), absl::string_view::npos) << via;

  // Selection skips it with the reason.
  absl::StatusOr<std::vector<Capabilities>> sel = SelectBackends({}, "verbs", opts);
  EXPECT_EQ(sel.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(sel.status().message().find("verbs: no RDMA device"), absl::string_view::npos);
}

TEST(VerbsBackendTest, BadParamsReportedBeforeDevices) {
  TransportOptions opts;
  opts.params = {{"bogus", "1"}};
  EXPECT_EQ(ProbeVerbs(opts).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerbsContext::Create(opts).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Hardware loopback (skipped without a device) --------------------------

class VerbsLoopbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HostHasRdma()) GTEST_SKIP() << "no RDMA device";
    TransportOptions oa, ob;
    oa.name = "a";
    ob.name = "b";
    auto a = VerbsContext::Create(oa);
    auto b = VerbsContext::Create(ob);
    if (!a.ok()) GTEST_SKIP() << "cannot open the RDMA port: " << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    a_ = *std::move(a);
    b_ = *std::move(b);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    absl::StatusOr<std::unique_ptr<Endpoint>> eb;
    std::thread t([&] { eb = b_->Connect(a_->address(), deadline); });
    absl::StatusOr<std::unique_ptr<Endpoint>> ea = a_->Connect(b_->address(), deadline);
    t.join();
    ASSERT_TRUE(ea.ok()) << ea.status();
    ASSERT_TRUE(eb.ok()) << eb.status();
    ea_ = *std::move(ea);
    eb_ = *std::move(eb);
  }
  void TearDown() override {
    ea_.reset();
    eb_.reset();
  }

  // Keeps the other side progressing while one side waits.
  template <typename F>
  auto WithPeerProgress(Context* peer, F f) {
    std::atomic<bool> stop{false};
    std::thread t([&] {
      while (!stop.load()) (void)peer->Progress();
    });
    auto r = f();
    stop = true;
    t.join();
    return r;
  }

  std::unique_ptr<Context> a_, b_;
  std::unique_ptr<Endpoint> ea_, eb_;
};

TEST_F(VerbsLoopbackTest, SelfAndForeignAddressesRejected) {
  EXPECT_EQ(a_->Connect(a_->address(), absl::Now() + absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a_->Connect("garbage", absl::Now() + absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(VerbsLoopbackTest, PutsMessagesAndKeys) {
  constexpr size_t kSize = 64 << 20;
  auto src = a_->AllocateMemory(kSize, MemoryKind::kHost);
  auto dst = b_->AllocateMemory(kSize, MemoryKind::kHost);
  ASSERT_TRUE(src.ok() && dst.ok());
  auto* s = static_cast<unsigned char*>((*src)->data());
  for (size_t i = 0; i < kSize; ++i) s[i] = static_cast<unsigned char>(i * 131 + 7);
  auto key = (*dst)->PackRemoteKey();
  ASSERT_TRUE(key.ok());
  auto remote = WithPeerProgress(b_.get(), [&] { return ea_->UnpackRemoteKey(*key); });
  ASSERT_TRUE(remote.ok()) << remote.status();

  // 1 B .. 64 MiB at unaligned offsets, then >1024 puts without waiting.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  size_t expected = 0;
  for (size_t len = 1; len <= kSize - 3; len *= 4) {
    auto t = ea_->Put(**src, 3, **remote, 1, len, static_cast<uint32_t>(len));
    ASSERT_TRUE(t.ok()) << t.status();
    ++expected;
  }
  for (uint32_t i = 0; i < 2000; ++i) {
    ASSERT_TRUE(ea_->Put(**src, i, **remote, i, 100, 100000 + i).ok());
    ++expected;
  }
  ASSERT_TRUE(ea_->Put(**src, 0, **remote, 0, 0, 7).ok());  // pure notification
  ++expected;
  std::vector<Notification> got;
  while (got.size() < expected && absl::Now() < deadline) {
    Notification n[64];
    auto k = eb_->PollNotifications(n, 64);
    ASSERT_TRUE(k.ok()) << k.status();
    got.insert(got.end(), n, n + *k);
    (void)ea_->Flush(absl::Now());
  }
  ASSERT_EQ(got.size(), expected);
  size_t i = 0;
  for (size_t len = 1; len <= kSize - 3; len *= 4, ++i) {
    EXPECT_EQ(got[i].imm, static_cast<uint32_t>(len));
    EXPECT_EQ(got[i].length, len);
  }
  for (uint32_t j = 0; j < 2000; ++j, ++i) EXPECT_EQ(got[i].imm, 100000 + j);
  EXPECT_EQ(got[i].length, 0u);
  ASSERT_TRUE(ea_->Flush(deadline).ok());
  const auto* d = static_cast<const unsigned char*>((*dst)->data());
  // The 16 MiB put wrote dst[1..] from src[3..]; the small puts then
  // rewrote dst[0, 2100) from src[0, 2100).
  EXPECT_EQ(std::memcmp(d + 4096, s + 4098, 1 << 20), 0);
  EXPECT_EQ(std::memcmp(d + 1000, s + 1000, 1000), 0);

  // Range errors post nothing.
  EXPECT_EQ(ea_->Put(**src, 0, **remote, kSize - 1, 2, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ea_->Put(**src, SIZE_MAX, **remote, 0, 2, 0).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Messages both ways, in order, up to the limit.
  ASSERT_TRUE(ea_->SendMessage("").ok());
  ASSERT_TRUE(ea_->SendMessage(std::string(kMaxMessageSize, 'm')).ok());
  EXPECT_EQ(ea_->SendMessage(std::string(kMaxMessageSize + 1, 'm')).code(),
            absl::StatusCode::kInvalidArgument);
  auto m1 = eb_->WaitMessage(deadline);
  auto m2 = eb_->WaitMessage(deadline);
  ASSERT_TRUE(m1.ok() && m2.ok());
  EXPECT_EQ(*m1, "");
  EXPECT_EQ(*m2, std::string(kMaxMessageSize, 'm'));

  // A key of a deregistered region is refused by the peer.
  auto gone = b_->AllocateMemory(4096, MemoryKind::kHost);
  ASSERT_TRUE(gone.ok());
  auto gone_key = (*gone)->PackRemoteKey();
  gone->reset();
  absl::Status refused =
      WithPeerProgress(b_.get(), [&] { return ea_->UnpackRemoteKey(*gone_key).status(); });
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
}

TEST_F(VerbsLoopbackTest, PeerGoneIsStickyUnavailable) {
  eb_.reset();
  b_.reset();
  absl::Status s = ea_->WaitMessage(absl::Now() + absl::Seconds(10)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("'b'"), absl::string_view::npos) << s;
  EXPECT_EQ(ea_->SendMessage("x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ea_->status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
