// The tokenrail engine (runtime/ep/buffer.h) as an ExchangeUnderTest of the
// rank loop: Dispatch = EpBuffer::Dispatch + Wait, Combine = EpBuffer::
// Combine + Wait, Barrier = EpBuffer::Barrier (the buffer owns the rank
// client's data path, so barriers go through it). The per-operation
// EpOpStats of the last dispatch and combine are kept for the report.
//
// Thread safety: one thread (the rank's main thread issues every operation).
#ifndef TOKENRAIL_TOOLS_BENCH_EP_TOKENRAIL_EXCHANGE_H_
#define TOKENRAIL_TOOLS_BENCH_EP_TOKENRAIL_EXCHANGE_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/ep/buffer.h"
#include "runtime/ep/config.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/ep/rank_loop.h"
#include "tools/bench/ep/workload.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

// The engine configuration of `spec` in `plan`.
ep::EpConfig MakeEpConfig(const EpPlan& plan, const CaseSpec& spec);

class TokenrailUnderTest : public ExchangeUnderTest {
 public:
  // `buffer` and `input` must outlive this object; `timeout` bounds every
  // wait.
  TokenrailUnderTest(ep::EpBuffer& buffer, const RankWorkload& input, ep::DType x_dtype,
                     absl::Duration timeout)
      : buffer_(buffer), input_(input), x_dtype_(x_dtype), timeout_(timeout) {}

  absl::Status Barrier() override;
  absl::Status Dispatch() override;
  absl::StatusOr<DispatchView> View() override;
  absl::Status Combine(const void* expert_out, ep::DType dtype) override;
  absl::StatusOr<absl::Span<const float>> Y() override;
  ByteCounters Counters() override;

  // Adds the last dispatch's and combine's EpOpStats ("dispatch_op_*",
  // "combine_op_*" fields) and the region size.
  void Report(Record* record) const;

 private:
  absl::Time Deadline() const { return absl::Now() + timeout_; }

  ep::EpBuffer& buffer_;
  const RankWorkload& input_;
  ep::DType x_dtype_;
  absl::Duration timeout_;
  std::shared_ptr<ep::DispatchHandle> dispatch_;
  std::shared_ptr<ep::CombineHandle> combine_;
  ep::EpOpStats dispatch_stats_, combine_stats_;
};

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_TOKENRAIL_EXCHANGE_H_
