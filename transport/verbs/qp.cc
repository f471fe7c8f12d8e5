#include "transport/verbs/qp.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/ibverbs_status.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace verbs {

absl::StatusOr<IbvPtr<ibv_qp>> CreateRcQp(const Device& device, ibv_cq* cq,
                                          const VerbsOptions& options, QpCaps* caps) {
  ibv_qp_init_attr init{};
  init.send_cq = cq;
  init.recv_cq = cq;
  init.qp_type = IBV_QPT_RC;
  init.sq_sig_all = 0;  // selective signaling
  const uint32_t max_wr = static_cast<uint32_t>(std::max(device.attr.max_qp_wr, 1));
  init.cap.max_send_wr = std::min(static_cast<uint32_t>(options.qp_depth), max_wr);
  init.cap.max_recv_wr = std::min(static_cast<uint32_t>(options.recv_depth), max_wr);
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  init.cap.max_inline_data = static_cast<uint32_t>(options.inline_threshold);
  IbvPtr<ibv_qp> qp(ibv_create_qp(device.pd.get(), &init));
  if (qp == nullptr && init.cap.max_inline_data > 0) {
    // Some devices reject large inline sizes; inline is an optimization.
    init.cap.max_inline_data = 0;
    qp.reset(ibv_create_qp(device.pd.get(), &init));
  }
  if (qp == nullptr) {
    return StatusFromIbv(
        -1, absl::StrCat("verbs: ibv_create_qp (RC, send ", init.cap.max_send_wr, ", recv ",
                         init.cap.max_recv_wr, ") on ", device.where()));
  }
  caps->max_send_wr = init.cap.max_send_wr;
  caps->max_recv_wr = init.cap.max_recv_wr;
  caps->max_inline = init.cap.max_inline_data;
  return qp;
}

int PathMtu(int local_mtu, int remote_mtu) { return std::min(local_mtu, remote_mtu); }

QpAttr MakeInitAttr(int port) {
  QpAttr a;
  a.attr.qp_state = IBV_QPS_INIT;
  a.attr.pkey_index = 0;
  a.attr.port_num = static_cast<uint8_t>(port);
  a.attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
  a.mask = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
  return a;
}

QpAttr MakeRtrAttr(LinkLayer link, int port, int gid_index, const QpInfo& remote, int path_mtu,
                   const VerbsOptions& options) {
  QpAttr a;
  a.attr.qp_state = IBV_QPS_RTR;
  a.attr.path_mtu = MtuFromBytes(path_mtu);
  a.attr.dest_qp_num = remote.qpn;
  a.attr.rq_psn = remote.psn;
  a.attr.max_dest_rd_atomic = 1;  // no RDMA reads/atomics are issued to us
  a.attr.min_rnr_timer = 12;      // 0.64 ms; credits make RNR a should-not-happen
  a.attr.ah_attr.port_num = static_cast<uint8_t>(port);
  a.attr.ah_attr.sl = static_cast<uint8_t>(options.service_level);
  if (link == LinkLayer::kEthernet) {
    a.attr.ah_attr.is_global = 1;
    std::memcpy(a.attr.ah_attr.grh.dgid.raw, remote.gid.data(), 16);
    a.attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(gid_index);
    a.attr.ah_attr.grh.hop_limit = 255;  // RoCE v2 may cross routers
    a.attr.ah_attr.grh.traffic_class = static_cast<uint8_t>(options.traffic_class);
  } else {
    a.attr.ah_attr.is_global = 0;
    a.attr.ah_attr.dlid = remote.lid;
  }
  a.mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
           IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
  return a;
}

QpAttr MakeRtsAttr(uint32_t local_psn, const VerbsOptions& options) {
  QpAttr a;
  a.attr.qp_state = IBV_QPS_RTS;
  a.attr.sq_psn = local_psn;
  a.attr.timeout = static_cast<uint8_t>(options.timeout);
  a.attr.retry_cnt = static_cast<uint8_t>(options.retry_cnt);
  a.attr.rnr_retry = static_cast<uint8_t>(options.rnr_retry);
  a.attr.max_rd_atomic = 1;
  a.mask = IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
           IBV_QP_MAX_QP_RD_ATOMIC;
  return a;
}

absl::Status QpToInit(ibv_qp* qp, int port) {
  QpAttr a = MakeInitAttr(port);
  return StatusFromIbv(ibv_modify_qp(qp, &a.attr, a.mask),
                       absl::StrCat("verbs: QP ", qp->qp_num, " RESET->INIT"));
}

absl::Status QpToRtr(ibv_qp* qp, const Device& device, const QpInfo& remote, int path_mtu,
                     const VerbsOptions& options) {
  QpAttr a =
      MakeRtrAttr(device.port.link, device.port.port, device.gid_index, remote, path_mtu, options);
  return StatusFromIbv(
      ibv_modify_qp(qp, &a.attr, a.mask),
      absl::StrCat("verbs: QP ", qp->qp_num, " INIT->RTR (remote QPN ", remote.qpn, ", LID ",
                   remote.lid, ", GID ", GidToString(remote.gid), ", MTU ", path_mtu, ")"));
}

absl::Status QpToRts(ibv_qp* qp, uint32_t local_psn, const VerbsOptions& options) {
  QpAttr a = MakeRtsAttr(local_psn, options);
  return StatusFromIbv(ibv_modify_qp(qp, &a.attr, a.mask),
                       absl::StrCat("verbs: QP ", qp->qp_num, " RTR->RTS"));
}

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
