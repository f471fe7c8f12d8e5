// The daemons' own counters around the benchmark's accounting iteration,
// read through the control plane (JobService.GetStats on the coordinator),
// independently of the engine's EpStats: the benchmark compares the two.
//
// The coordinator serves the counters the daemons last sent with their
// heartbeats (every heartbeat interval, 500 ms by default), so a snapshot
// polls until the job totals stayed unchanged for `settle` (3 heartbeats by
// default) after the operation completed on every rank (the rank loop calls
// Snapshot between barriers).
//
// Only one rank (the querier, global rank 0) talks to the coordinator; the
// others' Snapshot returns at once and they wait in the next barrier.
//
// Thread safety: one thread.
#ifndef TOKENRAIL_TOOLS_BENCH_EP_DAEMON_STATS_H_
#define TOKENRAIL_TOOLS_BENCH_EP_DAEMON_STATS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/tokenrail/v1/job.grpc.pb.h"
#include "tools/bench/ep/rank_loop.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

struct DaemonStatsOptions {
  std::string coordinator;  // HOST:PORT of the JobService
  std::string auth_token;   // bearer token; empty: none
  std::string job_id;
  bool querier = false;
  absl::Duration settle = absl::Milliseconds(1500);
  absl::Duration poll = absl::Milliseconds(100);
  absl::Duration timeout = absl::Seconds(30);  // per snapshot
};

class DaemonStats : public Accounting {
 public:
  // InvalidArgument for a missing coordinator or job id (querier only).
  static absl::StatusOr<std::unique_ptr<DaemonStats>> Create(const DaemonStatsOptions& options);

  absl::Status Snapshot(int phase) override;
  // Querier: daemon_dispatch_{inter,intra}_bytes, daemon_combine_{inter,
  // intra}_bytes (job totals, deltas over the phase), daemon_settle_ms.
  void Report(Record* record) override;

 private:
  struct Totals {
    uint64_t inter = 0, intra = 0;
    bool operator==(const Totals& o) const { return inter == o.inter && intra == o.intra; }
  };
  explicit DaemonStats(DaemonStatsOptions options) : o_(std::move(options)) {}
  absl::StatusOr<Totals> Read();

  DaemonStatsOptions o_;
  std::unique_ptr<v1::JobService::Stub> stub_;
  std::shared_ptr<grpc::Channel> channel_;
  Totals snap_[3];
  bool have_[3] = {false, false, false};
  absl::Duration waited_;
};

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_DAEMON_STATS_H_
