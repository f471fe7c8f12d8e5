// RDMA device and port discovery, GID selection, and RAII owners of the verbs
// handles used by the backend.
//
// Pure helpers (SelectGidIndex, PortGbps, Mtu conversions) touch no device and
// are unit-tested on hosts without RDMA. The rest calls libibverbs; on a host
// without devices, ListPorts() is Unavailable("no RDMA device").
// Thread safety: functions are reentrant; a Device is owned by one Context.
#ifndef TOKENRAIL_TRANSPORT_VERBS_DEVICE_H_
#define TOKENRAIL_TRANSPORT_VERBS_DEVICE_H_

#include <infiniband/verbs.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transport/verbs/options.h"
#include "transport/verbs/wire.h"

namespace tokenrail {
namespace transport {
namespace verbs {

// Destroys verbs handles; failures are logged, never thrown.
struct IbvDeleter {
  void operator()(ibv_context* p) const;
  void operator()(ibv_comp_channel* p) const;
  void operator()(ibv_pd* p) const;
  void operator()(ibv_cq* p) const;
  void operator()(ibv_qp* p) const;
  void operator()(ibv_mr* p) const;
  void operator()(ibv_device** p) const;
};
template <typename T>
using IbvPtr = std::unique_ptr<T, IbvDeleter>;

// --- Pure helpers -----------------------------------------------------------

enum class GidType { kIb, kRoceV1, kRoceV2 };

struct GidEntry {
  int index = 0;
  Gid gid{};
  GidType type = GidType::kIb;
};

bool IsZeroGid(const Gid& gid);
// ::ffff:a.b.c.d (RoCE GIDs of IPv4 interfaces).
bool IsIpv4MappedGid(const Gid& gid);
// fe80::/10 (not routable across subnets).
bool IsLinkLocalGid(const Gid& gid);
std::string GidToString(const Gid& gid);

// Chooses the GID table index for a port from its populated entries.
// requested >= 0: that entry must exist and be nonzero. Automatic (-1):
//   InfiniBand: index 0 (the port GID; traffic inside the subnet uses LIDs).
//   RoCE: RoCE v2 with an IPv4-mapped address, then RoCE v2 with a global
//   IPv6 address, then RoCE v2 link-local, then RoCE v1 (IPv4-mapped first);
//   the lowest index among equals. RoCE v2 is routable (UDP/IP) and what
//   lossless data-center fabrics are configured for.
// `where` ("mlx5_0:1") names the port in errors. NotFound when nothing fits.
absl::StatusOr<int> SelectGidIndex(const std::vector<GidEntry>& entries, LinkLayer link,
                                   int requested, absl::string_view where);

// Link rate in Gb/s from ibv_port_attr::active_speed and ::active_width
// codes; 0 when a code is unknown.
double PortGbps(uint8_t active_speed, uint8_t active_width);

// ibv_mtu <-> bytes. MtuFromBytes returns 0 for an invalid size.
int MtuBytes(ibv_mtu mtu);
ibv_mtu MtuFromBytes(int bytes);

// --- Devices ----------------------------------------------------------------

struct PortInfo {
  std::string device;  // "mlx5_0"
  int port = 1;
  LinkLayer link = LinkLayer::kInfiniBand;
  bool active = false;
  std::string state;   // "ACTIVE", "DOWN", ...
  int active_mtu = 0;  // bytes
  double gbps = 0;
  uint16_t lid = 0;
  uint32_t max_msg_size = 0;
  uint64_t max_mr_size = 0;  // largest registrable region = largest put
};

// "mlx5_0:1 (IB, 200 Gb/s)".
std::string DescribePort(const PortInfo& p);

// Every port of every RDMA device. Unavailable("no RDMA device") when there is
// none (or the kernel has no RDMA support).
absl::StatusOr<std::vector<PortInfo>> ListPorts();

// The port `options` selects: options.device (or the first device whose
// options.port is active). NotFound for an unknown device name; Unavailable
// when the port is not active.
absl::StatusOr<PortInfo> SelectPort(const std::vector<PortInfo>& ports,
                                    const VerbsOptions& options);

// True when GPU memory can be registered with ibv_reg_mr (the nvidia_peermem
// or legacy nv_peer_mem kernel module is loaded).
bool GpuDirectAvailable();

// An opened device port with its protection domain and addressing.
struct Device {
  PortInfo port;
  ibv_device_attr attr{};
  int gid_index = 0;
  Gid gid{};
  int mtu = 0;  // bytes: options.mtu capped by the port's active MTU
  IbvPtr<ibv_context> context;
  // Completion events of every endpoint's CQ (Context::EventFd); created by
  // the context, non-blocking. Destroyed after the CQs, before the context.
  IbvPtr<ibv_comp_channel> channel;
  IbvPtr<ibv_pd> pd;  // declared after context: destroyed first

  std::string where() const { return port.device + ":" + std::to_string(port.port); }
};

// Opens the port chosen by `options`, allocates a PD and picks the GID.
absl::StatusOr<std::unique_ptr<Device>> OpenDevice(const VerbsOptions& options);

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_VERBS_DEVICE_H_
