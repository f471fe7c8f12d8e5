// Pure parts of device discovery and QP addressing: GID selection, port
// selection, speeds, MTUs, the RTR attributes, capabilities.
#include "transport/verbs/device.h"

#include <cstring>

#include "gtest/gtest.h"
#include "transport/verbs/context.h"
#include "transport/verbs/qp.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

Gid Ipv4Gid(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  Gid g{};
  g[10] = g[11] = 0xff;
  g[12] = a;
  g[13] = b;
  g[14] = c;
  g[15] = d;
  return g;
}

Gid LinkLocalGid() {
  Gid g{};
  g[0] = 0xfe;
  g[1] = 0x80;
  g[15] = 1;
  return g;
}

Gid GlobalV6Gid() {
  Gid g{};
  g[0] = 0x20;
  g[1] = 0x01;
  g[2] = 0x0d;
  g[3] = 0xb8;
  g[15] = 5;
  return g;
}

TEST(VerbsGidTest, Classification) {
  EXPECT_TRUE(IsZeroGid(Gid{}));
  EXPECT_FALSE(IsZeroGid(LinkLocalGid()));
  EXPECT_TRUE(IsIpv4MappedGid(Ipv4Gid(10, 0, 0, 1)));
  EXPECT_FALSE(IsIpv4MappedGid(LinkLocalGid()));
  EXPECT_TRUE(IsLinkLocalGid(LinkLocalGid()));
  EXPECT_FALSE(IsLinkLocalGid(GlobalV6Gid()));
  EXPECT_EQ(GidToString(Ipv4Gid(10, 0, 0, 1)), "::ffff:10.0.0.1");
  EXPECT_EQ(GidToString(LinkLocalGid()), "fe80::1");
}

// A typical mlx5 RoCE port: link-local v1/v2 at 0/1, IPv4 v1/v2 at 2/3.
TEST(VerbsGidTest, RocePrefersV2Ipv4) {
  const std::vector<GidEntry> table = {
      {0, LinkLocalGid(), GidType::kRoceV1},
      {1, LinkLocalGid(), GidType::kRoceV2},
      {2, Ipv4Gid(192, 168, 1, 5), GidType::kRoceV1},
      {3, Ipv4Gid(192, 168, 1, 5), GidType::kRoceV2},
  };
  absl::StatusOr<int> idx = SelectGidIndex(table, LinkLayer::kEthernet, -1, "mlx5_0:1");
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_EQ(*idx, 3);
}

TEST(VerbsGidTest, RoceFallbackOrder) {
  // Global IPv6 v2 beats link-local v2, which beats any v1.
  std::vector<GidEntry> table = {
      {0, LinkLocalGid(), GidType::kRoceV1},
      {1, LinkLocalGid(), GidType::kRoceV2},
      {4, GlobalV6Gid(), GidType::kRoceV2},
      {5, Ipv4Gid(10, 0, 0, 2), GidType::kRoceV1},
  };
  EXPECT_EQ(*SelectGidIndex(table, LinkLayer::kEthernet, -1, "p"), 4);
  table.erase(table.begin() + 2);
  EXPECT_EQ(*SelectGidIndex(table, LinkLayer::kEthernet, -1, "p"), 1);
  table.erase(table.begin() + 1);
  EXPECT_EQ(*SelectGidIndex(table, LinkLayer::kEthernet, -1, "p"), 5);  // v1 IPv4 over v1 LL
}

TEST(VerbsGidTest, RoceLowestIndexAmongEquals) {
  const std::vector<GidEntry> table = {
      {7, Ipv4Gid(10, 0, 0, 9), GidType::kRoceV2},
      {5, Ipv4Gid(10, 0, 0, 8), GidType::kRoceV2},
  };
  EXPECT_EQ(*SelectGidIndex(table, LinkLayer::kEthernet, -1, "p"), 5);
}

TEST(VerbsGidTest, RoceNothingUsable) {
  const std::vector<GidEntry> table = {{0, Gid{}, GidType::kRoceV2}};
  absl::Status s = SelectGidIndex(table, LinkLayer::kEthernet, -1, "mlx5_1:1").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("mlx5_1:1"), absl::string_view::npos) << s;
  EXPECT_EQ(SelectGidIndex({}, LinkLayer::kEthernet, -1, "p").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(VerbsGidTest, ExplicitIndex) {
  const std::vector<GidEntry> table = {
      {0, LinkLocalGid(), GidType::kRoceV1},
      {3, Ipv4Gid(10, 0, 0, 1), GidType::kRoceV2},
  };
  EXPECT_EQ(*SelectGidIndex(table, LinkLayer::kEthernet, 0, "p"), 0);  // user knows best
  absl::Status s = SelectGidIndex(table, LinkLayer::kEthernet, 2, "mlx5_0:1").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("gid_index 2"), absl::string_view::npos) << s;
}

TEST(VerbsGidTest, InfinibandUsesIndexZero) {
  const std::vector<GidEntry> table = {{0, LinkLocalGid(), GidType::kIb}};
  EXPECT_EQ(*SelectGidIndex(table, LinkLayer::kInfiniBand, -1, "p"), 0);
  EXPECT_EQ(*SelectGidIndex({}, LinkLayer::kInfiniBand, -1, "p"), 0);
}

TEST(VerbsDeviceTest, PortSpeeds) {
  EXPECT_EQ(PortGbps(64, 2), 200);   // HDR 4x
  EXPECT_EQ(PortGbps(128, 2), 400);  // NDR 4x (ConnectX-7)
  EXPECT_EQ(PortGbps(32, 2), 100);   // EDR 4x
  EXPECT_EQ(PortGbps(32, 1), 25);    // 25 GbE RoCE
  EXPECT_EQ(PortGbps(64, 16), 100);  // HDR 2x
  EXPECT_EQ(PortGbps(3, 2), 0);
  EXPECT_EQ(PortGbps(64, 3), 0);
}

TEST(VerbsDeviceTest, MtuConversions) {
  for (int bytes : {256, 512, 1024, 2048, 4096}) EXPECT_EQ(MtuBytes(MtuFromBytes(bytes)), bytes);
  EXPECT_EQ(static_cast<int>(MtuFromBytes(1500)), 0);
  EXPECT_EQ(PathMtu(4096, 1024), 1024);
  EXPECT_EQ(PathMtu(2048, 4096), 2048);
}

std::vector<PortInfo> TwoDevices() {
  PortInfo a;
  a.device = "mlx5_0";
  a.port = 1;
  a.link = LinkLayer::kInfiniBand;
  a.active = false;
  a.state = "DOWN";
  a.gbps = 400;
  PortInfo b = a;
  b.device = "mlx5_1";
  b.active = true;
  b.state = "ACTIVE";
  b.link = LinkLayer::kEthernet;
  b.gbps = 200;
  b.max_mr_size = uint64_t{1} << 40;
  return {a, b};
}

TEST(VerbsDeviceTest, DescribePort) {
  EXPECT_EQ(DescribePort(TwoDevices()[1]), "mlx5_1:1 (RoCE, 200 Gb/s)");
  EXPECT_EQ(DescribePort(TwoDevices()[0]), "mlx5_0:1 (IB, 400 Gb/s) DOWN");
}

TEST(VerbsDeviceTest, SelectPort) {
  VerbsOptions o;
  absl::StatusOr<PortInfo> p = SelectPort(TwoDevices(), o);  // first active
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->device, "mlx5_1");

  o.device = "mlx5_0";
  absl::Status s = SelectPort(TwoDevices(), o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("DOWN"), absl::string_view::npos) << s;

  o.device = "mlx5_7";
  s = SelectPort(TwoDevices(), o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("'mlx5_7'"), absl::string_view::npos) << s;

  o.device = "";
  o.port = 2;
  EXPECT_EQ(SelectPort(TwoDevices(), o).status().code(), absl::StatusCode::kUnavailable);
}

TEST(VerbsDeviceTest, Capabilities) {
  const std::vector<PortInfo> ports = TwoDevices();
  const Capabilities c = MakeCapabilities(ports, ports[1], /*gpu_direct=*/false);
  EXPECT_EQ(c.backend, "verbs");
  EXPECT_TRUE(c.native_rma);
  EXPECT_TRUE(c.inter_node);
  EXPECT_TRUE(c.intra_node);
  EXPECT_FALSE(c.gpu_memory);
  EXPECT_EQ(c.bandwidth_gbytes, 25);
  EXPECT_EQ(c.max_message_size, kMaxMessageSize);
  EXPECT_GE(c.max_message_size, 4096u);
  EXPECT_EQ(c.max_put_size, size_t{1} << 40);
  EXPECT_EQ(c.devices, std::vector<std::string>{"mlx5_1:1 (RoCE, 200 Gb/s)"});
}

QpInfo Remote() {
  QpInfo r;
  r.context_id = 1;
  r.lid = 23;
  r.gid = Ipv4Gid(10, 0, 0, 2);
  r.qpn = 0x1234;
  r.psn = 0x777;
  r.mtu = 4096;
  r.recv_depth = 512;
  return r;
}

TEST(VerbsQpTest, RtrAttrRoceUsesGrh) {
  VerbsOptions o;
  o.traffic_class = 106;
  const QpAttr a = MakeRtrAttr(LinkLayer::kEthernet, 1, 3, Remote(), 1024, o);
  EXPECT_EQ(a.attr.qp_state, IBV_QPS_RTR);
  EXPECT_EQ(a.attr.path_mtu, IBV_MTU_1024);
  EXPECT_EQ(a.attr.dest_qp_num, 0x1234u);
  EXPECT_EQ(a.attr.rq_psn, 0x777u);
  EXPECT_EQ(a.attr.ah_attr.is_global, 1);
  EXPECT_EQ(a.attr.ah_attr.grh.sgid_index, 3);
  EXPECT_EQ(a.attr.ah_attr.grh.traffic_class, 106);
  EXPECT_EQ(a.attr.ah_attr.grh.hop_limit, 255);
  EXPECT_EQ(std::memcmp(a.attr.ah_attr.grh.dgid.raw, Remote().gid.data(), 16), 0);
  EXPECT_TRUE(a.mask & IBV_QP_AV);
  EXPECT_TRUE(a.mask & IBV_QP_DEST_QPN);
}

TEST(VerbsQpTest, RtrAttrInfinibandUsesLid) {
  VerbsOptions o;
  o.service_level = 2;
  const QpAttr a = MakeRtrAttr(LinkLayer::kInfiniBand, 1, 0, Remote(), 4096, o);
  EXPECT_EQ(a.attr.ah_attr.is_global, 0);
  EXPECT_EQ(a.attr.ah_attr.dlid, 23);
  EXPECT_EQ(a.attr.ah_attr.sl, 2);
  EXPECT_EQ(a.attr.path_mtu, IBV_MTU_4096);
}

TEST(VerbsQpTest, RtsAttrCarriesRetryPolicy) {
  VerbsOptions o;
  o.timeout = 14;
  o.retry_cnt = 6;
  o.rnr_retry = 5;
  const QpAttr a = MakeRtsAttr(0xabcdef, o);
  EXPECT_EQ(a.attr.qp_state, IBV_QPS_RTS);
  EXPECT_EQ(a.attr.sq_psn, 0xabcdefu);
  EXPECT_EQ(a.attr.timeout, 14);
  EXPECT_EQ(a.attr.retry_cnt, 6);
  EXPECT_EQ(a.attr.rnr_retry, 5);
  const QpAttr init = MakeInitAttr(2);
  EXPECT_EQ(init.attr.port_num, 2);
  EXPECT_TRUE(init.attr.qp_access_flags & IBV_ACCESS_REMOTE_WRITE);
}

}  // namespace
}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
