// EpBuffer: input validation, handles, and the barrier operation. The
// engine (engine.cc) runs what is queued here.
#include "runtime/ep/buffer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "runtime/ep/combine.h"
#include "runtime/ep/dispatch.h"
#include "runtime/ep/engine.h"

namespace tokenrail {
namespace ep {
namespace {

absl::Status WaitDone(absl::Mutex& mu, const bool& done, const absl::Status& status,
                      absl::Time deadline, const char* what) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  absl::MutexLock lock(&mu);
  if (!mu.AwaitWithDeadline(absl::Condition(&done), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat(what, " has not completed by the deadline (it is still pending)"));
  }
  return status;
}

bool IsDone(absl::Mutex& mu, const bool& done) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  absl::MutexLock lock(&mu);
  return done;
}

// Runs the rank client's barrier on the engine thread, in operation order.
// Its timeout starts when the engine reaches it, not when it was queued: a
// barrier behind a slow operation must not start with an expired deadline
// (which would fail the buffer, see RunBlocking).
class BarrierOp final : public Op {
 public:
  struct Result {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
  };
  BarrierOp(absl::Duration timeout, std::shared_ptr<Result> result)
      : timeout_(timeout), result_(std::move(result)) {}

  absl::Status Start(Wiring&) override { return absl::OkStatus(); }
  absl::StatusOr<bool> Step(Wiring&) override { return false; }
  bool done() const override { return true; }
  bool blocking() const override { return true; }
  // A barrier that fails (even by its deadline) leaves the ranks' operation
  // sequences misaligned: the engine then fails the buffer.
  absl::Status RunBlocking(Wiring& w) override {
    return Annotate(w.comm->Barrier(absl::Now() + timeout_), "EpBuffer::Barrier");
  }
  void Complete(const absl::Status& status, Wiring&, const EpOpStats&) override {
    absl::MutexLock lock(&result_->mu);
    result_->status = status;
    result_->done = true;
  }
  std::string Describe() const override { return absl::StrCat("barrier (operation ", op_seq, ")"); }
  void AddStats(EpStats*) const override {}

 private:
  const absl::Duration timeout_;
  std::shared_ptr<Result> result_;
};

absl::Status ValidateInput(const DispatchInput& in) {
  if (in.tokens < 0 || in.tokens > kMaxDispatchTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("Dispatch: tokens=", in.tokens, " must be in 0..", kMaxDispatchTokens));
  }
  if (in.x_dtype != DType::kFloat32 && in.x_dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat("Dispatch: x_dtype=", static_cast<int>(in.x_dtype), " must be fp32 or bf16"));
  }
  if (in.tokens > 0 && (in.x == nullptr || in.topk_idx == nullptr || in.topk_weights == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Dispatch: ", in.tokens, " tokens but x=", in.x == nullptr ? "null" : "set",
                     " topk_idx=", in.topk_idx == nullptr ? "null" : "set",
                     " topk_weights=", in.topk_weights == nullptr ? "null" : "set"));
  }
  return absl::OkStatus();
}

}  // namespace

// ---- handles ----

absl::Status DispatchHandle::Wait(absl::Time deadline) const {
  return WaitDone(state_->mu, state_->done, state_->status, deadline, "the dispatch");
}
bool DispatchHandle::done() const { return IsDone(state_->mu, state_->done); }
const DispatchOutput& DispatchHandle::output() const {
  TR_CHECK(IsDone(state_->mu, state_->done) && state_->plan != nullptr)
      << "DispatchHandle::output() before a successful Wait";
  return state_->output;
}
const EpOpStats& DispatchHandle::stats() const { return state_->stats; }

absl::Status CombineHandle::Wait(absl::Time deadline) const {
  return WaitDone(state_->mu, state_->done, state_->status, deadline, "the combine");
}
bool CombineHandle::done() const { return IsDone(state_->mu, state_->done); }
absl::Span<const float> CombineHandle::y() const {
  TR_CHECK(IsDone(state_->mu, state_->done)) << "CombineHandle::y() before Wait";
  return absl::Span<const float>(reinterpret_cast<const float*>(state_->y.data()),
                                 static_cast<size_t>(state_->elements));
}
const EpOpStats& CombineHandle::stats() const { return state_->stats; }

// ---- EpBuffer ----

EpBuffer::EpBuffer(EpConfig config, std::unique_ptr<EpComm> owned_comm,
                   std::unique_ptr<Engine> engine)
    : config_(std::move(config)), owned_comm_(std::move(owned_comm)), engine_(std::move(engine)) {}

EpBuffer::~EpBuffer() { engine_.reset(); }

absl::StatusOr<std::unique_ptr<EpBuffer>> EpBuffer::Create(EpComm* comm, const EpConfig& config) {
  if (comm == nullptr) return absl::InvalidArgumentError("EpBuffer::Create: comm is null");
  TR_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(comm, config));
  return std::unique_ptr<EpBuffer>(new EpBuffer(config, nullptr, std::move(engine)));
}

absl::StatusOr<std::unique_ptr<EpBuffer>> EpBuffer::CreateOwning(std::unique_ptr<EpComm> comm,
                                                                 const EpConfig& config) {
  if (comm == nullptr) return absl::InvalidArgumentError("EpBuffer::Create: comm is null");
  TR_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(comm.get(), config));
  return std::unique_ptr<EpBuffer>(new EpBuffer(config, std::move(comm), std::move(engine)));
}

const CommTopology& EpBuffer::topology() const { return engine_->wiring().topo; }
size_t EpBuffer::region_bytes() const { return engine_->wiring().plan.total_bytes; }
EpStats EpBuffer::stats() const { return engine_->stats(); }
absl::Status EpBuffer::status() const { return engine_->status(); }
std::string EpBuffer::Progress() const { return engine_->Progress(); }

absl::StatusOr<std::shared_ptr<DispatchHandle>> EpBuffer::Dispatch(
    const DispatchInput& input, std::shared_ptr<const DispatchHandle> reuse_layout) {
  absl::MutexLock lock(&submit_mu_);
  TR_RETURN_IF_ERROR(engine_->status());
  TR_RETURN_IF_ERROR(ValidateInput(input));
  const Wiring& w = engine_->wiring();
  auto state = std::make_shared<DispatchHandle::State>();
  state->buffer_id = engine_->id();
  std::shared_ptr<const DispatchPlan> reused;
  std::shared_ptr<DispatchPlan> building;
  if (reuse_layout != nullptr) {
    const DispatchHandle::State& prev = *reuse_layout->state();
    if (prev.buffer_id != engine_->id()) {
      return absl::InvalidArgumentError("Dispatch: the reused layout belongs to another EpBuffer");
    }
    absl::Status prev_status = reuse_layout->Wait(absl::InfinitePast());
    if (prev_status.code() == absl::StatusCode::kDeadlineExceeded || prev.plan == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("Dispatch: the reused layout's dispatch has not completed its exchange (",
                       prev_status.ToString(), ")"));
    }
    reused = prev.plan;
    TR_RETURN_IF_ERROR(CheckReuse(w, *reused, input));
  } else {
    TR_ASSIGN_OR_RETURN(building, BuildSourcePlan(w, input));
  }
  TR_RETURN_IF_ERROR(
      engine_->Submit(MakeDispatchOp(std::move(reused), std::move(building), input, state)));
  return std::make_shared<DispatchHandle>(std::move(state));
}

absl::StatusOr<std::shared_ptr<CombineHandle>> EpBuffer::Combine(
    std::shared_ptr<const DispatchHandle> dispatch, const CombineInput& input) {
  absl::MutexLock lock(&submit_mu_);
  TR_RETURN_IF_ERROR(engine_->status());
  if (dispatch == nullptr) return absl::InvalidArgumentError("Combine: no dispatch handle");
  const std::shared_ptr<DispatchHandle::State>& d = dispatch->state();
  if (d->buffer_id != engine_->id()) {
    return absl::InvalidArgumentError("Combine: the dispatch belongs to another EpBuffer");
  }
  if (input.dtype != DType::kFloat32 && input.dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Combine: expert output dtype ", static_cast<int>(input.dtype), " must be fp32 or bf16"));
  }
  absl::Status ds = dispatch->Wait(absl::InfinitePast());
  if (ds.code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::FailedPreconditionError(
        "Combine: the dispatch has not completed yet; Wait on it (its rows are the combine input)");
  }
  // A dispatch that completed the exchange but reported an input problem of
  // this rank (FP8 of a non-finite value) still has its layout: combine
  // runs, so the other ranks are not left waiting.
  if (d->plan == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("Combine: the dispatch failed: ", ds.ToString()));
  }
  if (d->plan->rows > 0 && input.expert_out == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("Combine: expert_out is null for ", d->plan->rows, " rows"));
  }
  auto state = std::make_shared<CombineHandle::State>();
  TR_RETURN_IF_ERROR(engine_->Submit(MakeCombineOp(d, input, state)));
  return std::make_shared<CombineHandle>(std::move(state));
}

absl::Status EpBuffer::Barrier(absl::Time deadline) {
  auto result = std::make_shared<BarrierOp::Result>();
  {
    absl::MutexLock lock(&submit_mu_);
    TR_RETURN_IF_ERROR(engine_->status());
    // The caller's remaining time, measured now, bounds the barrier itself
    // from when it starts.
    TR_RETURN_IF_ERROR(
        engine_->Submit(std::make_unique<BarrierOp>(deadline - absl::Now(), result)));
  }
  // Queued behind a slow operation, the barrier may still be pending at
  // `deadline`: the caller gets DeadlineExceeded and the barrier runs later.
  // Not queued, it ends by about `deadline` itself; the margin lets its own
  // result (naming what failed) reach the caller.
  return WaitDone(result->mu, result->done, result->status, deadline + absl::Seconds(1),
                  "the barrier");
}

}  // namespace ep
}  // namespace tokenrail
