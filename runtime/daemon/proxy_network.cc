// Proxy: the inter-node side. Advances the transport, turns incoming put
// notifications into notifications of local ranks, retires completed
// tickets, and notices dead peers.
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "runtime/daemon/proxy.h"

namespace tokenrail {
namespace runtime {
namespace {
constexpr char kLog[] = "proxy";
constexpr size_t kNotificationBatch = 64;
}  // namespace

Proxy::Peer* Proxy::PeerOf(int node_id) {
  if (node_id < 0 || node_id >= config_.nodes) return nullptr;
  const int i = peer_of_node_[static_cast<size_t>(node_id)];
  return i < 0 ? nullptr : &peers_[static_cast<size_t>(i)];
}

size_t Proxy::ServeNetwork() {
  size_t work = 0;
  absl::Status progress = fabric_->context().Progress();
  if (!progress.ok()) {
    TR_LOG_ONCE(WARNING, kLog) << "transport progress: " << progress;
  }
  transport::Notification batch[kNotificationBatch];
  const int rpn = config_.ranks_per_node;
  for (Peer& peer : peers_) {
    if (!peer.failed.ok()) continue;
    transport::Endpoint& ep = *peer.node->endpoint;

    absl::StatusOr<size_t> got = ep.PollNotifications(batch, kNotificationBatch);
    if (!got.ok()) {
      FailPeer(peer, got.status());
      continue;
    }
    for (size_t i = 0; i < *got; ++i) {
      const uint32_t imm = batch[i].imm;
      const int src_local = ImmSrcLocal(imm);
      const int dst_local = ImmDstLocal(imm);
      if (src_local >= rpn || dst_local >= rpn) {
        TR_LOG(ERROR, kLog) << peer.node->name << " sent a put notification for local rank "
                            << dst_local << " from local rank " << src_local << " (this job has "
                            << rpn << " ranks per node); dropped";
        continue;
      }
      Notify(dst_local, {peer.node->node_id * rpn + src_local, ImmTag(imm),
                         static_cast<uint64_t>(batch[i].length)});
    }
    work += *got;

    while (!peer.in_flight.empty()) {
      const InFlight& f = peer.in_flight.front();
      absl::StatusOr<bool> done = ep.IsComplete(f.ticket);
      if (!done.ok()) {
        FailPeer(peer, done.status());
        break;
      }
      if (!*done) break;
      Complete(f.local_rank, f.generation, f.command_id, absl::OkStatus());
      peer.in_flight.pop_front();
      --in_flight_total_;
      ++work;
    }
    if (peer.failed.ok()) {
      absl::Status st = ep.status();
      if (!st.ok()) FailPeer(peer, st);
    }
  }
  in_flight_.store(in_flight_total_, std::memory_order_relaxed);
  return work;
}

void Proxy::FailPeer(Peer& peer, const absl::Status& status) {
  if (!peer.failed.ok()) return;
  peer.failed = absl::Status(
      status.ok() ? absl::StatusCode::kUnavailable : status.code(),
      absl::StrCat("tokenraild of ", peer.node->name, " is unreachable: ", status.message()));
  const bool expected = shutting_down_.load(std::memory_order_relaxed);
  if (expected) {
    TR_LOG(INFO, kLog) << peer.failed.message() << " (the job is ending)";
  } else {
    TR_LOG(ERROR, kLog) << peer.failed.message();
  }
  for (const InFlight& f : peer.in_flight) {
    Complete(f.local_rank, f.generation, f.command_id, peer.failed);
    --in_flight_total_;
  }
  peer.in_flight.clear();
  in_flight_.store(in_flight_total_, std::memory_order_relaxed);
  if (!expected && callbacks_.peer_failed) callbacks_.peer_failed(peer.node->node_id, peer.failed);
}

}  // namespace runtime
}  // namespace tokenrail
