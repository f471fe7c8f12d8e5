// The network under the benchmark, measured in the same run: UCX put
// bandwidth (tokenrail-bench transport's verified loops, tools/bench/
// transport_bench.h) between the first rank of node 0 and the first rank of
// node 1, from the same network namespaces and with the same transport
// params as the daemons (tls=tcp between emulated nodes), before the engine
// starts (the two processes then sit idle; nothing else runs).
//
// Collective over the job (a symmetric region carries node 1's listening
// address to node 0 through the rank client); every other rank only joins
// the collectives. Rank 0 returns the transport benchmark's rows (modes bw
// and bibw per size); the others return none.
//
// Blocking, one thread; the rank client must not be in use elsewhere.
#ifndef TOKENRAIL_TOOLS_BENCH_EP_UCX_PROBE_H_
#define TOKENRAIL_TOOLS_BENCH_EP_UCX_PROBE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "runtime/client/client.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

absl::StatusOr<std::vector<Record>> MeasureUcx(runtime::RankClient& rc, const EpPlan& plan);

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_UCX_PROBE_H_
