// The combine operation (internal to the engine; contract in buffer.h).
//
// Roles on every rank, all driven by CombineOp::Step:
//   receiver:  for each source rank, in the order of its tokens received by
//     the dispatch, part = 0 + sum over the token's rows here (ascending
//     local expert) of weight * expert_out, FP32, written in combine_dtype
//     to the flow dedicated to (this rank, that source): the reverse
//     sub-ring in the source's rail rank on this node, or (flat, remote
//     source) the combine stream to the source.
//   forwarder (hierarchical): for each remote source, in its token order,
//     node part = 0 + sum of the parts of the local ranks the token went to
//     (ascending local rank), written to the combine stream to the source.
//   source: for each token in order, y = 0 + sum of its parts, in ascending
//     global rank of the rank that sent each part.
// Every part a role needs next is the head of a flow that nothing it holds
// can block, so the steps never deadlock whatever the buffer sizes.
#ifndef TOKENRAIL_RUNTIME_EP_COMBINE_H_
#define TOKENRAIL_RUNTIME_EP_COMBINE_H_

#include <memory>

#include "runtime/ep/buffer.h"
#include "runtime/ep/engine.h"

namespace tokenrail {
namespace ep {

// `dispatch` is a completed, successful dispatch of the same engine.
std::unique_ptr<Op> MakeCombineOp(std::shared_ptr<const DispatchHandle::State> dispatch,
                                  const CombineInput& input,
                                  std::shared_ptr<CombineHandle::State> state);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_COMBINE_H_
