#include "runtime/ep/rank_comm.h"

#include <memory>

#include "common/status.h"
#include "runtime/ep/buffer.h"

namespace tokenrail {
namespace ep {

RankComm::RankComm(runtime::RankClient* client) : client_(client) {
  const runtime::RankTopology& t = client->topology();
  topo_.node = t.node_id;
  topo_.nodes = t.nodes;
  topo_.local_rank = t.local_rank;
  topo_.ranks_per_node = t.ranks_per_node;
  topo_.global_rank = t.global_rank;
  topo_.world_size = t.world_size;
}

absl::StatusOr<CommRegion> RankComm::AllocateSymmetric(size_t bytes, absl::Time deadline) {
  TR_ASSIGN_OR_RETURN(runtime::Region r, client_->AllocateSymmetric(bytes, deadline));
  return CommRegion{r.id, r.size, r.data};
}

void* RankComm::LocalPeerData(const CommRegion& region, int local_rank) {
  return client_->LocalPeerData(ToRegion(region), local_rank);
}

absl::StatusOr<uint64_t> RankComm::Put(const CommRegion& src, size_t src_off, int dst_rank,
                                       const CommRegion& dst, size_t dst_off, size_t len,
                                       uint32_t tag) {
  return client_->Put(ToRegion(src), src_off, dst_rank, ToRegion(dst), dst_off, len, tag);
}

absl::StatusOr<size_t> RankComm::PollNotifications(CommNotification* out, size_t max) {
  runtime::RankNotification n[64];
  TR_ASSIGN_OR_RETURN(size_t got, client_->PollNotifications(n, std::min<size_t>(max, 64)));
  for (size_t i = 0; i < got; ++i) out[i] = CommNotification{n[i].src_rank, n[i].tag, n[i].length};
  return got;
}

void RankComm::PublishEpCounters(const CommEpCounters& c) {
  client_->PublishEpStats(c.direct_bytes_intra_node, c.tokens_per_expert, c.experts);
}

absl::StatusOr<std::unique_ptr<EpBuffer>> EpBuffer::Create(runtime::RankClient* client,
                                                           const EpConfig& config) {
  if (client == nullptr) return absl::InvalidArgumentError("EpBuffer::Create: client is null");
  return CreateOwning(std::make_unique<RankComm>(client), config);
}

}  // namespace ep
}  // namespace tokenrail
