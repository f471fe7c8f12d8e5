// `tokenrail-bench transport`: point-to-point transport benchmark between two
// processes (this host, or two hosts / network namespaces): put + notification
// ping-pong latency and windowed uni- and bidirectional put bandwidth, with
// data verification and a memcpy baseline measured in the same run.
//
// Roles: the leader owns the options, resolves them into a Plan per backend,
// sends it over the OOB channel, runs its side and prints one row per
// (backend, mode, size). The follower runs whatever plan it receives and
// reports its side of every test back. Local mode spawns the follower as a
// copy of this executable.
//
// Results (JSON field names; the table shows the same):
//   bench, backend, params, mode (lat|bw|bibw), size, iters, warmup, window,
//   slots, p50_us, p99_us, min_us, max_us, mean_us   lat: one-way latency
//                                                    bw/bibw: the sender's time per
//                                                    put, averaged over chunks of
//                                                    `window` puts
//   gbytes_per_s (bibw: both directions together), fwd_gbytes_per_s,
//   rev_gbytes_per_s (bibw), baseline, baseline_gbytes_per_s,
//   baseline_p50_us, ratio (= gbytes_per_s / baseline_gbytes_per_s),
//   verified, checked (messages verified), full_checks, error (when not
//   verified). 1 GB = 1e9 bytes.
//
// Blocking: everything runs on the calling thread; every wait is bounded by
// the plan's timeout (no progress for that long is DeadlineExceeded).
#ifndef TOKENRAIL_TOOLS_BENCH_TRANSPORT_BENCH_H_
#define TOKENRAIL_TOOLS_BENCH_TRANSPORT_BENCH_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/bench/plan.h"
#include "tools/bench/report.h"
#include "transport/oob.h"

namespace tokenrail {
namespace bench {

// The table layout of transport results.
Table TransportTable();

// Backends the leader will measure, in order: options.backend alone when set
// (NotFound if it is not registered), else every backend the `transports`
// filter allows that probes OK and reaches the peer (intra- or inter-node).
absl::StatusOr<std::vector<std::string>> ResolveBackends(const TransportBenchOptions& options);

// Runs the leader's side over `oob` for every backend, printing rows as they
// complete. Transport and protocol errors abort with their status; data
// verification failures let the run finish and then return DataLoss listing
// them. Always tells the follower goodbye (best effort) before returning.
absl::Status RunTransportLeader(const TransportBenchOptions& options, transport::OobChannel& oob,
                                Printer& printer);

// RunTransportLeader for other benchmarks: the rows as records instead of
// printed. A failed run's status is returned with `what` in front.
absl::StatusOr<std::vector<Record>> RunTransportLeaderRecords(const TransportBenchOptions& options,
                                                              transport::OobChannel& oob,
                                                              absl::string_view what);

struct FollowerOptions {
  std::string name = "bench-follower";
  std::map<std::string, std::string> params;   // override the leader's
  absl::Duration timeout = absl::Seconds(60);  // waiting for the next plan
};

// Runs plans from the leader until it says goodbye. Returns the number of
// tests run, or the first transport/protocol error, or DataLoss when data
// this side received failed verification.
absl::StatusOr<size_t> RunTransportFollower(const FollowerOptions& options,
                                            transport::OobChannel& oob);

// Local mode: listens on 127.0.0.1, starts `peer_argv` (this executable as
// the follower; "--connect=127.0.0.1:PORT" is appended), leads the run and
// reaps the peer. A peer that fails makes the run fail.
absl::Status RunTransportLocal(const TransportBenchOptions& options,
                               std::vector<std::string> peer_argv, Printer& printer);

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_TRANSPORT_BENCH_H_
