// Where everything lives in a rank's symmetric EP region, and how big it is.
// A pure function of the EpConfig, so every rank computes the same offsets
// and can address any other rank's copy.
//
// Region of rank (n, l), in order:
//   control    the rank's EngineBell (doorbell + event count), the head/tail
//              counters of every intra-node ring it consumes (each on its own
//              cache line), the credit source and credit sink words
//   forward    R dispatch channels, producer local rank p -> this rank:
//              fwd_slots slots of one dispatch record each
//   reverse    R x S combine sub-rings, producer local rank j -> this rank,
//              one per source node (S = N, hierarchical) or S = 1 (flat):
//              rev_slots slots of one combine record
//   per remote peer q (P of them):
//     dispatch in    `chunks` chunks of dchunk_bytes (the peer puts here)
//     dispatch out   `chunks` staging chunks (this rank puts from here)
//     combine in / combine out, likewise with cchunk_bytes
// Remote peers: hierarchical, the rail ranks (m, l) of the N - 1 other
// nodes; flat, all W - R ranks of other nodes. PeerIndex/PeerRank convert.
//
// Budget: buffer_bytes (at least MinBufferBytes) is split half intra-node,
// half inter-node when there are peers; each half evenly between its rings.
// Chunks are capped at kMaxChunkBytes (pipelining granularity).
#ifndef TOKENRAIL_RUNTIME_EP_BUFFER_PLAN_H_
#define TOKENRAIL_RUNTIME_EP_BUFFER_PLAN_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "runtime/arena/doorbell.h"
#include "runtime/ep/config.h"
#include "runtime/ep/wire.h"

namespace tokenrail {
namespace ep {

inline constexpr size_t kCacheLineBytes = 64;
inline constexpr size_t kMaxChunkBytes = size_t{1} << 20;
inline constexpr uint32_t kMaxChunksPerRing = 16;

// The wake-up word of a rank's engine, in its region: peers that publish
// something it may wait for bump `events` and ring `bell`.
struct EngineBell {
  runtime::Doorbell bell;
  alignas(kCacheLineBytes) std::atomic<uint64_t> events;
};

// Head (written by the producer) and tail (by the consumer) of one
// intra-node ring, in the consumer's region.
struct RingCounters {
  alignas(kCacheLineBytes) std::atomic<uint64_t> head;
  alignas(kCacheLineBytes) std::atomic<uint64_t> tail;
};
static_assert(sizeof(RingCounters) == 2 * kCacheLineBytes, "ring counters layout");

struct BufferPlan {
  int nodes = 1;
  int ranks_per_node = 1;
  int experts_per_rank = 1;
  bool flat = false;
  int peers = 0;        // P
  int sub_streams = 1;  // S
  int scope_ranks = 1;  // ranks a remote peer serves (PeerCounts scope)

  DispatchRecordLayout drec;
  CombineRecordLayout crec;

  uint64_t fwd_slots = 0;
  uint64_t rev_slots = 0;
  uint64_t counts_slots = 0;  // forward slots a ChannelCounts message takes
  size_t counts_message_bytes = 0;
  size_t peer_counts_bytes = 0;

  uint32_t chunks = 1;
  uint32_t dchunk_records = 1;
  uint32_t cchunk_records = 1;
  size_t dchunk_bytes = 0;  // capacity: header + max(records, counts)
  size_t cchunk_bytes = 0;

  size_t bell_offset = 0;
  size_t fwd_counters_offset = 0;  // + p * sizeof(RingCounters)
  size_t rev_counters_offset = 0;  // + (j * S + s) * sizeof(RingCounters)
  size_t credit_source_offset = 0;
  size_t credit_sink_offset = 0;
  size_t fwd_offset = 0;
  size_t rev_offset = 0;
  size_t peers_offset = 0;
  size_t peer_stride = 0;
  size_t total_bytes = 0;

  size_t fwd_counters(int producer) const {
    return fwd_counters_offset + static_cast<size_t>(producer) * sizeof(RingCounters);
  }
  size_t rev_counters(int producer, int sub) const {
    return rev_counters_offset +
           static_cast<size_t>(producer * sub_streams + sub) * sizeof(RingCounters);
  }
  size_t fwd_ring(int producer) const {
    return fwd_offset + static_cast<size_t>(producer) * fwd_slots * drec.size;
  }
  size_t rev_ring(int producer, int sub) const {
    return rev_offset + static_cast<size_t>(producer * sub_streams + sub) * rev_slots * crec.size;
  }
  size_t dispatch_in(int peer) const { return peers_offset + peer * peer_stride; }
  size_t dispatch_out(int peer) const { return dispatch_in(peer) + chunks * dchunk_bytes; }
  size_t combine_in(int peer) const { return dispatch_out(peer) + chunks * dchunk_bytes; }
  size_t combine_out(int peer) const { return combine_in(peer) + chunks * cchunk_bytes; }

  // The reverse sub-ring of a source node (hierarchical: the node; flat:
  // always 0, only own-node sources use sub-rings).
  int sub_of_node(int node) const { return flat ? 0 : node; }

  // Remote peers of `rank` (global): index q in 0..peers-1 <-> global rank.
  int PeerRank(int rank, int q) const;
  // -1 when `peer` is not a remote peer of `rank`.
  int PeerIndex(int rank, int peer) const;
};

// InvalidArgument for an invalid config (Validate) or a region over 2^40
// bytes.
absl::StatusOr<BufferPlan> MakeBufferPlan(const EpConfig& config);
// The smallest buffer_bytes that gives every ring its minimum: one record
// per slot ring (or one ChannelCounts message), one chunk of one record.
absl::StatusOr<size_t> MinBufferBytes(const EpConfig& config);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_BUFFER_PLAN_H_
