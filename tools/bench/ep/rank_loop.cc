#include "tools/bench/ep/rank_loop.h"

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/bytes.h"
#include "common/status.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

std::string JoinSamples(const std::vector<double>& samples) {
  return absl::StrJoin(
      samples, ",", [](std::string* out, double v) { absl::StrAppend(out, absl::SixDigits(v)); });
}

absl::StatusOr<std::vector<double>> SplitSamples(absl::string_view text) {
  std::vector<double> out;
  if (text.empty()) return out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    double v;
    if (!absl::SimpleAtod(item, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("sample '", item, "' is not a number"));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<Record> RunCase(ExchangeUnderTest& x, const Checker& checker, const CaseSpec& spec,
                               const EpPlan& plan, Accounting* accounting) {
  const WorkloadSpec& w = checker.spec();
  const int64_t H = w.hidden;
  const uint64_t total = plan.warmup + plan.iters;
  std::vector<double> dispatch_us, combine_us;
  std::vector<char> expert_out;
  absl::Status first_error;
  int64_t rows = 0, rows_checked = 0, fp8_inexact = 0, verified_iters = 0;
  bool stable = true, have_crc = false, bytes_constant = true;
  uint32_t first_crc = 0;
  ByteCounters dispatch_bytes, combine_bytes;  // of the last timed iteration
  bool have_bytes = false;

  const auto record_error = [&](const absl::Status& s, uint64_t i) {
    if (first_error.ok()) first_error = Annotate(s, absl::StrCat("iteration ", i));
  };

  // The expert step: identity experts hand the dispatch rows back as they
  // are; linear ones are computed into expert_out.
  const auto run_experts = [&](const DispatchView& view) -> const void* {
    if (w.expert == ExpertKind::kIdentity && view.x_stride == H) return view.x;
    const size_t bytes = static_cast<size_t>(view.rows) * H * ep::DTypeSize(spec.expert_dtype);
    if (expert_out.size() < bytes) expert_out.resize(bytes);
    checker.RunExperts(view, expert_out.data());
    return expert_out.data();
  };

  for (uint64_t i = 0; i < total; ++i) {
    const bool timed = i >= plan.warmup;
    const bool verify = i % plan.verify_every == 0 || i + 1 == plan.warmup || i + 1 == total;
    TR_RETURN_IF_ERROR(x.Barrier());
    const ByteCounters c0 = x.Counters();
    int64_t t0 = NowNanos();
    TR_RETURN_IF_ERROR(x.Dispatch());
    int64_t t1 = NowNanos();
    const ByteCounters c1 = x.Counters();
    // Nobody verifies (a CPU-heavy step) while another rank's operation is
    // still running: with more ranks than cores it would slow that rank.
    TR_RETURN_IF_ERROR(x.Barrier());
    TR_ASSIGN_OR_RETURN(const DispatchView view, x.View());
    rows = view.rows;
    if (verify) {
      absl::StatusOr<DispatchCheck> d = checker.CheckDispatch(view);
      if (d.ok()) {
        rows_checked += d->rows_checked;
        fp8_inexact += d->fp8_inexact_rows;
      } else {
        record_error(d.status(), i);
      }
    }
    const void* out = run_experts(view);
    TR_RETURN_IF_ERROR(x.Barrier());
    const ByteCounters c2 = x.Counters();
    const int64_t t2 = NowNanos();
    TR_RETURN_IF_ERROR(x.Combine(out, spec.expert_dtype));
    const int64_t t3 = NowNanos();
    const ByteCounters c3 = x.Counters();
    TR_RETURN_IF_ERROR(x.Barrier());
    TR_ASSIGN_OR_RETURN(const absl::Span<const float> y, x.Y());
    if (verify) {
      const absl::Status s = checker.CheckCombine(y);
      if (s.ok()) {
        ++verified_iters;
      } else {
        record_error(s, i);
      }
      const uint32_t crc = Crc32c(
          absl::string_view(reinterpret_cast<const char*>(y.data()), y.size() * sizeof(float)));
      if (have_crc && crc != first_crc) stable = false;
      first_crc = have_crc ? first_crc : crc;
      have_crc = true;
    }
    if (!timed) continue;
    dispatch_us.push_back(static_cast<double>(t1 - t0) / 1e3);
    combine_us.push_back(static_cast<double>(t3 - t2) / 1e3);
    const ByteCounters d{c1.intra_node - c0.intra_node, c1.inter_node - c0.inter_node};
    const ByteCounters c{c3.intra_node - c2.intra_node, c3.inter_node - c2.inter_node};
    if (have_bytes &&
        (d.intra_node != dispatch_bytes.intra_node || d.inter_node != dispatch_bytes.inter_node ||
         c.intra_node != combine_bytes.intra_node || c.inter_node != combine_bytes.inter_node)) {
      bytes_constant = false;
    }
    dispatch_bytes = d;
    combine_bytes = c;
    have_bytes = true;
  }

  if (accounting != nullptr) {
    TR_RETURN_IF_ERROR(x.Barrier());
    TR_RETURN_IF_ERROR(accounting->Snapshot(0));
    TR_RETURN_IF_ERROR(x.Barrier());
    TR_RETURN_IF_ERROR(x.Dispatch());
    TR_ASSIGN_OR_RETURN(const DispatchView view, x.View());
    TR_RETURN_IF_ERROR(x.Barrier());
    TR_RETURN_IF_ERROR(accounting->Snapshot(1));
    const void* out = run_experts(view);
    TR_RETURN_IF_ERROR(x.Barrier());
    TR_RETURN_IF_ERROR(x.Combine(out, spec.expert_dtype));
    TR_RETURN_IF_ERROR(x.Barrier());
    TR_RETURN_IF_ERROR(accounting->Snapshot(2));
  }

  const Traffic& tr = checker.traffic();
  Record r;
  r.Set("case", spec.name).Set("rank", checker.rank());
  r.Set("iters", plan.iters).Set("warmup", plan.warmup);
  r.Set("dispatch_us", JoinSamples(dispatch_us)).Set("combine_us", JoinSamples(combine_us));
  r.Set("verified", first_error.ok()).Set("verified_iters", verified_iters);
  if (!first_error.ok()) r.Set("error", first_error.ToString());
  r.Set("rows", rows).Set("rows_checked", rows_checked).Set("fp8_inexact_rows", fp8_inexact);
  r.Set("recv_tokens", checker.expected_received_tokens());
  r.Set("stable", stable);
  r.Set("dispatch_intra_bytes", dispatch_bytes.intra_node)
      .Set("dispatch_inter_bytes", dispatch_bytes.inter_node)
      .Set("combine_intra_bytes", combine_bytes.intra_node)
      .Set("combine_inter_bytes", combine_bytes.inter_node)
      .Set("bytes_constant", bytes_constant);
  r.Set("tokens", tr.tokens)
      .Set("routed_slots", tr.routed_slots)
      .Set("remote_node_copies", tr.remote_node_copies)
      .Set("remote_rank_copies", tr.remote_rank_copies)
      .Set("local_rank_copies", tr.local_rank_copies)
      .Set("self_copies", tr.self_copies);
  std::vector<double> per_expert(tr.tokens_per_expert.begin(), tr.tokens_per_expert.end());
  r.Set("tokens_per_expert", JoinSamples(per_expert));
  if (accounting != nullptr) accounting->Report(&r);
  return r;
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
