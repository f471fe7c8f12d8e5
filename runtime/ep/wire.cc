#include "runtime/ep/wire.h"

#include "absl/strings/str_cat.h"
#include "runtime/ep/numeric.h"

namespace tokenrail {
namespace ep {

absl::StatusOr<ChunkHeader> ParseChunkHeader(const char* data, size_t length, size_t capacity,
                                             uint64_t expected_stream_seq, uint32_t config_hash,
                                             size_t record_bytes, const char* stream) {
  if (length < kChunkHeaderBytes || length > capacity) {
    return absl::DataLossError(absl::StrCat(stream, ": chunk of ", length, " bytes (a chunk has ",
                                            kChunkHeaderBytes, "..", capacity, ")"));
  }
  ChunkHeader h;
  std::memcpy(&h, data, sizeof(h));
  if (h.magic != kChunkMagic) {
    return absl::DataLossError(absl::StrCat(stream, ": chunk ", expected_stream_seq,
                                            " has bad magic 0x", absl::Hex(h.magic)));
  }
  if (h.config_hash != config_hash) {
    return absl::FailedPreconditionError(
        absl::StrCat(stream, ": the peer's EpConfig differs from this rank's (fingerprint 0x",
                     absl::Hex(h.config_hash), " vs 0x", absl::Hex(config_hash),
                     "); every rank must create its EpBuffer with the same configuration"));
  }
  if (h.stream_seq != expected_stream_seq) {
    return absl::DataLossError(absl::StrCat(stream, ": chunk number ", h.stream_seq,
                                            " arrived where ", expected_stream_seq,
                                            " was expected"));
  }
  if (h.body_bytes != length - kChunkHeaderBytes) {
    return absl::DataLossError(absl::StrCat(stream, ": chunk ", h.stream_seq, " says ",
                                            h.body_bytes, " body bytes, the put carried ",
                                            length - kChunkHeaderBytes));
  }
  if (h.kind == static_cast<uint32_t>(ChunkKind::kRecords)) {
    if (h.records == 0 || static_cast<uint64_t>(h.records) * record_bytes != h.body_bytes) {
      return absl::DataLossError(absl::StrCat(stream, ": chunk ", h.stream_seq, " has ", h.records,
                                              " records of ", record_bytes, " bytes in ",
                                              h.body_bytes, " body bytes"));
    }
  } else if (h.kind != static_cast<uint32_t>(ChunkKind::kCounts)) {
    return absl::DataLossError(
        absl::StrCat(stream, ": chunk ", h.stream_seq, " has unknown kind ", h.kind));
  }
  return h;
}

DispatchRecordLayout DispatchRecordLayout::Make(int top_k, int64_t hidden, DType dtype) {
  DispatchRecordLayout l;
  l.top_k = top_k;
  l.hidden = hidden;
  l.dtype = dtype;
  l.experts_offset = 8;
  l.weights_offset = l.experts_offset + 4 * static_cast<size_t>(top_k);
  size_t end = l.weights_offset + 4 * static_cast<size_t>(top_k);
  if (dtype == DType::kFp8E4M3) {
    l.tiles = Fp8TilesPerRow(hidden);
    l.scales_offset = end;
    end += 4 * static_cast<size_t>(l.tiles);
  }
  l.payload_offset = RoundUp16(end);
  l.payload_bytes = static_cast<size_t>(hidden) * DTypeSize(dtype);
  l.size = RoundUp16(l.payload_offset + l.payload_bytes);
  return l;
}

CombineRecordLayout CombineRecordLayout::Make(int64_t hidden, DType dtype) {
  CombineRecordLayout l;
  l.hidden = hidden;
  l.dtype = dtype;
  l.payload_offset = 16;
  l.payload_bytes = static_cast<size_t>(hidden) * DTypeSize(dtype);
  l.size = RoundUp16(l.payload_offset + l.payload_bytes);
  return l;
}

size_t PeerCountsBytes(int scope_ranks, int experts_per_rank) {
  return 4 + 4 * static_cast<size_t>(scope_ranks) +
         4 * static_cast<size_t>(scope_ranks) * static_cast<size_t>(experts_per_rank);
}

void EncodePeerCounts(const PeerCounts& counts, char* out) {
  StoreI32(out, counts.records);
  out += 4;
  for (int32_t v : counts.tokens_per_rank) {
    StoreI32(out, v);
    out += 4;
  }
  for (int32_t v : counts.tokens_per_expert) {
    StoreI32(out, v);
    out += 4;
  }
}

absl::StatusOr<PeerCounts> DecodePeerCounts(const char* data, size_t length, int scope_ranks,
                                            int experts_per_rank, int64_t max_records) {
  const size_t want = PeerCountsBytes(scope_ranks, experts_per_rank);
  if (length != want) {
    return absl::DataLossError(
        absl::StrCat("counts message of ", length, " bytes, expected ", want));
  }
  PeerCounts c;
  c.records = LoadI32(data);
  if (c.records < 0 || c.records > max_records) {
    return absl::DataLossError(absl::StrCat("counts message announces ", c.records,
                                            " records (at most ", max_records, ")"));
  }
  data += 4;
  c.tokens_per_rank.resize(static_cast<size_t>(scope_ranks));
  c.tokens_per_expert.resize(static_cast<size_t>(scope_ranks) * experts_per_rank);
  for (auto& v : c.tokens_per_rank) {
    v = LoadI32(data);
    data += 4;
    if (v < 0 || v > c.records) {
      return absl::DataLossError(
          absl::StrCat("counts message: ", v, " tokens for a rank, of ", c.records, " records"));
    }
  }
  for (size_t i = 0; i < c.tokens_per_expert.size(); ++i) {
    int32_t& v = c.tokens_per_expert[i];
    v = LoadI32(data);
    data += 4;
    const int32_t rank_tokens = c.tokens_per_rank[i / static_cast<size_t>(experts_per_rank)];
    if (v < 0 || v > rank_tokens) {
      return absl::DataLossError(absl::StrCat(
          "counts message: ", v, " tokens for an expert of a rank that gets ", rank_tokens));
    }
  }
  return c;
}

size_t ChannelCountsBytes(int entries, int experts_per_rank) {
  return 16 + static_cast<size_t>(entries) * (8 + 4 * static_cast<size_t>(experts_per_rank));
}

void EncodeChannelCounts(const ChannelCounts& counts, int experts_per_rank, char* out) {
  StoreI32(out, kChannelCountsMarker);
  std::memcpy(out + 4, &counts.op_seq, 4);
  std::memcpy(out + 8, &counts.config_hash, 4);
  StoreI32(out + 12, static_cast<int32_t>(counts.entries.size()));
  out += 16;
  for (const ChannelCounts::Entry& e : counts.entries) {
    StoreI32(out, e.src_rank);
    StoreI32(out + 4, e.records);
    out += 8;
    for (int i = 0; i < experts_per_rank; ++i) {
      StoreI32(out, e.tokens_per_expert[static_cast<size_t>(i)]);
      out += 4;
    }
  }
}

absl::StatusOr<ChannelCounts> DecodeChannelCounts(const char* data, size_t length,
                                                  int experts_per_rank, int max_entries,
                                                  int world_size) {
  if (length < 16) {
    return absl::DataLossError(absl::StrCat("channel counts message of ", length, " bytes"));
  }
  if (LoadI32(data) != kChannelCountsMarker) {
    return absl::FailedPreconditionError(
        absl::StrCat("expected a counts message, found a record (token ", LoadI32(data),
                     "): the ranks disagree on whether this dispatch reuses an earlier layout"));
  }
  ChannelCounts c;
  std::memcpy(&c.op_seq, data + 4, 4);
  std::memcpy(&c.config_hash, data + 8, 4);
  const int32_t n = LoadI32(data + 12);
  if (n < 0 || n > max_entries) {
    return absl::DataLossError(
        absl::StrCat("channel counts message has ", n, " entries (at most ", max_entries, ")"));
  }
  if (length < ChannelCountsBytes(n, experts_per_rank)) {
    return absl::DataLossError(absl::StrCat("channel counts message of ", length,
                                            " bytes is too short for ", n, " entries"));
  }
  data += 16;
  c.entries.resize(static_cast<size_t>(n));
  for (ChannelCounts::Entry& e : c.entries) {
    e.src_rank = LoadI32(data);
    e.records = LoadI32(data + 4);
    data += 8;
    if (e.src_rank < 0 || e.src_rank >= world_size || e.records < 0) {
      return absl::DataLossError(absl::StrCat("channel counts entry names source rank ", e.src_rank,
                                              " with ", e.records, " records"));
    }
    e.tokens_per_expert.resize(static_cast<size_t>(experts_per_rank));
    for (int32_t& v : e.tokens_per_expert) {
      v = LoadI32(data);
      data += 4;
      if (v < 0 || v > e.records) {
        return absl::DataLossError(absl::StrCat("channel counts entry of rank ", e.src_rank, ": ",
                                                v, " tokens for an expert of ", e.records,
                                                " records"));
      }
    }
  }
  return c;
}

}  // namespace ep
}  // namespace tokenrail
