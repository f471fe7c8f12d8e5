// The dispatch operation's class (internal to dispatch*.cc): the counts
// phase is in dispatch_counts.cc, the data steps in dispatch.cc.
#ifndef TOKENRAIL_RUNTIME_EP_DISPATCH_OP_H_
#define TOKENRAIL_RUNTIME_EP_DISPATCH_OP_H_

#include <memory>
#include <string>
#include <vector>

#include "runtime/ep/dispatch.h"
#include "runtime/ep/engine.h"
#include "runtime/ep/wire.h"

namespace tokenrail {
namespace ep {
namespace dispatch_internal {

// Records one step handles per role before letting the others run.
inline constexpr int kStepBudget = 128;

class DispatchOp final : public Op {
 public:
  DispatchOp(std::shared_ptr<const DispatchPlan> reused, std::shared_ptr<DispatchPlan> building,
             const DispatchInput& input, std::shared_ptr<DispatchHandle::State> state)
      : building_(std::move(building)),
        plan_(reused != nullptr ? std::move(reused) : building_),
        reuse_(building_ == nullptr),
        in_(input),
        st_(std::move(state)) {}

  absl::Status Start(Wiring& w) override;
  absl::StatusOr<bool> Step(Wiring& w) override;
  bool done() const override { return source_done_ && forward_done_ && receive_done_; }
  void Complete(const absl::Status& status, Wiring& w, const EpOpStats& stats) override;
  std::string Describe() const override;
  void AddStats(EpStats* stats) const override {
    ++stats->dispatches;
    for (size_t e = 0; e < plan_->expert_counts.size() && e < stats->tokens_per_expert.size();
         ++e) {
      stats->tokens_per_expert[e] += static_cast<uint64_t>(plan_->expert_counts[e]);
    }
  }

 private:
  // Counts phase; each returns progress.
  absl::StatusOr<bool> SendPeerCounts(Wiring& w);
  absl::StatusOr<bool> ReceivePeerCounts(Wiring& w);
  absl::StatusOr<bool> WriteChannelCounts(Wiring& w);
  absl::StatusOr<bool> ReadChannelCounts(Wiring& w);
  absl::Status SetupReceiver(Wiring& w);
  absl::Status AllocateOutputs(Wiring& w);

  absl::StatusOr<bool> SourceStep(Wiring& w);
  absl::StatusOr<bool> ForwardStep(Wiring& w);
  absl::StatusOr<bool> ReceiveStep(Wiring& w);
  absl::Status Place(Wiring& w, const char* rec, int expected_src, int via_local);
  absl::Status FinishReceive(Wiring& w);
  void PackRecord(const Wiring& w, int64_t t, char* rec);

  bool counts_done() const {
    return reuse_ || (receiver_ready_ && channel_counts_out_ == out_total_);
  }

  std::shared_ptr<DispatchPlan> building_;  // null when reusing
  std::shared_ptr<const DispatchPlan> plan_;
  const bool reuse_;
  const DispatchInput in_;
  std::shared_ptr<DispatchHandle::State> st_;
  absl::Status soft_;  // an input problem of this rank only (FP8 of a non-finite value)

  // Counts phase.
  std::vector<bool> peer_counts_sent_;
  std::vector<bool> peer_counts_in_;
  std::vector<PeerCounts> peer_counts_;
  std::vector<std::string> channel_msg_;
  std::vector<bool> channel_written_;
  int channel_counts_out_ = 0;
  int out_total_ = 0;
  std::vector<bool> channel_read_;
  std::vector<ChannelCounts> channel_counts_;
  bool receiver_ready_ = false;

  // Source.
  int64_t next_token_ = 0;
  bool source_done_ = false;

  // Forwarder (hierarchical).
  std::vector<int64_t> fwd_done_, fwd_expected_;
  std::vector<int32_t> fwd_last_;
  bool forward_done_ = false;

  // Receiver.
  std::vector<int64_t> ch_received_, ch_expected_;
  std::vector<int64_t> peer_received_, peer_expected_;
  std::vector<int32_t> count_;       // [world * epr] (new layout)
  std::vector<int64_t> base_;        // [world * epr]
  std::vector<int32_t> cursor_;      // [world * epr]
  std::vector<int32_t> last_token_;  // [world]
  std::vector<size_t> next_from_;    // [world] (reuse)
  bool receive_done_ = false;
  size_t row_bytes_ = 0;
  int64_t tiles_ = 0;
  std::vector<int64_t> rows_scratch_;
};

}  // namespace dispatch_internal
}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_DISPATCH_OP_H_
