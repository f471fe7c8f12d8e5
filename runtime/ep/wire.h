// The engine's wire formats: proxy tags, inter-node chunk headers, dispatch
// and combine records, and the counts messages that precede a dispatch.
//
// All integers are little-endian (x86-64 and aarch64 hosts). Every decoder
// treats its input as untrusted (it comes from another process through shared
// memory or the network): sizes and values are checked, and a bad message is
// DataLoss naming the field, never a crash.
//
// Dispatch record (one per token and destination; all offsets 16-aligned
// except the header fields):
//   0            int32 src_token
//   4            int32 src_rank (global)
//   8            int32 expert[top_k]   global expert ids in the token's slot
//                                      order, -1 for an empty slot
//   8 + 4k       float weight[top_k]
//   scales_off   float scale[tiles]    FP8 only: one per 1x128 tile
//   payload_off  hidden values in the wire dtype (FP32, BF16 or E4M3 codes)
//   size         rounded up to 16 bytes
// e.g. hidden 2048, top-4: BF16 4144 bytes, FP8 2160 bytes (0.521x).
//
// Combine record (one per token on every hop back):
//   0  int32 src_token, 4 int32 src_rank, 8..15 zero,
//   16 hidden values in the combine dtype (FP32 or BF16), size rounded to 16.
//
// Inter-node chunk (one proxy put): a 32-byte ChunkHeader, then either the
// records (kind kRecords) or a PeerCounts body (kind kCounts).
//
// Proxy tags (16 bits): kind in bits 12..15, a 12-bit value below. Data tags
// carry no value (the chunk header says everything); credit tags carry the
// number of chunk slots returned.
#ifndef TOKENRAIL_RUNTIME_EP_WIRE_H_
#define TOKENRAIL_RUNTIME_EP_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace ep {

// ---- Tags ----

enum class TagKind : uint32_t {
  kDispatchData = 1,
  kCombineData = 2,
  kDispatchCredit = 3,
  kCombineCredit = 4,
};
inline constexpr uint32_t kTagValueBits = 12;
inline constexpr uint32_t kMaxTagValue = (1u << kTagValueBits) - 1;

inline constexpr uint32_t MakeTag(TagKind kind, uint32_t value) {
  return (static_cast<uint32_t>(kind) << kTagValueBits) | (value & kMaxTagValue);
}
inline constexpr uint32_t TagKindOf(uint32_t tag) { return tag >> kTagValueBits; }
inline constexpr uint32_t TagValueOf(uint32_t tag) { return tag & kMaxTagValue; }

// ---- Chunks ----

inline constexpr uint32_t kChunkMagic = 0x4b484354;  // "TCHK"
enum class ChunkKind : uint32_t { kCounts = 1, kRecords = 2 };

struct ChunkHeader {
  uint32_t magic;
  uint32_t kind;         // ChunkKind
  uint32_t op_seq;       // the engine operation (same numbering on every rank)
  uint32_t records;      // kRecords: records that follow
  uint64_t stream_seq;   // chunk number in its stream, from 0
  uint32_t config_hash;  // EpConfig fingerprint: both ends must agree
  uint32_t body_bytes;   // bytes after the header
};
static_assert(sizeof(ChunkHeader) == 32, "chunk header layout");
inline constexpr size_t kChunkHeaderBytes = sizeof(ChunkHeader);

// Checks a received chunk of `length` bytes (the notification's) against
// what the stream expects. `record_bytes` sizes kRecords bodies. DataLoss or
// FailedPrecondition (config mismatch) naming `stream` and the field.
absl::StatusOr<ChunkHeader> ParseChunkHeader(const char* data, size_t length, size_t capacity,
                                             uint64_t expected_stream_seq, uint32_t config_hash,
                                             size_t record_bytes, const char* stream);

// ---- Records ----

inline constexpr size_t RoundUp16(size_t n) { return (n + 15) / 16 * 16; }

struct DispatchRecordLayout {
  int top_k = 0;
  int64_t hidden = 0;
  DType dtype = DType::kBFloat16;
  int64_t tiles = 0;  // FP8 tiles per row (0 otherwise)
  size_t experts_offset = 8;
  size_t weights_offset = 0;
  size_t scales_offset = 0;
  size_t payload_offset = 0;
  size_t payload_bytes = 0;
  size_t size = 0;

  static DispatchRecordLayout Make(int top_k, int64_t hidden, DType dtype);
};

struct CombineRecordLayout {
  int64_t hidden = 0;
  DType dtype = DType::kBFloat16;
  size_t payload_offset = 16;
  size_t payload_bytes = 0;
  size_t size = 0;

  static CombineRecordLayout Make(int64_t hidden, DType dtype);
};

// Field access on a record in (possibly shared) memory. Loads copy the
// value out; the caller validates it.
inline int32_t LoadI32(const char* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline float LoadF32(const char* p) {
  float v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void StoreI32(char* p, int32_t v) { std::memcpy(p, &v, sizeof(v)); }

inline int32_t RecordToken(const char* rec) { return LoadI32(rec); }
inline int32_t RecordRank(const char* rec) { return LoadI32(rec + 4); }
inline void StoreRecordHeader(char* rec, int32_t token, int32_t rank) {
  StoreI32(rec, token);
  StoreI32(rec + 4, rank);
}

// ---- Counts ----

// First int32 of a channel counts message: never a token index, so a
// receiver that expects one and finds the other (ranks that disagree on
// layout reuse) tells them apart.
inline constexpr int32_t kChannelCountsMarker = -2;

// Sent by a source to each remote peer before its records (kCounts chunk):
// what the peer will receive from this source in this operation. The peer
// serves `scope_ranks` ranks (all R of its node with hierarchical routing,
// just itself with flat routing); tokens_per_rank and tokens_per_expert
// cover those ranks' experts in order.
struct PeerCounts {
  int32_t records = 0;                     // records that follow
  std::vector<int32_t> tokens_per_rank;    // [scope_ranks]
  std::vector<int32_t> tokens_per_expert;  // [scope_ranks * experts_per_rank]
};
size_t PeerCountsBytes(int scope_ranks, int experts_per_rank);
void EncodePeerCounts(const PeerCounts& counts, char* out);
// Checks the sizes and that every count lies in [0, records] (records <=
// max_records).
absl::StatusOr<PeerCounts> DecodePeerCounts(const char* data, size_t length, int scope_ranks,
                                            int experts_per_rank, int64_t max_records);

// First message of an operation on an intra-node dispatch channel: for every
// source whose records this channel will carry, how many and how many per
// expert of the receiving rank.
struct ChannelCounts {
  uint32_t op_seq = 0;
  uint32_t config_hash = 0;
  struct Entry {
    int32_t src_rank = 0;
    int32_t records = 0;
    std::vector<int32_t> tokens_per_expert;  // [experts_per_rank]
  };
  std::vector<Entry> entries;
};
size_t ChannelCountsBytes(int entries, int experts_per_rank);
void EncodeChannelCounts(const ChannelCounts& counts, int experts_per_rank, char* out);
// Checks marker, entry count (<= max_entries), ranks (< world_size) and
// counts (0 <= count <= records).
absl::StatusOr<ChannelCounts> DecodeChannelCounts(const char* data, size_t length,
                                                  int experts_per_rank, int max_entries,
                                                  int world_size);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_WIRE_H_
