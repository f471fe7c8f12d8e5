#include "transport/verbs/wire.h"

#include <functional>

#include "common/bytes.h"
#include "gtest/gtest.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

Gid TestGid() {
  Gid g{};
  g[10] = 0xff;
  g[11] = 0xff;
  g[12] = 10;
  g[15] = 7;
  return g;
}

AddressInfo TestAddress() {
  AddressInfo a;
  a.context_id = 0x1122334455667788ull;
  a.name = "node1/rank3";
  a.ipv4 = 0x0100007f;
  a.tcp_port = 18515;
  a.device = "mlx5_0";
  a.ib_port = 1;
  a.link_layer = LinkLayer::kEthernet;
  a.lid = 0;
  a.gid = TestGid();
  a.mtu = 4096;
  return a;
}

QpInfo TestQp() {
  QpInfo q;
  q.context_id = 42;
  q.lid = 17;
  q.gid = TestGid();
  q.qpn = 0x00abcdef;
  q.psn = 0x00123456;
  q.mtu = 2048;
  q.recv_depth = 512;
  q.credit_addr = 0x7f0000001000ull;
  q.credit_rkey = 0xdeadbeef;
  return q;
}

RemoteKeyInfo TestKey() {
  return RemoteKeyInfo{99, 5, 0xc00c1e, 0x7f0000100000ull, 1 << 20, 0x1234};
}

// Every corruption of a sealed blob must be InvalidArgument, never a crash:
// each truncation, each single-bit flip, and trailing garbage.
void ExpectRejectsCorruption(const std::string& blob,
                             const std::function<absl::Status(absl::string_view)>& unpack) {
  for (size_t n = 0; n < blob.size(); ++n) {
    EXPECT_EQ(unpack(blob.substr(0, n)).code(), absl::StatusCode::kInvalidArgument)
        << "truncated to " << n;
  }
  for (size_t i = 0; i < blob.size(); ++i) {
    std::string bad = blob;
    bad[i] ^= 0x10;
    EXPECT_EQ(unpack(bad).code(), absl::StatusCode::kInvalidArgument) << "flipped byte " << i;
  }
  EXPECT_EQ(unpack(blob + "x").code(), absl::StatusCode::kInvalidArgument);
}

TEST(VerbsWireTest, AddressRoundTrip) {
  const AddressInfo a = TestAddress();
  absl::StatusOr<AddressInfo> b = UnpackAddress(PackAddress(a));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->context_id, a.context_id);
  EXPECT_EQ(b->name, a.name);
  EXPECT_EQ(b->ipv4, a.ipv4);
  EXPECT_EQ(b->tcp_port, a.tcp_port);
  EXPECT_EQ(b->device, a.device);
  EXPECT_EQ(b->ib_port, a.ib_port);
  EXPECT_EQ(b->link_layer, a.link_layer);
  EXPECT_EQ(b->lid, a.lid);
  EXPECT_EQ(b->gid, a.gid);
  EXPECT_EQ(b->mtu, a.mtu);
}

TEST(VerbsWireTest, AddressCorruption) {
  ExpectRejectsCorruption(PackAddress(TestAddress()),
                          [](absl::string_view b) { return UnpackAddress(b).status(); });
}

TEST(VerbsWireTest, AddressSemanticChecks) {
  auto check = [](const std::function<void(AddressInfo&)>& mutate, absl::string_view want) {
    AddressInfo a = TestAddress();
    mutate(a);
    absl::Status s = UnpackAddress(PackAddress(a)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << want;
    EXPECT_NE(s.message().find(want), absl::string_view::npos) << s;
  };
  check([](AddressInfo& a) { a.context_id = 0; }, "context id");
  check([](AddressInfo& a) { a.tcp_port = 0; }, "wireup port");
  check([](AddressInfo& a) { a.ib_port = 0; }, "port number");
  check([](AddressInfo& a) { a.mtu = 1500; }, "MTU 1500");
  check([](AddressInfo& a) { a.link_layer = static_cast<LinkLayer>(9); }, "link layer 9");
}

TEST(VerbsWireTest, WrongMagicAndVersion) {
  // A remote key is not an address, an address of another backend neither.
  absl::Status s = UnpackAddress(PackRemoteKey(TestKey())).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("magic"), absl::string_view::npos) << s;
  EXPECT_EQ(UnpackAddress(SealBlob(0x4d4853, 1, "shm")).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Same magic, version 2: refused with the version named.
  std::string v1 = PackQpInfo(TestQp());
  absl::StatusOr<absl::string_view> payload = UnsealBlob(v1, kQpMagic, 1, "t");
  ASSERT_TRUE(payload.ok());
  s = UnpackQpInfo(SealBlob(kQpMagic, 2, *payload)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("version 2"), absl::string_view::npos) << s;
  // Valid frame, payload with extra bytes: trailing bytes named.
  s = UnpackQpInfo(SealBlob(kQpMagic, 1, std::string(*payload) + "zz")).status();
  EXPECT_NE(s.message().find("trailing"), absl::string_view::npos) << s;
}

TEST(VerbsWireTest, QpInfoRoundTrip) {
  const QpInfo q = TestQp();
  absl::StatusOr<QpInfo> r = UnpackQpInfo(PackQpInfo(q));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->context_id, q.context_id);
  EXPECT_EQ(r->lid, q.lid);
  EXPECT_EQ(r->gid, q.gid);
  EXPECT_EQ(r->qpn, q.qpn);
  EXPECT_EQ(r->psn, q.psn);
  EXPECT_EQ(r->mtu, q.mtu);
  EXPECT_EQ(r->recv_depth, q.recv_depth);
  EXPECT_EQ(r->credit_addr, q.credit_addr);
  EXPECT_EQ(r->credit_rkey, q.credit_rkey);
}

TEST(VerbsWireTest, QpInfoCorruptionAndLimits) {
  ExpectRejectsCorruption(PackQpInfo(TestQp()),
                          [](absl::string_view b) { return UnpackQpInfo(b).status(); });
  auto check = [](const std::function<void(QpInfo&)>& mutate, absl::string_view want) {
    QpInfo q = TestQp();
    mutate(q);
    absl::Status s = UnpackQpInfo(PackQpInfo(q)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << want;
    EXPECT_NE(s.message().find(want), absl::string_view::npos) << s;
  };
  check([](QpInfo& q) { q.qpn = 0x1000000; }, "QPN 16777216");
  check([](QpInfo& q) { q.qpn = 0; }, "QPN 0");
  check([](QpInfo& q) { q.psn = 0x1000000; }, "PSN");
  check([](QpInfo& q) { q.mtu = 3000; }, "MTU 3000");
  check([](QpInfo& q) { q.recv_depth = 0; }, "receive depth 0");
  check([](QpInfo& q) { q.credit_addr = 0x1003; }, "credit word");
  check([](QpInfo& q) { q.context_id = 0; }, "context id");
}

TEST(VerbsWireTest, RemoteKeyRoundTripAndCorruption) {
  const RemoteKeyInfo k = TestKey();
  absl::StatusOr<RemoteKeyInfo> r = UnpackRemoteKey(PackRemoteKey(k));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->context_id, k.context_id);
  EXPECT_EQ(r->region_id, k.region_id);
  EXPECT_EQ(r->cookie, k.cookie);
  EXPECT_EQ(r->addr, k.addr);
  EXPECT_EQ(r->size, k.size);
  EXPECT_EQ(r->rkey, k.rkey);
  ExpectRejectsCorruption(PackRemoteKey(k),
                          [](absl::string_view b) { return UnpackRemoteKey(b).status(); });
  RemoteKeyInfo wraps = k;
  wraps.addr = ~uint64_t{0} - 10;
  EXPECT_NE(UnpackRemoteKey(PackRemoteKey(wraps)).status().message().find("wraps"),
            absl::string_view::npos);
  RemoteKeyInfo no_region = k;
  no_region.region_id = 0;
  EXPECT_EQ(UnpackRemoteKey(PackRemoteKey(no_region)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VerbsWireTest, WireupFrameRoundTripAndCorruption) {
  WireupFrame f;
  f.type = WireupType::kAccept;
  f.from_context = 7;
  f.to_context = 9;
  f.from_name = "node0/daemon";
  f.body = PackQpInfo(TestQp());
  absl::StatusOr<WireupFrame> r = UnpackWireupFrame(PackWireupFrame(f));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->type, f.type);
  EXPECT_EQ(r->from_context, 7u);
  EXPECT_EQ(r->to_context, 9u);
  EXPECT_EQ(r->from_name, f.from_name);
  EXPECT_EQ(r->body, f.body);
  ExpectRejectsCorruption(PackWireupFrame(f),
                          [](absl::string_view b) { return UnpackWireupFrame(b).status(); });
  f.type = static_cast<WireupType>(0);
  EXPECT_NE(UnpackWireupFrame(PackWireupFrame(f)).status().message().find("frame type 0"),
            absl::string_view::npos);
  f.type = WireupType::kReady;
  f.to_context = 0;
  EXPECT_EQ(UnpackWireupFrame(PackWireupFrame(f)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VerbsWireTest, InbandRoundTrips) {
  absl::StatusOr<InbandMessage> m = ParseInband(EncodeUserMessage("hello"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, InbandType::kUser);
  EXPECT_EQ(m->payload, "hello");

  m = ParseInband(EncodeUserMessage(""));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->payload, "");

  const std::string big(kMaxMessageSize, 'x');
  m = ParseInband(EncodeUserMessage(big));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->payload.size(), kMaxMessageSize);
  EXPECT_LE(EncodeUserMessage(big).size(), kRecvSlotSize);

  m = ParseInband(EncodeKeyQuery(77, TestKey()));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, InbandType::kKeyQuery);
  EXPECT_EQ(m->request_id, 77u);
  EXPECT_EQ(m->key.region_id, TestKey().region_id);
  EXPECT_EQ(m->key.cookie, TestKey().cookie);
  EXPECT_EQ(m->key.addr, TestKey().addr);
  EXPECT_EQ(m->key.size, TestKey().size);
  EXPECT_EQ(m->key.rkey, TestKey().rkey);

  m = ParseInband(EncodeKeyReply(77, false, "region 5 is not registered"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, InbandType::kKeyReply);
  EXPECT_FALSE(m->ok);
  EXPECT_EQ(m->reason, "region 5 is not registered");
  m = ParseInband(EncodeKeyReply(78, true, ""));
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->ok);

  m = ParseInband(EncodePutDone(0xfeedf00d, uint64_t{3} << 32));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, InbandType::kPutDone);
  EXPECT_EQ(m->imm, 0xfeedf00du);
  EXPECT_EQ(m->length, uint64_t{3} << 32);
}

TEST(VerbsWireTest, InbandMalformed) {
  EXPECT_EQ(ParseInband("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseInband("abc").status().code(), absl::StatusCode::kInvalidArgument);
  std::string unknown = EncodeUserMessage("x");
  unknown[0] = 9;
  EXPECT_NE(ParseInband(unknown).status().message().find("type 9"), absl::string_view::npos);
  std::string reserved = EncodeUserMessage("x");
  reserved[3] = 1;
  EXPECT_NE(ParseInband(reserved).status().message().find("reserved"), absl::string_view::npos);
  EXPECT_EQ(ParseInband(EncodeUserMessage(std::string(kMaxMessageSize + 1, 'x'))).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Every truncation of the structured messages, and trailing bytes.
  for (const std::string& msg :
       {EncodeKeyQuery(1, TestKey()), EncodeKeyReply(2, false, "why"), EncodePutDone(3, 4)}) {
    for (size_t n = 0; n < msg.size(); ++n) {
      EXPECT_EQ(ParseInband(msg.substr(0, n)).status().code(), absl::StatusCode::kInvalidArgument)
          << n;
    }
    EXPECT_EQ(ParseInband(msg + "!").status().code(), absl::StatusCode::kInvalidArgument);
  }
  std::string flag = EncodeKeyReply(2, true, "");
  flag[kInbandHeaderSize + 8] = 2;
  EXPECT_EQ(ParseInband(flag).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
