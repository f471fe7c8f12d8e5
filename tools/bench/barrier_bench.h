// `tokenrail-bench barrier`: coordinator barrier latency with many members.
//
// One process hosts a coordinator (the real server, bearer token, loopback)
// and `participants` simulated daemons, each with its own connection,
// heartbeat stream and thread. Every round, each participant calls Barrier
// with an 8+ byte payload naming itself and the round; the allgather result
// is verified byte by byte (every payload of every participant, every round).
//
// Metrics, from the timed rounds (warmup rounds are not counted):
//   release  per participant per round: its Barrier's return minus the LAST
//            participant's call start (the barrier cannot release before the
//            last arrival, so this is what the coordinator adds; measuring a
//            participant from its own call would count time spent waiting for
//            slower participants).
//   round    per round: the last return minus the last call start.
//   call     per participant per round: plain call latency (includes waiting
//            for the others).
//   unary_fanout_round  baseline measured in the same run, on the same
//            connections and threads: each round all participants line up
//            in-process and issue one trivial unary RPC (GetTopology without
//            waiting) at once; the last return minus the last call start.
//            What `round` costs beyond it is the barrier's own overhead.
// All in microseconds. Target (issue 3): release p50 <= 5 ms at 64
// participants.
//
// Thread safety: RunBarrierBench is self-contained; call it from one thread.
#ifndef TOKENRAIL_TOOLS_BENCH_BARRIER_BENCH_H_
#define TOKENRAIL_TOOLS_BENCH_BARRIER_BENCH_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {

struct BarrierBenchOptions {
  int participants = 64;     // 1..4096
  int rounds = 1000;         // timed rounds, >= 1
  int warmup = 50;           // untimed rounds first, >= 0
  size_t payload_bytes = 8;  // per participant, 8..1 MiB
  // Bound on each Barrier call and on joining.
  absl::Duration timeout = absl::Seconds(30);

  // InvalidArgument naming the field.
  absl::Status Validate() const;
};

inline constexpr double kBarrierTargetP50Us = 5000;

struct BarrierBenchResult {
  int participants = 0;
  int rounds = 0;
  size_t payload_bytes = 0;
  Summary release_us;
  Summary round_us;
  Summary call_us;
  Summary baseline_round_us;
  double rounds_per_second = 0;
  // Process CPU time (all threads: coordinator, clients, gRPC) per timed
  // round of the barrier and of the baseline: the work behind the latency,
  // which on a busy or small host bounds it from below.
  double cpu_us_per_round = 0;
  double baseline_cpu_us_per_round = 0;
  uint64_t payloads_verified = 0;
};

// Runs the benchmark. Errors: bad options (InvalidArgument), the coordinator
// or a member failing (its status), a payload mismatch (DataLoss naming the
// round, receiver and participant).
absl::StatusOr<BarrierBenchResult> RunBarrierBench(const BarrierBenchOptions& options);

// One record per metric ("release", "round", "call", "unary_fanout_round")
// and the table for them.
std::vector<Record> BarrierRecords(const BarrierBenchResult& result);
Table BarrierTable();

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_BARRIER_BENCH_H_
