#include "tools/bench/ep/tokenrail_exchange.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

ep::EpConfig MakeEpConfig(const EpPlan& plan, const CaseSpec& spec) {
  ep::EpConfig c;
  const WorkloadSpec& w = plan.workload;
  c.topology = w.topology;
  c.top_k = w.top_k;
  c.max_nodes = w.max_nodes;
  c.hidden = w.hidden;
  c.dispatch_dtype = spec.dispatch_dtype;
  c.combine_dtype = spec.combine_dtype;
  c.fp8_keep_quantized = false;
  c.align = static_cast<int>(plan.align);
  if (plan.buffer_bytes > 0) c.buffer_bytes = plan.buffer_bytes;
  c.routing =
      spec.routing == EngineRouting::kFlat ? ep::EpRouting::kFlat : ep::EpRouting::kHierarchical;
  c.setup_timeout = plan.timeout;
  return c;
}

absl::Status TokenrailUnderTest::Barrier() { return buffer_.Barrier(Deadline()); }

absl::Status TokenrailUnderTest::Dispatch() {
  // The previous combine still refers to the previous dispatch: release
  // both before the next operation.
  combine_.reset();
  dispatch_.reset();
  ep::DispatchInput in;
  in.tokens = input_.tokens;
  in.x = x_dtype_ == ep::DType::kFloat32 ? static_cast<const void*>(input_.x_f32.data())
                                         : static_cast<const void*>(input_.x_bf16.data());
  in.x_dtype = x_dtype_;
  in.topk_idx = input_.topk_idx.data();
  in.topk_weights = input_.topk_weights.data();
  TR_ASSIGN_OR_RETURN(dispatch_, buffer_.Dispatch(in));
  TR_RETURN_IF_ERROR(dispatch_->Wait(Deadline()));
  dispatch_stats_ = dispatch_->stats();
  return absl::OkStatus();
}

absl::StatusOr<DispatchView> TokenrailUnderTest::View() {
  if (dispatch_ == nullptr) return absl::FailedPreconditionError("no completed dispatch");
  const ep::DispatchOutput& o = dispatch_->output();
  if (o.x_dtype != ep::DType::kFloat32 && o.x_dtype != ep::DType::kBFloat16) {
    return absl::UnimplementedError(
        absl::StrCat("the benchmark's experts take fp32 or bf16 rows, "
                     "the engine handed ",
                     ep::DTypeName(o.x_dtype)));
  }
  DispatchView v;
  v.rows = o.rows;
  v.src_rank = o.src_rank;
  v.src_token = o.src_token;
  v.local_expert = o.local_expert;
  v.weight = o.weights;
  v.expert_counts = o.expert_counts;
  v.x = o.x;
  v.x_dtype = o.x_dtype;
  v.x_stride = o.hidden;
  return v;
}

absl::Status TokenrailUnderTest::Combine(const void* expert_out, ep::DType dtype) {
  if (dispatch_ == nullptr) return absl::FailedPreconditionError("combine before dispatch");
  TR_ASSIGN_OR_RETURN(combine_, buffer_.Combine(dispatch_, ep::CombineInput{expert_out, dtype}));
  TR_RETURN_IF_ERROR(combine_->Wait(Deadline()));
  combine_stats_ = combine_->stats();
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<const float>> TokenrailUnderTest::Y() {
  if (combine_ == nullptr) return absl::FailedPreconditionError("no completed combine");
  return combine_->y();
}

ByteCounters TokenrailUnderTest::Counters() {
  const ep::EpStats s = buffer_.stats();
  return ByteCounters{s.intra_node_bytes, s.inter_node_bytes};
}

void TokenrailUnderTest::Report(Record* r) const {
  for (const auto& [prefix, s] :
       {std::pair<const char*, const ep::EpOpStats*>{"dispatch_op_", &dispatch_stats_},
        {"combine_op_", &combine_stats_}}) {
    const std::string p = prefix;
    r->Set(p + "inter_record_bytes", s->inter_node_record_bytes)
        .Set(p + "inter_metadata_bytes", s->inter_node_metadata_bytes)
        .Set(p + "inter_credit_bytes", s->inter_node_credit_bytes)
        .Set(p + "inter_chunks", s->inter_node_chunks)
        .Set(p + "inter_records", s->inter_node_records)
        .Set(p + "intra_bytes", s->intra_node_bytes)
        .Set(p + "intra_records", s->intra_node_records)
        .Set(p + "self_bytes", s->self_bytes)
        .Set(p + "engine_us", absl::ToDoubleMicroseconds(s->engine_time));
  }
  r->Set("region_bytes", static_cast<uint64_t>(buffer_.region_bytes()));
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
