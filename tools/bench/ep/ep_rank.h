// The rank side of `tokenrail-bench ep` on a launched cluster: one process
// per rank, started by the orchestrator (ep_bench.h) through tokenrail-launch
// with the plan as its last argument.
//
// Sequence: attach to the node's daemon; check the job's topology against
// the plan; (plan.ucx) measure UCX bandwidth between node 0 and node 1
// (ucx_probe.h); then per tokenrail case: build the verifier (check.h),
// create an EpBuffer with the case's EpConfig (collective), run the rank
// loop (rank_loop.h; with the daemons' GetStats around the accounting
// iteration when plan.daemon_stats), print this rank's record, destroy the
// buffer. Finally detach.
//
// Output on stdout, one line each (tags: plan.h), parsed by the orchestrator:
//   TR_EP_ROW {json}   every rank, every case (fields: rank_loop.h's, plus
//                      TokenrailUnderTest::Report's and DaemonStats')
//   TR_EP_UCX {json}   rank 0, one per transport benchmark row
//
// Environment (read here, the rank's entry point): TOKENRAIL_SOCKET etc.
// through AttachOptions::FromEnvironment. The daemons' counters: rank 0
// queries the coordinator that node 0's daemon hosts (JobService), at
// plan.hosts[0] and the port named in n0.ready in the launcher's run
// directory (the directory of TOKENRAIL_SOCKET), with the run's token file
// from that directory when there is one. TOKENRAIL_COORDINATOR (HOST:PORT)
// and TOKENRAIL_AUTH_TOKEN_FILE override that, but tokenrail-launch sets
// neither. When no coordinator is found (or the token cannot be read),
// rank 0's records say daemon_stats="unavailable: <why>".
//
// Blocking; call from the process's main thread.
#ifndef TOKENRAIL_TOOLS_BENCH_EP_EP_RANK_H_
#define TOKENRAIL_TOOLS_BENCH_EP_EP_RANK_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

// True when `arg` is a plan (the CLI then runs RunEpRank instead of the
// orchestrator).
bool IsEpRankArgument(absl::string_view arg);
absl::Status RunEpRank(absl::string_view plan_arg);

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_EP_RANK_H_
