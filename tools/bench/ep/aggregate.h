// Turns the ranks' records of `tokenrail-bench ep` into the rows it prints:
// one row per case (every rank's record folded together) and the ratio rows
// the targets are read from. Pure functions of their inputs.
//
// Case row (bench=ep). Times in microseconds over the timed iterations:
//   dispatch_p50_us / _p99_us, combine_*   per iteration, the slowest rank's
//                                          time (max over ranks), then p50/p99
//   roundtrip_p50_us / _p99_us             per iteration, dispatch max +
//                                          combine max (experts excluded)
// Bandwidths, GB/s with 1 GB = 1e9 B, at the p50 times:
//   dispatch_gbps   algorithm bandwidth as DeepEP reports it: the payload a
//                   rank receives (distinct tokens x hidden x dtype size,
//                   FP8 tile scales included; record headers excluded), mean
//                   over ranks, / dispatch p50
//   combine_gbps    the same tokens x hidden x combine dtype size / combine p50
//   internode_gbps  bytes a node sends to other nodes during one dispatch
//                   (records + chunk headers + counts + credits, mean over
//                   nodes) / dispatch p50
// Bytes, per operation, summed over ranks:
//   dispatch_bytes            intra-node + inter-node bytes of one dispatch
//                             (copies to itself excluded)
//   internode_record_bytes    dispatch records that crossed nodes (engine's
//                             EpOpStats); internode_expected_bytes = tokens x
//                             destination nodes (hier; destination ranks for
//                             flat) x record_bytes; internode_exact when equal
//   internode_metadata_bytes  chunk headers + counts bodies + credits
//   daemon_dispatch_inter_bytes  the daemons' own count (JobService GetStats)
//                             for the accounting dispatch; daemon_match when it
//                             equals the engine's records + metadata + credits
// Ratio rows (bench=ep_ratio): what, topology, dtype, value, target, met.
#ifndef TOKENRAIL_TOOLS_BENCH_EP_AGGREGATE_H_
#define TOKENRAIL_TOOLS_BENCH_EP_AGGREGATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

// Folds the records of one case (one per rank, any order) into its row.
// InvalidArgument when a rank is missing or repeated, or the ranks disagree
// on the iteration count.
absl::StatusOr<Record> AggregateCase(const EpPlan& plan, const CaseSpec& spec,
                                     const std::vector<Record>& rank_records);

// The comparisons between case rows (and the UCX rows of a multi-node
// topology: transport benchmark records with mode bw/bibw and gbytes_per_s,
// tagged with "topology").
std::vector<Record> Ratios(const std::vector<Record>& case_rows,
                           const std::vector<Record>& ucx_rows);

Table CaseTable();
Table RatioTable();
Table UcxTable();

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_AGGREGATE_H_
