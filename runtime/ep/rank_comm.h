// RankComm: the engine's EpComm over a runtime::RankClient (the real one):
// symmetric regions in the node arena, local peers' copies through
// RankClient::LocalPeerData, proxy puts through the daemon, and the engine's
// counters published into the arena for the daemon's statistics.
//
// Thread safety: as the RankClient, one thread at a time.
#ifndef TOKENRAIL_RUNTIME_EP_RANK_COMM_H_
#define TOKENRAIL_RUNTIME_EP_RANK_COMM_H_

#include "runtime/client/client.h"
#include "runtime/ep/comm.h"

namespace tokenrail {
namespace ep {

class RankComm final : public EpComm {
 public:
  // `client` must outlive this object.
  explicit RankComm(runtime::RankClient* client);

  const CommTopology& topology() const override { return topo_; }
  absl::StatusOr<CommRegion> AllocateSymmetric(size_t bytes, absl::Time deadline) override;
  absl::Status Barrier(absl::Time deadline) override { return client_->Barrier(deadline); }
  void* LocalPeerData(const CommRegion& region, int local_rank) override;
  absl::StatusOr<uint64_t> Put(const CommRegion& src, size_t src_off, int dst_rank,
                               const CommRegion& dst, size_t dst_off, size_t len,
                               uint32_t tag) override;
  absl::StatusOr<bool> IsComplete(uint64_t id) override { return client_->IsComplete(id); }
  absl::StatusOr<size_t> PollNotifications(CommNotification* out, size_t max) override;
  // The client blocks beyond kCommandEntries outstanding commands; leave a
  // margin for its own (Ping, Detach's flush).
  size_t max_outstanding_puts() const override { return runtime::kCommandEntries - 64; }
  absl::Status status() const override { return client_->status(); }
  void PublishEpCounters(const CommEpCounters& counters) override;

 private:
  static runtime::Region ToRegion(const CommRegion& r) { return {r.id, r.size, r.data}; }

  runtime::RankClient* const client_;
  CommTopology topo_;
};

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_RANK_COMM_H_
