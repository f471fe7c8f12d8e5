#include "runtime/ep/buffer_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tokenrail {
namespace ep {
namespace {

size_t RoundUpLine(size_t n) {
  return (n + kCacheLineBytes - 1) / kCacheLineBytes * kCacheLineBytes;
}

// Everything that does not depend on the budget.
BufferPlan Shape(const EpConfig& c) {
  BufferPlan p;
  p.nodes = c.topology.nodes;
  p.ranks_per_node = c.topology.ranks_per_node;
  p.experts_per_rank = c.topology.experts_per_rank();
  p.flat = c.routing == EpRouting::kFlat;
  const int world = c.topology.world_size();
  p.peers = p.flat ? world - p.ranks_per_node : p.nodes - 1;
  p.sub_streams = p.flat ? 1 : p.nodes;
  p.scope_ranks = p.flat ? 1 : p.ranks_per_node;
  p.drec = DispatchRecordLayout::Make(c.top_k, c.hidden, c.dispatch_dtype);
  p.crec = CombineRecordLayout::Make(c.hidden, c.combine_dtype);
  // A channel carries the records of the N sources with its producer's
  // local index (hierarchical), or of its producer alone (flat).
  p.counts_message_bytes = ChannelCountsBytes(p.flat ? 1 : p.nodes, p.experts_per_rank);
  p.counts_slots = (p.counts_message_bytes + p.drec.size - 1) / p.drec.size;
  p.peer_counts_bytes = PeerCountsBytes(p.scope_ranks, p.experts_per_rank);
  return p;
}

void SetChunks(BufferPlan& p, uint32_t chunks, uint32_t drecs, uint32_t crecs) {
  p.chunks = chunks;
  p.dchunk_records = drecs;
  p.cchunk_records = crecs;
  p.dchunk_bytes =
      RoundUpLine(kChunkHeaderBytes + std::max(drecs * p.drec.size, p.peer_counts_bytes));
  p.cchunk_bytes = RoundUpLine(kChunkHeaderBytes + crecs * p.crec.size);
}

// Offsets for the slot and chunk counts already in `p`.
void Place(BufferPlan& p) {
  const size_t R = static_cast<size_t>(p.ranks_per_node);
  const size_t S = static_cast<size_t>(p.sub_streams);
  size_t at = 0;
  p.bell_offset = at;
  at += RoundUpLine(sizeof(EngineBell));
  p.fwd_counters_offset = at;
  at += R * sizeof(RingCounters);
  p.rev_counters_offset = at;
  at += R * S * sizeof(RingCounters);
  p.credit_source_offset = at;
  at += kCacheLineBytes;
  p.credit_sink_offset = at;
  at += kCacheLineBytes;
  p.fwd_offset = at;
  at += RoundUpLine(R * p.fwd_slots * p.drec.size);
  p.rev_offset = at;
  at += RoundUpLine(R * S * p.rev_slots * p.crec.size);
  p.peers_offset = at;
  p.peer_stride = RoundUpLine(p.chunks * (2 * p.dchunk_bytes + 2 * p.cchunk_bytes));
  at += static_cast<size_t>(p.peers) * p.peer_stride;
  p.total_bytes = at;
}

size_t ControlBytes(const BufferPlan& p) {
  const size_t R = static_cast<size_t>(p.ranks_per_node);
  return RoundUpLine(sizeof(EngineBell)) + R * sizeof(RingCounters) +
         R * static_cast<size_t>(p.sub_streams) * sizeof(RingCounters) + 2 * kCacheLineBytes;
}

BufferPlan MinimumPlan(const EpConfig& c) {
  BufferPlan p = Shape(c);
  p.fwd_slots = std::max<uint64_t>(1, p.counts_slots);
  p.rev_slots = 1;
  SetChunks(p, 1, 1, 1);
  Place(p);
  return p;
}

}  // namespace

int BufferPlan::PeerRank(int rank, int q) const {
  const int n = rank / ranks_per_node;
  if (flat) return q < n * ranks_per_node ? q : q + ranks_per_node;
  const int m = q < n ? q : q + 1;
  return m * ranks_per_node + rank % ranks_per_node;
}

int BufferPlan::PeerIndex(int rank, int peer) const {
  const int n = rank / ranks_per_node;
  const int m = peer / ranks_per_node;
  if (m == n || peer < 0 || m >= nodes) return -1;
  if (flat) return peer < n * ranks_per_node ? peer : peer - ranks_per_node;
  if (peer % ranks_per_node != rank % ranks_per_node) return -1;
  return m < n ? m : m - 1;
}

absl::StatusOr<size_t> MinBufferBytes(const EpConfig& config) {
  TR_RETURN_IF_ERROR(Validate(config));
  return MinimumPlan(config).total_bytes;
}

absl::StatusOr<BufferPlan> MakeBufferPlan(const EpConfig& config) {
  TR_RETURN_IF_ERROR(Validate(config));
  const BufferPlan min = MinimumPlan(config);
  BufferPlan p = Shape(config);
  const size_t budget = std::max(config.buffer_bytes, min.total_bytes);
  const size_t avail = budget - ControlBytes(p);
  const size_t intra = p.peers > 0 ? avail / 2 : avail;
  const size_t inter = avail - intra;
  const size_t R = static_cast<size_t>(p.ranks_per_node);
  p.fwd_slots = std::max<uint64_t>(min.fwd_slots, intra / 2 / (R * p.drec.size));
  p.rev_slots =
      std::max<uint64_t>(1, intra / 2 / (R * static_cast<size_t>(p.sub_streams) * p.crec.size));
  if (p.peers > 0) {
    // Per peer: half for dispatch (in + out rings), half for combine.
    const size_t half = inter / static_cast<size_t>(p.peers) / 2;
    const size_t min_dchunk = kChunkHeaderBytes + std::max(p.drec.size, p.peer_counts_bytes);
    uint32_t chunks = kMaxChunksPerRing;
    while (chunks > 1 && half / (2 * chunks) < min_dchunk) chunks /= 2;
    const size_t dchunk = std::min(half / (2 * chunks), kMaxChunkBytes);
    const size_t cchunk = std::min(half / (2 * chunks), kMaxChunkBytes);
    const size_t drecs =
        dchunk > kChunkHeaderBytes ? (dchunk - kChunkHeaderBytes) / p.drec.size : 0;
    const size_t crecs =
        cchunk > kChunkHeaderBytes ? (cchunk - kChunkHeaderBytes) / p.crec.size : 0;
    SetChunks(p, chunks, static_cast<uint32_t>(std::clamp<size_t>(drecs, 1, 1u << 20)),
              static_cast<uint32_t>(std::clamp<size_t>(crecs, 1, 1u << 20)));
  } else {
    SetChunks(p, 1, 1, 1);
  }
  Place(p);
  if (p.total_bytes > (size_t{1} << 40)) {
    return absl::InvalidArgumentError(
        absl::StrCat("EpConfig: buffers of ", p.total_bytes, " bytes per rank are too large"));
  }
  return p;
}

}  // namespace ep
}  // namespace tokenrail
