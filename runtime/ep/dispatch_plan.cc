// Dispatch: the source part of a plan, built on the caller's thread.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "runtime/ep/dispatch.h"

namespace tokenrail {
namespace ep {

absl::StatusOr<std::shared_ptr<DispatchPlan>> BuildSourcePlan(const Wiring& w,
                                                              const DispatchInput& input) {
  const EpConfig& c = w.config;
  const EpTopology& topo = c.topology;
  const int k = c.top_k;
  auto plan = std::make_shared<DispatchPlan>();
  plan->tokens = input.tokens;
  const size_t slots = static_cast<size_t>(input.tokens) * static_cast<size_t>(k);
  if (slots > 0) plan->topk_idx.assign(input.topk_idx, input.topk_idx + slots);
  TR_RETURN_IF_ERROR(
      Annotate(ComputeLayout(topo, k, input.tokens, plan->topk_idx, &plan->layout), "Dispatch"));
  const Layout& L = plan->layout;

  plan->records_to_peer.assign(static_cast<size_t>(w.P), 0);
  plan->dests.offsets.reserve(static_cast<size_t>(input.tokens) + 1);
  plan->dests.values.reserve(slots);
  for (int64_t t = 0; t < input.tokens; ++t) {
    int nodes = 0;
    for (int m = 0; m < w.N; ++m) {
      if (L.node_slot(t, m) < 0) continue;
      ++nodes;
      // Ascending destination global rank: node by node, ranks inside.
      if (m == w.node) {
        for (int j = 0; j < w.R; ++j) {
          if (L.rank_slot(t, m * w.R + j) >= 0) plan->dests.values.push_back(j);
        }
      } else if (!w.plan.flat) {
        const int q = w.PeerIndex(m * w.R + w.local);
        plan->dests.values.push_back(w.R + q);
        ++plan->records_to_peer[static_cast<size_t>(q)];
      } else {
        for (int j = 0; j < w.R; ++j) {
          const int r = m * w.R + j;
          if (L.rank_slot(t, r) < 0) continue;
          const int q = w.PeerIndex(r);
          plan->dests.values.push_back(w.R + q);
          ++plan->records_to_peer[static_cast<size_t>(q)];
        }
      }
    }
    if (nodes > c.max_nodes) {
      std::string experts;
      for (int j = 0; j < k; ++j) {
        absl::StrAppend(&experts, j == 0 ? "" : ",", plan->topk_idx[t * k + j]);
      }
      return absl::InvalidArgumentError(
          absl::StrCat("Dispatch: token ", t, " (experts ", experts, ") reaches ", nodes,
                       " nodes but max_nodes is ", c.max_nodes, " (", ToString(topo), ")"));
    }
    plan->dests.CloseItem();
  }
  return plan;
}

absl::Status CheckReuse(const Wiring& w, const DispatchPlan& plan, const DispatchInput& input) {
  if (input.tokens != plan.tokens) {
    return absl::InvalidArgumentError(absl::StrCat("Dispatch: reused layout has ", plan.tokens,
                                                   " tokens, the input has ", input.tokens));
  }
  const int k = w.config.top_k;
  const size_t slots = static_cast<size_t>(input.tokens) * static_cast<size_t>(k);
  if (slots == 0 || std::memcmp(input.topk_idx, plan.topk_idx.data(), slots * 4) == 0) {
    return absl::OkStatus();
  }
  for (size_t i = 0; i < slots; ++i) {
    if (input.topk_idx[i] != plan.topk_idx[i]) {
      return absl::InvalidArgumentError(
          absl::StrCat("Dispatch: topk_idx differs from the reused layout at token ", i / k,
                       " slot ", i % k, " (", input.topk_idx[i], " vs ", plan.topk_idx[i], ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace ep
}  // namespace tokenrail
