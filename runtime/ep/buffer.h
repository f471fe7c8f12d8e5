// EpBuffer: expert-parallel dispatch and combine between the ranks of a job
// (DeepEP's internode design on the tokenrail runtime). One per rank.
//
//   TR_ASSIGN_OR_RETURN(auto buf, EpBuffer::Create(rank_client, config));   // collective
//   TR_ASSIGN_OR_RETURN(auto d, buf->Dispatch({tokens, x, DType::kFloat32, idx, w}));
//   ... compute something else: the engine thread moves the data ...
//   TR_RETURN_IF_ERROR(d->Wait(deadline));
//   const DispatchOutput& in = d->output();   // rows grouped by local expert
//   run the experts on in.x -> out (in.rows x hidden)
//   TR_ASSIGN_OR_RETURN(auto c, buf->Combine(d, {out.data(), DType::kBFloat16}));
//   TR_RETURN_IF_ERROR(c->Wait(deadline));   // c->y(): [tokens x hidden] FP32
//
// Dispatch (hierarchical routing, see config.h): counts first, so receivers
// size and place everything; then each token goes once to each destination
// node's rail rank (same local index) through the daemons, which forwards it
// inside the node (direct stores into the shared arena) to each rank holding
// one of its experts, one copy per rank. Rank r's output: its received rows
// grouped by local expert (expert-major; inside an expert ordered by (source
// rank, source token); blocks padded with zero rows to `align`), exactly
// what ReferenceDispatch (reference.h) produces, plus per-row metadata.
//
// Combine (the same paths backwards, reducing on the way):
//   receiver:  part = sum over its rows of the token, ascending local expert,
//              of weight * expert_out (FP32), sent in combine_dtype
//   forwarder: node part = sum of its local ranks' parts, ascending local
//              rank (FP32), sent in combine_dtype
//   source:    y = 0 + sum of the parts that reach it, in ascending order of
//              the sending rank's global rank (FP32)
// The order is fixed, so combine is bitwise deterministic: identical bits
// across runs, buffer sizes and timing. It differs from the reference's
// slot-order sum by float rounding only.
//
// Asynchrony and collectives: Dispatch/Combine/Barrier validate, enqueue and
// return at once; a per-buffer engine thread runs the operations in order
// (with the daemon's proxy for inter-node puts), so the caller's threads are
// not needed for progress. They are collective: every rank must issue the
// same sequence of operations (a rank with no tokens still calls Dispatch).
// An input error returns InvalidArgument on the calling rank without
// enqueuing anything, so the others will wait (and time out).
//
// Failure: when the job fails (a rank or daemon died) every pending and later
// operation completes with the runtime's Unavailable naming the dead rank or
// node; every Wait has a deadline (DeadlineExceeded, the operation stays
// pending). A failed buffer stays failed.
//
// The buffer takes over the rank client's data path (puts, notifications):
// the caller must not use the client for anything but reading its topology
// while the buffer exists (use EpBuffer::Barrier for barriers).
//
// Thread safety: Dispatch, Combine, Barrier and stats() may be called from
// any thread, but operations are ordered by the calls: issue them from one
// thread (or serialize them) so the order is the same on every rank.
// Handles may be waited on from any thread.
#ifndef TOKENRAIL_RUNTIME_EP_BUFFER_H_
#define TOKENRAIL_RUNTIME_EP_BUFFER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "runtime/ep/comm.h"
#include "runtime/ep/config.h"

namespace tokenrail {
namespace runtime {
class RankClient;
}  // namespace runtime

namespace ep {

class Engine;

// Tokens one rank may dispatch at once (token indices travel as int32).
inline constexpr int64_t kMaxDispatchTokens = (int64_t{1} << 31) - 1;

// Bytes and records of one operation on this rank.
struct EpOpStats {
  // Proxy puts to other nodes posted by this rank.
  uint64_t inter_node_record_bytes = 0;    // records (tokens x destination peers x record)
  uint64_t inter_node_metadata_bytes = 0;  // chunk headers (32 B each) + counts bodies
  uint64_t inter_node_credit_bytes = 0;    // flow-control credits (8 B each)
  uint64_t inter_node_chunks = 0;
  uint64_t inter_node_records = 0;
  // Direct stores into other local ranks' channels (records + counts).
  uint64_t intra_node_bytes = 0;
  uint64_t intra_node_records = 0;
  // Copies into this rank's own channels (a token for itself).
  uint64_t self_bytes = 0;
  // Engine time from the start of the operation to its completion.
  absl::Duration engine_time;

  uint64_t inter_node_bytes() const {
    return inter_node_record_bytes + inter_node_metadata_bytes + inter_node_credit_bytes;
  }
};

// Cumulative counters of one rank.
struct EpStats {
  uint64_t dispatches = 0;
  uint64_t combines = 0;
  uint64_t intra_node_bytes = 0;
  uint64_t inter_node_bytes = 0;  // records + metadata + credits
  uint64_t inter_node_record_bytes = 0;
  std::vector<uint64_t> tokens_per_expert;  // rows received per local expert
};

struct DispatchInput {
  int64_t tokens = 0;
  const void* x = nullptr;              // [tokens x hidden]
  DType x_dtype = DType::kFloat32;      // kFloat32 or kBFloat16
  const int32_t* topk_idx = nullptr;    // [tokens x top_k], -1 = none
  const float* topk_weights = nullptr;  // [tokens x top_k]
};

// A completed dispatch's rows (valid while the handle lives).
struct DispatchOutput {
  int64_t rows = 0;  // including padding
  int64_t hidden = 0;
  DType x_dtype = DType::kFloat32;  // ExpertDType(dispatch_dtype, fp8_keep_quantized)
  const void* x = nullptr;          // [rows x hidden] of x_dtype
  const float* x_scales = nullptr;  // fp8 kept: [rows x tiles], else null
  absl::Span<const float> weights;  // [rows], 0 on padding
  // Per row: source global rank and token (-1 on padding), local expert,
  // slot in the source token's topk_idx (-1 on padding).
  absl::Span<const int32_t> src_rank;
  absl::Span<const int32_t> src_token;
  absl::Span<const int32_t> local_expert;
  absl::Span<const int32_t> topk_slot;
  absl::Span<const int32_t> expert_counts;   // [experts_per_rank] real rows
  absl::Span<const int64_t> expert_offsets;  // [experts_per_rank + 1]
  int64_t received_tokens = 0;               // distinct (source rank, token)
};

class DispatchHandle {
 public:
  // OK once the dispatch completed on this rank; its error; or
  // DeadlineExceeded (still pending). InvalidArgument naming the token and
  // tile when FP8 dispatch met a non-finite value in this rank's x: the
  // exchange still completed (that row travels as NaN), so output() and
  // Combine remain usable and the other ranks are not left waiting.
  absl::Status Wait(absl::Time deadline) const;
  bool done() const;
  // After Wait returned OK or that InvalidArgument (a programmer error
  // otherwise).
  const DispatchOutput& output() const;
  const EpOpStats& stats() const;

  struct State;
  explicit DispatchHandle(std::shared_ptr<State> state) : state_(std::move(state)) {}
  const std::shared_ptr<State>& state() const { return state_; }

 private:
  std::shared_ptr<State> state_;
};

struct CombineInput {
  const void* expert_out = nullptr;  // [dispatch rows x hidden], rows of output()
  DType dtype = DType::kFloat32;     // kFloat32 or kBFloat16
};

class CombineHandle {
 public:
  absl::Status Wait(absl::Time deadline) const;
  bool done() const;
  // After Wait returned OK: [tokens x hidden] FP32.
  absl::Span<const float> y() const;
  const EpOpStats& stats() const;

  struct State;
  explicit CombineHandle(std::shared_ptr<State> state) : state_(std::move(state)) {}

 private:
  std::shared_ptr<State> state_;
};

class EpBuffer {
 public:
  // Collective over the job: validates `config` (InvalidArgument naming the
  // values; it must match the rank client's topology), allocates the
  // symmetric region, barriers, starts the engine thread. `client` must
  // outlive the buffer. Defined in //runtime/ep:rank_comm (link it).
  static absl::StatusOr<std::unique_ptr<EpBuffer>> Create(runtime::RankClient* client,
                                                          const EpConfig& config);
  // The same over any EpComm (tests use an in-process one); `comm` must
  // outlive the buffer.
  static absl::StatusOr<std::unique_ptr<EpBuffer>> Create(EpComm* comm, const EpConfig& config);
  // The same, owning `comm` (destroyed after the engine stops).
  static absl::StatusOr<std::unique_ptr<EpBuffer>> CreateOwning(std::unique_ptr<EpComm> comm,
                                                                const EpConfig& config);
  // Stops the engine; pending operations complete with Cancelled.
  ~EpBuffer();
  EpBuffer(const EpBuffer&) = delete;
  EpBuffer& operator=(const EpBuffer&) = delete;

  // Non-blocking. `reuse_layout`: a completed, successful dispatch of this
  // buffer with the same topk_idx (checked): its layout and counts are
  // reused and the counts exchange is skipped. The caller keeps the input
  // memory alive until Wait returns.
  absl::StatusOr<std::shared_ptr<DispatchHandle>> Dispatch(
      const DispatchInput& input, std::shared_ptr<const DispatchHandle> reuse_layout = nullptr);
  // Non-blocking. `dispatch` must come from this buffer; expert_out stays
  // alive until Wait returns.
  absl::StatusOr<std::shared_ptr<CombineHandle>> Combine(
      std::shared_ptr<const DispatchHandle> dispatch, const CombineInput& input);
  // Collective barrier, in operation order (blocks the caller).
  // DeadlineExceeded when it has not completed by `deadline` (give or take
  // a second); one still queued behind earlier operations then runs later,
  // bounded by the time the caller had left when it called.
  absl::Status Barrier(absl::Time deadline);

  const EpConfig& config() const { return config_; }
  const CommTopology& topology() const;
  // Bytes of this rank's symmetric region.
  size_t region_bytes() const;
  EpStats stats() const;
  // OK or the sticky failure.
  absl::Status status() const;
  // What the running operation is waiting for (refreshed every second while
  // it stalls; empty when idle): for diagnosing a Wait that timed out.
  std::string Progress() const;

 private:
  EpBuffer(EpConfig config, std::unique_ptr<EpComm> owned_comm, std::unique_ptr<Engine> engine);

  const EpConfig config_;
  std::unique_ptr<EpComm> owned_comm_;
  std::unique_ptr<Engine> engine_;
  absl::Mutex submit_mu_;  // keeps the plan building and enqueueing in call order
};

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_BUFFER_H_
