#include "transport/ucx/resources.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/ucs_status.h"
#include "transport/ucx/wire.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

constexpr char kLog[] = "ucx";

// Settings below the UCP layer that this backend depends on. They reach UCT
// through ucp_config_modify (UCP applies unknown keys to every transport
// whose table has them) and are applied the same way to the probe's
// interfaces so that the probe sees what UCP sees.
//
// MM_ERROR_HANDLING: the posix/sysv shared-memory transports advertise
// peer-failure handling only when it is set. Our endpoints use
// UCP_ERR_HANDLING_MODE_PEER, and without it UCP leaves shared memory out
// altogether and talks TCP over loopback between processes of one host.
constexpr std::pair<const char*, const char*> kUctOverrides[] = {
    {"MM_ERROR_HANDLING", "y"},
};

// UCP's criterion for an RMA lane (see resources.h).
constexpr uint64_t kRmaIfaceFlags = UCT_IFACE_FLAG_PUT_SHORT | UCT_IFACE_FLAG_PUT_BCOPY |
                                    UCT_IFACE_FLAG_GET_BCOPY | UCT_IFACE_FLAG_PENDING |
                                    UCT_IFACE_FLAG_ERRHANDLE_PEER_FAILURE;

absl::Status Modify(ucp_config_t* config, const char* key, const std::string& value) {
  return StatusFromUcs(ucp_config_modify(config, key, value.c_str()),
                       absl::StrCat("ucx: setting UCX_", key, "=", value));
}

// One tl resource as UCP lists it: md name, tl/dev, aux flag.
struct ContextResource {
  std::string md;
  std::string tl;
  std::string dev;
  bool aux = false;
};

// The resources `ctx` enabled, from ucp_context_print_info (UCP exposes its
// resource list only there). Unparseable lines are skipped: the probe then
// reports fewer RMA classes, which only makes auto mode choose active
// messages.
absl::StatusOr<std::vector<ContextResource>> ListContextResources(ucp_context_h ctx) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* stream = open_memstream(&buf, &len);
  if (stream == nullptr) return absl::InternalError("ucx: open_memstream failed");
  ucp_context_print_info(ctx, stream);
  fclose(stream);
  std::string text(buf, len);
  free(buf);

  std::map<unsigned, std::string> md_names;
  std::vector<ContextResource> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::string l(line);
    unsigned md_index = 0, cmpt = 0, rsc = 0, dev = 0;
    char name[256] = {0};
    char f1 = 0, f2 = 0;
    if (sscanf(l.c_str(), "# md %u : component %u %255s", &md_index, &cmpt, name) == 3) {
      md_names[md_index] = name;
    } else if (sscanf(l.c_str(), "# resource %u : md %u dev %u flags %c%c %255s", &rsc, &md_index,
                      &dev, &f1, &f2, name) == 6) {
      std::vector<std::string> tl_dev = absl::StrSplit(name, absl::MaxSplits('/', 1));
      if (tl_dev.size() != 2 || !md_names.count(md_index)) continue;
      out.push_back({md_names[md_index], tl_dev[0], tl_dev[1], f1 == 'a'});
    }
  }
  return out;
}

// Opens `r` through UCT and fills its capabilities. Errors mean "skip it".
absl::Status ProbeInterface(uct_md_h md, uct_worker_h worker, const uct_md_attr_t& md_attr,
                            const uct_tl_resource_desc_t& tl, ResourceInfo* r,
                            bool* overrides_apply) {
  uct_iface_config_t* raw_config = nullptr;
  TR_RETURN_IF_ERROR(
      StatusFromUcs(uct_md_iface_config_read(md, tl.tl_name, nullptr, nullptr, &raw_config),
                    absl::StrCat("ucx: reading UCT config of ", r->tl)));
  UctConfigPtr<uct_iface_config_t> config(raw_config);
  for (const auto& [key, value] : kUctOverrides) {
    // NO_ELEM: not this transport's key.
    if (uct_config_modify(config.get(), key, value) == UCS_OK) *overrides_apply = true;
  }
  uct_iface_params_t params = {};
  params.field_mask = UCT_IFACE_PARAM_FIELD_OPEN_MODE | UCT_IFACE_PARAM_FIELD_DEVICE;
  params.open_mode = UCT_IFACE_OPEN_MODE_DEVICE;
  params.mode.device.tl_name = tl.tl_name;
  params.mode.device.dev_name = tl.dev_name;
  uct_iface_h raw_iface = nullptr;
  TR_RETURN_IF_ERROR(StatusFromUcs(uct_iface_open(md, worker, &params, config.get(), &raw_iface),
                                   absl::StrCat("ucx: opening ", r->tl, "/", r->dev)));
  UctIfacePtr iface(raw_iface);
  uct_iface_attr_t attr;
  TR_RETURN_IF_ERROR(StatusFromUcs(uct_iface_query(iface.get(), &attr),
                                   absl::StrCat("ucx: querying ", r->tl, "/", r->dev)));
  r->type = tl.dev_type;
  r->bandwidth_bps = attr.bandwidth.dedicated + attr.bandwidth.shared;
  r->latency_s = attr.latency.c;
  const bool md_maps = (md_attr.cap.flags & (UCT_MD_FLAG_REG | UCT_MD_FLAG_ALLOC)) != 0;
  r->rma = !r->aux && md_maps && (attr.cap.flags & kRmaIfaceFlags) == kRmaIfaceFlags &&
           (tl.dev_type == UCT_DEVICE_TYPE_SHM || tl.dev_type == UCT_DEVICE_TYPE_NET);
  TR_VLOG(1, kLog) << "resource " << r->tl << "/" << r->dev << " type " << tl.dev_type
                   << " iface flags 0x" << std::hex << attr.cap.flags << " md flags 0x"
                   << md_attr.cap.flags << std::dec << (r->rma ? " -> RMA" : "");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UcpContextPtr> CreateUcpContext(const UcxOptions& options,
                                               bool transport_overrides) {
  ucp_config_t* raw_config = nullptr;
  TR_RETURN_IF_ERROR(
      StatusFromUcs(ucp_config_read(nullptr, nullptr, &raw_config), "ucx: ucp_config_read"));
  UcpConfigPtr config(raw_config);
  if (!options.tls.empty()) TR_RETURN_IF_ERROR(Modify(config.get(), "TLS", options.tls));
  if (!options.net_devices.empty()) {
    TR_RETURN_IF_ERROR(Modify(config.get(), "NET_DEVICES", options.net_devices));
  }
  TR_RETURN_IF_ERROR(Modify(
      config.get(), "KEEPALIVE_INTERVAL",
      options.keepalive_ms > 0 ? absl::StrCat(options.keepalive_ms, "ms") : std::string("inf")));
  if (transport_overrides) {
    for (const auto& [key, value] : kUctOverrides) {
      TR_RETURN_IF_ERROR(Modify(config.get(), key, value));
    }
  }

  ucp_params_t params = {};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  // WAKEUP: the worker's event fd lets an idle driver sleep until the
  // network has work (Context::EventFd). It changes no lane selection for
  // RMA and AM (UCP weighs event support only for tag matching).
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.name = options.name.c_str();
  ucp_context_h raw_ctx = nullptr;
  ucs_status_t s = ucp_init(&params, config.get(), &raw_ctx);
  if (s != UCS_OK) {
    absl::Status status =
        StatusFromUcs(s, absl::StrCat("ucx: ucp_init (tls='", options.tls, "', net_devices='",
                                      options.net_devices, "')"));
    // No usable transport or device is "not available here", like a missing NIC.
    if (s == UCS_ERR_NO_DEVICE || s == UCS_ERR_NO_ELEM) {
      return absl::UnavailableError(status.message());
    }
    return status;
  }
  return UcpContextPtr(raw_ctx);
}

absl::StatusOr<ResourceReport> ProbeResources(ucp_context_h ctx) {
  ResourceReport report;
  ucp_context_attr_t cattr = {};
  cattr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  TR_RETURN_IF_ERROR(StatusFromUcs(ucp_context_query(ctx, &cattr), "ucx: ucp_context_query"));
  report.cuda_memory = (cattr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;

  TR_ASSIGN_OR_RETURN(std::vector<ContextResource> used, ListContextResources(ctx));
  std::set<std::string> used_mds;
  for (const ContextResource& r : used) used_mds.insert(r.md);

  // Poll-mode async context: the probe needs no progress thread.
  ucs_async_context_t* raw_async = nullptr;
  TR_RETURN_IF_ERROR(StatusFromUcs(ucs_async_context_create(UCS_ASYNC_MODE_POLL, &raw_async),
                                   "ucx: ucs_async_context_create"));
  UcsAsyncPtr async(raw_async);
  uct_worker_h raw_worker = nullptr;
  TR_RETURN_IF_ERROR(
      StatusFromUcs(uct_worker_create(async.get(), UCS_THREAD_MODE_SINGLE, &raw_worker),
                    "ucx: uct_worker_create"));
  UctWorkerPtr worker(raw_worker);

  uct_component_h* raw_components = nullptr;
  unsigned num_components = 0;
  TR_RETURN_IF_ERROR(StatusFromUcs(uct_query_components(&raw_components, &num_components),
                                   "ucx: uct_query_components"));
  UctComponentList components(raw_components);
  for (unsigned c = 0; c < num_components; ++c) {
    uct_component_attr_t cattr_uct = {};
    cattr_uct.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCE_COUNT;
    if (uct_component_query(components.get()[c], &cattr_uct) != UCS_OK) continue;
    std::vector<uct_md_resource_desc_t> mds(cattr_uct.md_resource_count);
    cattr_uct.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCES;
    cattr_uct.md_resources = mds.data();
    if (uct_component_query(components.get()[c], &cattr_uct) != UCS_OK) continue;
    for (const uct_md_resource_desc_t& md_rsc : mds) {
      if (!used_mds.count(md_rsc.md_name)) continue;
      uct_md_config_t* raw_md_config = nullptr;
      if (uct_md_config_read(components.get()[c], nullptr, nullptr, &raw_md_config) != UCS_OK) {
        continue;
      }
      UctConfigPtr<uct_md_config_t> md_config(raw_md_config);
      uct_md_h raw_md = nullptr;
      if (uct_md_open(components.get()[c], md_rsc.md_name, md_config.get(), &raw_md) != UCS_OK) {
        TR_VLOG(1, kLog) << "cannot open memory domain " << md_rsc.md_name;
        continue;
      }
      UctMdPtr md(raw_md);
      uct_md_attr_t md_attr;
      if (uct_md_query(md.get(), &md_attr) != UCS_OK) continue;
      uct_tl_resource_desc_t* raw_tls = nullptr;
      unsigned num_tls = 0;
      if (uct_md_query_tl_resources(md.get(), &raw_tls, &num_tls) != UCS_OK) continue;
      UctTlResourceList tls(raw_tls);
      for (unsigned t = 0; t < num_tls; ++t) {
        const uct_tl_resource_desc_t& tl = tls.get()[t];
        for (const ContextResource& u : used) {
          if (u.md != md_rsc.md_name || u.tl != tl.tl_name || u.dev != tl.dev_name) continue;
          ResourceInfo info;
          info.md = u.md;
          info.tl = u.tl;
          info.dev = u.dev;
          info.aux = u.aux;
          absl::Status s =
              ProbeInterface(md.get(), worker.get(), md_attr, tl, &info, &report.overrides_apply);
          if (!s.ok()) {
            TR_VLOG(1, kLog) << "skipping " << u.tl << "/" << u.dev << ": " << s;
            continue;
          }
          if (info.rma) {
            report.rma_classes |= info.type == UCT_DEVICE_TYPE_SHM ? kRmaShm : kRmaNet;
          }
          report.resources.push_back(std::move(info));
        }
      }
    }
  }
  return report;
}

Capabilities CapabilitiesFrom(const ResourceReport& report, const UcxOptions& options) {
  Capabilities caps;
  caps.backend = "ucx";
  caps.intra_node = true;
  caps.inter_node = true;
  caps.gpu_memory = report.cuda_memory;
  // What auto mode chooses for a peer with the same resources: forced active
  // messages never use RMA, and forced RMA over a fabric without it is
  // emulated, not native.
  caps.native_rma = options.put_mode != PutMode::kAm && report.rma_classes != 0;
  caps.max_put_size = size_t{1} << 40;
  caps.max_message_size = options.max_message_size;
  double best_bw = 0, best_lat = 0;
  for (const ResourceInfo& r : report.resources) {
    if (r.type == UCT_DEVICE_TYPE_SELF || r.aux) continue;
    best_bw = std::max(best_bw, r.bandwidth_bps);
    if (r.latency_s > 0 && (best_lat == 0 || r.latency_s < best_lat)) best_lat = r.latency_s;
    const char* type = r.type == UCT_DEVICE_TYPE_SHM   ? "shm"
                       : r.type == UCT_DEVICE_TYPE_NET ? "net"
                                                       : "acc";
    caps.devices.push_back(absl::StrCat(r.tl, "/", r.dev, " (", type, r.rma ? ", rma" : "", ")"));
  }
  caps.bandwidth_gbytes = best_bw / 1e9;
  caps.latency_us = best_lat * 1e6;
  return caps;
}

std::string HostId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (in && std::getline(in, id)) {
    id = std::string(absl::StripAsciiWhitespace(id));
    if (!id.empty()) return absl::StrCat("boot:", id);
  }
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat("host:", host);
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
