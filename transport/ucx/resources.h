// UCP context set-up and the capability probe.
//
// Whether a peer pair gets native RMA is decided from what UCX reports, not
// from transport names: the probe lists the transport resources the UCP
// context actually enabled (so UCX_TLS / the `tls` option, device lists and
// aliases apply exactly as UCX applies them), opens each through UCT and asks
// uct_md_query + uct_iface_query whether UCP would select it as an RMA lane.
//
// UCP 1.13 selects RMA lanes only among interfaces with PUT_SHORT, PUT_BCOPY,
// GET_BCOPY and PENDING (ucp_wireup_add_rma_lanes), plus
// ERRHANDLE_PEER_FAILURE when endpoints use UCP_ERR_HANDLING_MODE_PEER, as
// ours do, and whose memory domain registers or allocates memory. TCP reports
// PUT_ZCOPY, but UCP uses that only for rendezvous, and emulates put over
// active messages (several times slower), so PUT_ZCOPY alone does not count.
#ifndef TOKENRAIL_TRANSPORT_UCX_RESOURCES_H_
#define TOKENRAIL_TRANSPORT_UCX_RESOURCES_H_

#include <uct/api/uct.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "transport/transport.h"
#include "transport/ucx/handles.h"
#include "transport/ucx/options.h"

namespace tokenrail {
namespace transport {
namespace ucx {

// Creates a UCP context with features RMA | AM from `options` over UCX's own
// configuration (environment). `transport_overrides` adds the settings this
// backend needs from some UCT transports (see resources.cc); UCX warns about
// them when no enabled transport knows them, so they are applied only when
// the probe says one does.
absl::StatusOr<UcpContextPtr> CreateUcpContext(const UcxOptions& options, bool transport_overrides);

struct ResourceInfo {
  std::string md;
  std::string tl;
  std::string dev;
  uct_device_type_t type = UCT_DEVICE_TYPE_NET;
  bool aux = false;          // used by UCP only for wire-up
  bool rma = false;          // UCP can use it as an RMA lane
  double bandwidth_bps = 0;  // UCT's nominal bandwidth, bytes/s
  double latency_s = 0;      // UCT's nominal latency, seconds
};

struct ResourceReport {
  std::vector<ResourceInfo> resources;
  uint8_t rma_classes = 0;   // RmaClass bits
  bool cuda_memory = false;  // UCP handles CUDA memory
  // Some enabled transport takes the backend's UCT overrides.
  bool overrides_apply = false;
};

// Probes the resources `ctx` enabled, as they behave with the backend's UCT
// overrides applied. Interfaces that fail to open are left out (logged at
// verbosity 1).
absl::StatusOr<ResourceReport> ProbeResources(ucp_context_h ctx);

// Capabilities a context with these resources and options publishes.
Capabilities CapabilitiesFrom(const ResourceReport& report, const UcxOptions& options);

// Identifies the running kernel instance (boot id): equal on two processes
// means they share a host and can share memory.
std::string HostId();

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_UCX_RESOURCES_H_
