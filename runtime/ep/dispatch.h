// The dispatch operation (internal to the engine; see buffer.h for the
// contract and engine.h for the progress model).
//
// Phases on every rank, all driven by DispatchOp::Step:
//   counts (skipped when reusing a layout): the source sends each remote
//     peer a kCounts chunk (PeerCounts: what it will get); a forwarder
//     (hierarchical) collects those of the N - 1 remote sources with its
//     local index and writes, first into each of its R outgoing channels, a
//     ChannelCounts message covering every source whose records that
//     channel will carry. With flat routing the channel message covers the
//     producer alone and remote sources' PeerCounts go to the receiver
//     directly. A receiver that has every source's counts sizes its outputs
//     and the block of every (source, local expert).
//   data: the source walks its tokens in order and writes one record per
//     destination (own-node ranks: straight into their channels; remote
//     peers: into the stream's staging chunk), packing once and copying; a
//     forwarder copies each record of its inbound streams into the channels
//     of the local ranks that host one of its experts; a receiver places each
//     record it reads into the rows of its local experts the token chose, at
//     block start + running count (so rows end up ordered by (source, token)).
#ifndef TOKENRAIL_RUNTIME_EP_DISPATCH_H_
#define TOKENRAIL_RUNTIME_EP_DISPATCH_H_

#include <memory>

#include "absl/status/statusor.h"
#include "runtime/ep/buffer.h"
#include "runtime/ep/engine.h"

namespace tokenrail {
namespace ep {

// The source part of a new plan (caller's thread): validates the input
// (InvalidArgument naming token, slot and value), computes the layout,
// rejects tokens that reach more than max_nodes nodes, lists every token's
// destinations.
absl::StatusOr<std::shared_ptr<DispatchPlan>> BuildSourcePlan(const Wiring& w,
                                                              const DispatchInput& input);

// InvalidArgument unless `input` has the plan's token count and topk_idx.
absl::Status CheckReuse(const Wiring& w, const DispatchPlan& plan, const DispatchInput& input);

// Exactly one of `reused` (a completed dispatch's plan, whose layout is
// reused) and `building` (a new plan from BuildSourcePlan, completed by the
// operation) is set.
std::unique_ptr<Op> MakeDispatchOp(std::shared_ptr<const DispatchPlan> reused,
                                   std::shared_ptr<DispatchPlan> building,
                                   const DispatchInput& input,
                                   std::shared_ptr<DispatchHandle::State> state);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_DISPATCH_H_
