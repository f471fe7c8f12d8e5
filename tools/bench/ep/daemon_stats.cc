#include "tools/bench/ep/daemon_stats.h"

#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "common/rpc/client.h"
#include "common/status.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

absl::StatusOr<std::unique_ptr<DaemonStats>> DaemonStats::Create(
    const DaemonStatsOptions& options) {
  std::unique_ptr<DaemonStats> d(new DaemonStats(options));
  if (!options.querier) return d;
  if (options.coordinator.empty() || options.job_id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("daemon stats: coordinator '",
                                                   options.coordinator, "' and job id '",
                                                   options.job_id, "' are both required"));
  }
  rpc::ClientOptions co;
  co.auth_token = options.auth_token;
  TR_ASSIGN_OR_RETURN(d->channel_, rpc::CreateChannel(options.coordinator, co));
  d->stub_ = v1::JobService::NewStub(d->channel_);
  return d;
}

absl::StatusOr<DaemonStats::Totals> DaemonStats::Read() {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  v1::GetStatsRequest req;
  req.set_job_id(o_.job_id);
  v1::JobStats stats;
  const grpc::Status s = stub_->GetStats(&ctx, req, &stats);
  if (!s.ok()) {
    return rpc::DescribeCallError(s, "JobService.GetStats", o_.coordinator, channel_.get());
  }
  return Totals{stats.inter_node_bytes(), stats.intra_node_bytes()};
}

absl::Status DaemonStats::Snapshot(int phase) {
  if (!o_.querier || phase < 0 || phase > 2) return absl::OkStatus();
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + o_.timeout;
  TR_ASSIGN_OR_RETURN(Totals last, Read());
  absl::Time changed = start;
  // Unchanged for `settle`: every daemon has reported at least once since
  // the phase ended (heartbeats are the only way counters reach the
  // coordinator).
  while (absl::Now() - changed < o_.settle) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("daemon stats did not settle within ", absl::FormatDuration(o_.timeout)));
    }
    absl::SleepFor(o_.poll);
    TR_ASSIGN_OR_RETURN(const Totals now, Read());
    if (!(now == last)) {
      last = now;
      changed = absl::Now();
    }
  }
  snap_[phase] = last;
  have_[phase] = true;
  waited_ += absl::Now() - start;
  return absl::OkStatus();
}

void DaemonStats::Report(Record* r) {
  if (!o_.querier || !have_[0] || !have_[1] || !have_[2]) return;
  r->Set("daemon_dispatch_inter_bytes", snap_[1].inter - snap_[0].inter)
      .Set("daemon_dispatch_intra_bytes", snap_[1].intra - snap_[0].intra)
      .Set("daemon_combine_inter_bytes", snap_[2].inter - snap_[1].inter)
      .Set("daemon_combine_intra_bytes", snap_[2].intra - snap_[1].intra)
      .Set("daemon_settle_ms", absl::ToDoubleMilliseconds(waited_));
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
