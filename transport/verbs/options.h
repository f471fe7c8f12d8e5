// Typed options of the verbs backend, parsed once from
// TransportOptions::params (key=value strings). Every key, its default and its
// help text live in one table in options.cc; the registry entry publishes it.
#ifndef TOKENRAIL_TRANSPORT_VERBS_OPTIONS_H_
#define TOKENRAIL_TRANSPORT_VERBS_OPTIONS_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tokenrail {
namespace transport {
namespace verbs {

struct VerbsOptions {
  // RDMA device name ("mlx5_0"); empty = the first device with an active port.
  std::string device;
  // Port number on the device (1-based, as in ibv_query_port).
  int port = 1;
  // GID table index for the GRH; -1 = automatic (RoCE: a RoCE v2 GID with an
  // IPv4-mapped address preferred; InfiniBand: addressing by LID, index 0).
  int gid_index = -1;
  // Path MTU in bytes (256..4096); 0 = the port's active MTU. The pair uses
  // the smaller of both sides' values.
  int mtu = 0;
  // Send work requests per QP (puts, messages, credit updates).
  int qp_depth = 512;
  // Receive work requests per QP: how many puts-with-notification and
  // messages a peer may have in flight toward us (its credits).
  int recv_depth = 512;
  // Completion queue entries per endpoint; 0 = qp_depth + recv_depth + slack,
  // which makes a CQ overrun impossible. A smaller explicit value is refused.
  int cq_depth = 0;
  // RC local ACK timeout exponent: 4.096 us * 2^timeout (18 = ~1.07 s).
  int timeout = 18;
  // Transport retries before the QP fails (IBV_WC_RETRY_EXC_ERR), 0..7.
  int retry_cnt = 7;
  // Receiver-not-ready retries, 0..7 (7 = infinite). Credits prevent RNR
  // NAKs; this is a safety net.
  int rnr_retry = 7;
  // Sends and puts of at most this many bytes are posted inline (copied into
  // the WQE, no DMA read of the source).
  int inline_threshold = 64;
  // RoCE traffic class (DSCP << 2) and IB service level, for lossless queues.
  int traffic_class = 0;
  int service_level = 0;
  // TCP endpoint of the wireup listener that peers dial to exchange QP
  // numbers. Must be an address peers can reach: on clusters give the IP of
  // the management or IPoIB interface. Port 0 picks a free port.
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;
};

// Parses `params` into options. Unknown keys and out-of-range values are
// InvalidArgument naming the key and the value.
absl::StatusOr<VerbsOptions> ParseVerbsOptions(const std::map<std::string, std::string>& params);

// key -> help text (with the default), for BackendEntry::params_help.
std::vector<std::pair<std::string, std::string>> VerbsParamsHelp();

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_VERBS_OPTIONS_H_
