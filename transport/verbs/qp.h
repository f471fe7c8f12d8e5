// RC queue pair creation and the RESET -> INIT -> RTR -> RTS transitions.
//
// MakeRtrAttr/MakeRtsAttr are pure (no device) so the addressing rules are
// unit-tested: InfiniBand addresses the peer by LID; RoCE always needs a GRH
// (destination GID, our GID index, hop limit, traffic class).
#ifndef TOKENRAIL_TRANSPORT_VERBS_QP_H_
#define TOKENRAIL_TRANSPORT_VERBS_QP_H_

#include <infiniband/verbs.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "transport/verbs/device.h"
#include "transport/verbs/options.h"
#include "transport/verbs/wire.h"

namespace tokenrail {
namespace transport {
namespace verbs {

struct QpCaps {
  uint32_t max_send_wr = 0;
  uint32_t max_recv_wr = 0;
  uint32_t max_inline = 0;  // bytes the device accepts inline
};

// Creates an RC QP on `cq` (send and receive) in RESET. Depths are capped by
// the device limits; the granted capabilities are returned through `caps`.
absl::StatusOr<IbvPtr<ibv_qp>> CreateRcQp(const Device& device, ibv_cq* cq,
                                          const VerbsOptions& options, QpCaps* caps);

// The path MTU both sides compute identically: the smaller of the two.
int PathMtu(int local_mtu, int remote_mtu);

struct QpAttr {
  ibv_qp_attr attr{};
  int mask = 0;
};
QpAttr MakeInitAttr(int port);
QpAttr MakeRtrAttr(LinkLayer link, int port, int gid_index, const QpInfo& remote, int path_mtu,
                   const VerbsOptions& options);
QpAttr MakeRtsAttr(uint32_t local_psn, const VerbsOptions& options);

// Each transition names the QP and the step in its error.
absl::Status QpToInit(ibv_qp* qp, int port);
absl::Status QpToRtr(ibv_qp* qp, const Device& device, const QpInfo& remote, int path_mtu,
                     const VerbsOptions& options);
absl::Status QpToRts(ibv_qp* qp, uint32_t local_psn, const VerbsOptions& options);

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_VERBS_QP_H_
