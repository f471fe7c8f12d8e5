#include "transport/verbs/device.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/ibverbs_status.h"
#include "common/logging.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

constexpr char kLog[] = "verbs";

void LogDestroyFailure(int rc, const char* what) {
  if (rc != 0) {
    TR_LOG(ERROR, kLog) << what << " failed: " << StatusFromIbv(rc, what).message();
  }
}

// Ranks RoCE GIDs for automatic selection; lower is better, -1 unusable.
int RoceRank(const GidEntry& e) {
  if (IsZeroGid(e.gid)) return -1;
  switch (e.type) {
    case GidType::kRoceV2:
      if (IsIpv4MappedGid(e.gid)) return 0;
      return IsLinkLocalGid(e.gid) ? 2 : 1;
    case GidType::kRoceV1:
      return IsIpv4MappedGid(e.gid) ? 3 : 4;
    case GidType::kIb:
      return -1;
  }
  return -1;
}

}  // namespace

void IbvDeleter::operator()(ibv_context* p) const {
  LogDestroyFailure(ibv_close_device(p), "ibv_close_device");
}
void IbvDeleter::operator()(ibv_comp_channel* p) const {
  LogDestroyFailure(ibv_destroy_comp_channel(p), "ibv_destroy_comp_channel");
}
void IbvDeleter::operator()(ibv_pd* p) const {
  LogDestroyFailure(ibv_dealloc_pd(p), "ibv_dealloc_pd");
}
void IbvDeleter::operator()(ibv_cq* p) const {
  LogDestroyFailure(ibv_destroy_cq(p), "ibv_destroy_cq");
}
void IbvDeleter::operator()(ibv_qp* p) const {
  LogDestroyFailure(ibv_destroy_qp(p), "ibv_destroy_qp");
}
void IbvDeleter::operator()(ibv_mr* p) const { LogDestroyFailure(ibv_dereg_mr(p), "ibv_dereg_mr"); }
void IbvDeleter::operator()(ibv_device** p) const { ibv_free_device_list(p); }

bool IsZeroGid(const Gid& gid) {
  for (uint8_t b : gid) {
    if (b != 0) return false;
  }
  return true;
}

bool IsIpv4MappedGid(const Gid& gid) {
  for (int i = 0; i < 10; ++i) {
    if (gid[i] != 0) return false;
  }
  return gid[10] == 0xff && gid[11] == 0xff;
}

bool IsLinkLocalGid(const Gid& gid) { return gid[0] == 0xfe && (gid[1] & 0xc0) == 0x80; }

std::string GidToString(const Gid& gid) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(AF_INET6, gid.data(), buf, sizeof(buf)) == nullptr) return "?";
  return buf;
}

absl::StatusOr<int> SelectGidIndex(const std::vector<GidEntry>& entries, LinkLayer link,
                                   int requested, absl::string_view where) {
  if (requested >= 0) {
    for (const GidEntry& e : entries) {
      if (e.index == requested && !IsZeroGid(e.gid)) return requested;
    }
    return absl::NotFoundError(absl::StrCat("verbs: ", where, ": gid_index ", requested,
                                            " is not populated in the GID table"));
  }
  if (link == LinkLayer::kInfiniBand) {
    // IB inside one subnet is addressed by LID; GID 0 is the port GID, used
    // only if the GRH is ever needed.
    return 0;
  }
  int best = -1;
  int best_rank = 1 << 30;
  for (const GidEntry& e : entries) {
    const int rank = RoceRank(e);
    if (rank < 0) continue;
    if (rank < best_rank || (rank == best_rank && e.index < best)) {
      best = e.index;
      best_rank = rank;
    }
  }
  if (best < 0) {
    return absl::NotFoundError(absl::StrCat(
        "verbs: ", where,
        ": no usable RoCE GID (is an IP address configured on the port's network interface?)"));
  }
  return best;
}

double PortGbps(uint8_t active_speed, uint8_t active_width) {
  double lane = 0;
  switch (active_speed) {
    case 1:
      lane = 2.5;
      break;  // SDR
    case 2:
      lane = 5;
      break;  // DDR
    case 4:
      lane = 10;
      break;  // QDR
    case 8:
      lane = 10;
      break;  // FDR10
    case 16:
      lane = 14;
      break;  // FDR
    case 32:
      lane = 25;
      break;  // EDR
    case 64:
      lane = 50;
      break;  // HDR
    case 128:
      lane = 100;
      break;  // NDR
    default:
      return 0;
  }
  int lanes = 0;
  switch (active_width) {
    case 1:
      lanes = 1;
      break;
    case 2:
      lanes = 4;
      break;
    case 4:
      lanes = 8;
      break;
    case 8:
      lanes = 12;
      break;
    case 16:
      lanes = 2;
      break;
    default:
      return 0;
  }
  return lane * lanes;
}

int MtuBytes(ibv_mtu mtu) {
  switch (mtu) {
    case IBV_MTU_256:
      return 256;
    case IBV_MTU_512:
      return 512;
    case IBV_MTU_1024:
      return 1024;
    case IBV_MTU_2048:
      return 2048;
    case IBV_MTU_4096:
      return 4096;
  }
  return 0;
}

ibv_mtu MtuFromBytes(int bytes) {
  switch (bytes) {
    case 256:
      return IBV_MTU_256;
    case 512:
      return IBV_MTU_512;
    case 1024:
      return IBV_MTU_1024;
    case 2048:
      return IBV_MTU_2048;
    case 4096:
      return IBV_MTU_4096;
    default:
      return static_cast<ibv_mtu>(0);
  }
}

std::string DescribePort(const PortInfo& p) {
  std::string speed = p.gbps > 0 ? absl::StrFormat("%g Gb/s", p.gbps) : "unknown speed";
  std::string out =
      absl::StrCat(p.device, ":", p.port, " (", LinkLayerName(p.link), ", ", speed, ")");
  if (!p.active) absl::StrAppend(&out, " ", p.state);
  return out;
}

absl::StatusOr<std::vector<PortInfo>> ListPorts() {
  int n = 0;
  errno = 0;
  IbvPtr<ibv_device*> list(ibv_get_device_list(&n));
  if (list == nullptr || n == 0) {
    // ENOSYS: no kernel RDMA support at all; either way nothing to use.
    return absl::UnavailableError("no RDMA device");
  }
  std::vector<PortInfo> out;
  for (int i = 0; i < n; ++i) {
    const char* name = ibv_get_device_name(list.get()[i]);
    IbvPtr<ibv_context> ctx(ibv_open_device(list.get()[i]));
    if (ctx == nullptr) {
      TR_LOG(WARNING, kLog) << "cannot open RDMA device " << name << ": "
                            << StatusFromIbv(-1, "ibv_open_device").message();
      continue;
    }
    ibv_device_attr attr{};
    if (int rc = ibv_query_device(ctx.get(), &attr); rc != 0) {
      TR_LOG(WARNING, kLog) << StatusFromIbv(rc, absl::StrCat("ibv_query_device ", name)).message();
      continue;
    }
    for (int port = 1; port <= attr.phys_port_cnt; ++port) {
      ibv_port_attr pa{};
      if (ibv_query_port(ctx.get(), static_cast<uint8_t>(port), &pa) != 0) continue;
      PortInfo p;
      p.device = name;
      p.port = port;
      p.link =
          pa.link_layer == IBV_LINK_LAYER_ETHERNET ? LinkLayer::kEthernet : LinkLayer::kInfiniBand;
      p.active = pa.state == IBV_PORT_ACTIVE;
      p.state = ibv_port_state_str(pa.state);
      p.active_mtu = MtuBytes(pa.active_mtu);
      p.gbps = PortGbps(pa.active_speed, pa.active_width);
      p.lid = pa.lid;
      p.max_msg_size = pa.max_msg_sz;
      p.max_mr_size = attr.max_mr_size;
      out.push_back(std::move(p));
    }
  }
  if (out.empty()) return absl::UnavailableError("no RDMA device (no device could be opened)");
  return out;
}

absl::StatusOr<PortInfo> SelectPort(const std::vector<PortInfo>& ports,
                                    const VerbsOptions& options) {
  std::vector<std::string> seen;
  for (const PortInfo& p : ports) {
    seen.push_back(DescribePort(p));
    if (!options.device.empty() && p.device != options.device) continue;
    if (p.port != options.port) continue;
    if (p.active) return p;
    if (!options.device.empty()) {
      return absl::UnavailableError(
          absl::StrCat("verbs: ", p.device, " port ", p.port, " is ", p.state));
    }
  }
  if (!options.device.empty()) {
    return absl::NotFoundError(absl::StrCat("verbs: no port ", options.port, " on device '",
                                            options.device, "' (have: ", absl::StrJoin(seen, ", "),
                                            ")"));
  }
  return absl::UnavailableError(absl::StrCat("verbs: no active RDMA port ", options.port,
                                             " (have: ", absl::StrJoin(seen, ", "), ")"));
}

bool GpuDirectAvailable() {
  return access("/sys/module/nvidia_peermem", F_OK) == 0 ||
         access("/sys/module/nv_peer_mem", F_OK) == 0;
}

namespace {

std::vector<GidEntry> QueryGids(ibv_context* ctx, int port, int table_len, LinkLayer link) {
  std::vector<GidEntry> out;
  for (int i = 0; i < table_len; ++i) {
    GidEntry e;
    e.index = i;
    ibv_gid_entry ge{};
    const int rc =
        ibv_query_gid_ex(ctx, static_cast<uint32_t>(port), static_cast<uint32_t>(i), &ge, 0);
    if (rc == 0) {
      std::memcpy(e.gid.data(), ge.gid.raw, 16);
      e.type = ge.gid_type == IBV_GID_TYPE_ROCE_V2   ? GidType::kRoceV2
               : ge.gid_type == IBV_GID_TYPE_ROCE_V1 ? GidType::kRoceV1
                                                     : GidType::kIb;
    } else if (rc == ENODATA || rc == -ENODATA || (rc == -1 && errno == ENODATA)) {
      continue;  // empty slot
    } else {
      // Old kernels without the GID-table ioctl: the type is unknown, so a
      // RoCE entry is ranked as v1 (usable, not preferred).
      ibv_gid gid{};
      if (ibv_query_gid(ctx, static_cast<uint8_t>(port), i, &gid) != 0) continue;
      std::memcpy(e.gid.data(), gid.raw, 16);
      e.type = link == LinkLayer::kInfiniBand ? GidType::kIb : GidType::kRoceV1;
    }
    if (!IsZeroGid(e.gid)) out.push_back(e);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Device>> OpenDevice(const VerbsOptions& options) {
  TR_ASSIGN_OR_RETURN(std::vector<PortInfo> ports, ListPorts());
  TR_ASSIGN_OR_RETURN(PortInfo port, SelectPort(ports, options));

  int n = 0;
  IbvPtr<ibv_device*> list(ibv_get_device_list(&n));
  if (list == nullptr) return absl::UnavailableError("no RDMA device");
  ibv_device* dev = nullptr;
  for (int i = 0; i < n; ++i) {
    if (port.device == ibv_get_device_name(list.get()[i])) dev = list.get()[i];
  }
  if (dev == nullptr) {
    return absl::UnavailableError(absl::StrCat("verbs: device ", port.device, " disappeared"));
  }

  auto d = std::make_unique<Device>();
  d->port = port;
  d->context.reset(ibv_open_device(dev));
  if (d->context == nullptr) {
    return StatusFromIbv(-1, absl::StrCat("verbs: ibv_open_device ", port.device));
  }
  TR_RETURN_IF_ERROR(StatusFromIbv(ibv_query_device(d->context.get(), &d->attr),
                                   absl::StrCat("verbs: ibv_query_device ", port.device)));
  ibv_port_attr pa{};
  TR_RETURN_IF_ERROR(
      StatusFromIbv(ibv_query_port(d->context.get(), static_cast<uint8_t>(port.port), &pa),
                    absl::StrCat("verbs: ibv_query_port ", d->where())));
  if (port.link == LinkLayer::kInfiniBand && pa.lid == 0) {
    return absl::UnavailableError(
        absl::StrCat("verbs: ", d->where(), " has no LID (is a subnet manager running?)"));
  }
  const int active_mtu = port.active_mtu > 0 ? port.active_mtu : 1024;
  d->mtu = options.mtu > 0 ? std::min(options.mtu, active_mtu) : active_mtu;
  if (ibv_is_fork_initialized() == IBV_FORK_DISABLED) {
    // Kernels before 5.13 may break registered pages copy-on-write after fork.
    TR_LOG_ONCE(WARNING, kLog) << "this kernel needs RDMAV_FORK_SAFE=1 (or ibv_fork_init) "
                                  "if the process forks after registering memory";
  }

  const std::vector<GidEntry> gids =
      QueryGids(d->context.get(), port.port, pa.gid_tbl_len, port.link);
  TR_ASSIGN_OR_RETURN(d->gid_index, SelectGidIndex(gids, port.link, options.gid_index, d->where()));
  for (const GidEntry& e : gids) {
    if (e.index == d->gid_index) d->gid = e.gid;
  }

  d->pd.reset(ibv_alloc_pd(d->context.get()));
  if (d->pd == nullptr) return StatusFromIbv(-1, absl::StrCat("verbs: ibv_alloc_pd ", d->where()));
  TR_LOG(INFO, kLog) << "opened " << DescribePort(port) << " gid[" << d->gid_index
                     << "]=" << GidToString(d->gid) << " lid=" << port.lid << " mtu=" << d->mtu;
  return d;
}

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
