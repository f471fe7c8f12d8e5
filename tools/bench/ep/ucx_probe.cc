#include "tools/bench/ep/ucx_probe.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "tools/bench/plan.h"
#include "tools/bench/transport_bench.h"
#include "transport/oob.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

constexpr uint32_t kTagAddress = 0xfffe;
constexpr size_t kAddressBytes = 256;

// Runs the transport leader with its rows captured as JSON records.
absl::StatusOr<std::vector<Record>> Lead(const EpPlan& plan, transport::OobChannel& oob) {
  TransportBenchOptions o;
  o.backend = "ucx";
  o.params = plan.ucx_params;
  o.sizes = plan.ucx_sizes;
  o.modes = {Mode::kBandwidth, Mode::kBidirectional};
  o.iters = 200;
  o.min_iters = 20;
  o.max_bytes = 512ull << 20;
  o.warmup = 20;
  o.window = 16;
  o.slot_bytes = 32ull << 20;
  o.baseline = Baseline::kNone;
  o.timeout = plan.timeout;
  o.inter_node = true;
  return RunTransportLeaderRecords(o, oob, "ucx bandwidth between node 0 and node 1");
}

}  // namespace

absl::StatusOr<std::vector<Record>> MeasureUcx(runtime::RankClient& rc, const EpPlan& plan) {
  const runtime::RankTopology& t = rc.topology();
  const int leader = 0, follower = t.ranks_per_node;  // first ranks of nodes 0 and 1
  const absl::Time deadline = absl::Now() + plan.timeout;
  TR_ASSIGN_OR_RETURN(runtime::Region addr, rc.AllocateSymmetric(kAddressBytes, deadline));
  std::vector<Record> rows;
  if (t.global_rank == follower) {
    TR_ASSIGN_OR_RETURN(transport::OobListener listener,
                        transport::OobListener::Listen(plan.hosts[1], 0));
    const std::string address = absl::StrCat(plan.hosts[1], ":", listener.port());
    std::memcpy(addr.data, address.data(), address.size());
    TR_ASSIGN_OR_RETURN(uint64_t id, rc.Put(addr, 0, leader, addr, 0, address.size(), kTagAddress));
    TR_RETURN_IF_ERROR(rc.WaitComplete(id, deadline));
    TR_ASSIGN_OR_RETURN(transport::OobChannel oob, listener.Accept(deadline));
    FollowerOptions fo;
    fo.name = "ep-bench-ucx-node1";
    fo.timeout = plan.timeout;
    TR_RETURN_IF_ERROR(
        Annotate(RunTransportFollower(fo, oob).status(), "ucx bandwidth (node 1 side)"));
  } else if (t.global_rank == leader) {
    TR_ASSIGN_OR_RETURN(runtime::RankNotification n, rc.WaitNotification(deadline));
    if (n.src_rank != follower || n.tag != kTagAddress || n.length == 0 ||
        n.length > kAddressBytes) {
      return absl::DataLossError(absl::StrCat("ucx probe: unexpected notification (rank ",
                                              n.src_rank, ", tag ", n.tag, ")"));
    }
    const std::string address(static_cast<const char*>(addr.data), n.length);
    const size_t colon = address.rfind(':');
    uint32_t port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
        port == 0 || port > 65535) {
      return absl::DataLossError(absl::StrCat("ucx probe: bad peer address '", address, "'"));
    }
    TR_ASSIGN_OR_RETURN(transport::OobChannel oob,
                        transport::OobChannel::Connect(address.substr(0, colon),
                                                       static_cast<uint16_t>(port), deadline));
    TR_ASSIGN_OR_RETURN(rows, Lead(plan, oob));
  }
  TR_RETURN_IF_ERROR(rc.Barrier(absl::Now() + plan.timeout));
  return rows;
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
