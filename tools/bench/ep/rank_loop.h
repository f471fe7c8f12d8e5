// The measurement loop every rank of `tokenrail-bench ep` runs for a case,
// whatever the implementation under test (the tokenrail engine or the MPI
// baseline): the same barriers, timers, expert step and verification, so
// the numbers compare.
//
// One iteration (warm-up iterations are identical, only not recorded):
//   Barrier; t0; Dispatch (returns when this rank's output is complete); t1
//   Barrier; verify the dispatch output (see below)
//   experts (identity: the dispatch rows themselves; linear: computed)
//   Barrier; t2; Combine (returns when y is complete); t3
//   Barrier; verify y
// dispatch = t1 - t0, combine = t3 - t2, round trip = their sum (the expert
// step and verification are excluded). The barrier before each timed
// operation makes every rank start it together, so a rank's time is the
// operation's latency as that rank sees it; the orchestrator takes, per
// iteration, the maximum over ranks (when the slowest rank is done). The
// barrier after each timed operation keeps the CPU-heavy verification and
// experts of a rank that finished early from overlapping the others' timed
// work (this matters with more ranks than cores).
// Verification runs on iteration i when i % verify_every == 0, on the last
// warm-up iteration and on the last iteration; a failure is recorded and the
// loop goes on (every rank runs the same number of collectives), so the
// run ends and reports instead of hanging.
// Bytes: the implementation's counters (bytes this rank sent to its own node
// and to other nodes) are read around each timed dispatch and combine; the
// record has the last timed iteration's and whether every timed iteration
// moved the same (bytes_constant; tokenrail's flow-control credits are
// batched as timing allows, so its inter-node totals may vary by a few
// credits).
//
// After the timed loop an optional accounting iteration (untimed) lets the
// caller snapshot external counters (the daemons' GetStats) at three
// points: before the dispatch, after every rank finished it, and after the
// combine.
//
// Thread safety: one thread.
#ifndef TOKENRAIL_TOOLS_BENCH_EP_RANK_LOOP_H_
#define TOKENRAIL_TOOLS_BENCH_EP_RANK_LOOP_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tools/bench/ep/check.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

struct ByteCounters {
  uint64_t intra_node = 0;  // bytes this rank sent to ranks of its node (itself excluded)
  uint64_t inter_node = 0;  // bytes this rank sent to other nodes
};

// One implementation under test, bound to this rank's input.
class ExchangeUnderTest {
 public:
  virtual ~ExchangeUnderTest() = default;
  // Collective over the job.
  virtual absl::Status Barrier() = 0;
  // Blocking until this rank's dispatch output is complete.
  virtual absl::Status Dispatch() = 0;
  // The output of the last Dispatch (valid until the next one).
  virtual absl::StatusOr<DispatchView> View() = 0;
  // expert_out: [View().rows x hidden] of `dtype`, row i for dispatch row i.
  // Blocking until y is complete.
  virtual absl::Status Combine(const void* expert_out, ep::DType dtype) = 0;
  virtual absl::StatusOr<absl::Span<const float>> Y() = 0;
  // Cumulative counters of this rank.
  virtual ByteCounters Counters() = 0;
};

// External counters around the accounting iteration.
class Accounting {
 public:
  virtual ~Accounting() = default;
  // phase 0: before the dispatch, 1: after it (all ranks), 2: after the
  // combine (all ranks). Called on every rank, between barriers.
  virtual absl::Status Snapshot(int phase) = 0;
  // Adds what it measured to the rank's record.
  virtual void Report(Record* record) = 0;
};

// Runs `spec` on this rank. Returns the rank's record: case, rank, iters,
// warmup; dispatch_us and combine_us (the timed samples, JoinSamples);
// verified, verified_iters, error (the first failure); rows, rows_checked,
// fp8_inexact_rows, recv_tokens; stable (every verified y had the same
// CRC-32C); the last timed iteration's dispatch_/combine_ intra_/inter_bytes
// and bytes_constant; the Traffic counts (tokens, routed_slots,
// remote_node_copies, remote_rank_copies, local_rank_copies, self_copies,
// tokens_per_expert); and what `accounting` reports. aggregate.h folds them.
// An error of the implementation (not of verification) aborts with that
// status.
absl::StatusOr<Record> RunCase(ExchangeUnderTest& exchange, const Checker& checker,
                               const CaseSpec& spec, const EpPlan& plan, Accounting* accounting);

// "1.5,2.25,3" and back (the rank records carry sample lists as strings).
std::string JoinSamples(const std::vector<double>& samples);
absl::StatusOr<std::vector<double>> SplitSamples(absl::string_view text);

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_RANK_LOOP_H_
