#include "runtime/ep/stream.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tokenrail {
namespace ep {
namespace {
// A credit put moves this many bytes (its content is ignored: the tag is
// the message).
constexpr size_t kCreditBytes = 8;
}  // namespace

absl::Status PutTracker::Poll() {
  while (!ids_.empty()) {
    absl::StatusOr<bool> done = comm_->IsComplete(ids_.front());
    if (!done.ok()) return done.status();
    if (!*done) break;
    ids_.pop_front();
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> PutTracker::Put(const CommRegion& src, size_t src_off, int dst_rank,
                                         const CommRegion& dst, size_t dst_off, size_t len,
                                         uint32_t tag) {
  absl::StatusOr<uint64_t> id = comm_->Put(src, src_off, dst_rank, dst, dst_off, len, tag);
  if (id.ok()) ids_.push_back(*id);
  return id;
}

void OutboundStream::Init(const CommRegion* region, Params params) {
  region_ = region;
  p_ = std::move(params);
  stage_put_.assign(p_.chunks, 0);
}

char* OutboundStream::StageSlot(uint64_t chunk) const {
  return static_cast<char*>(region_->data) + p_.stage_offset + (chunk % p_.chunks) * p_.chunk_bytes;
}

char* OutboundStream::NextRecord(const PutTracker& puts) {
  if (records_ == p_.max_records) return nullptr;
  if (records_ == 0) {
    const uint64_t id = stage_put_[sent_ % p_.chunks];
    if (id != 0 && !puts.Completed(id)) return nullptr;
  }
  return StageSlot(sent_) + kChunkHeaderBytes + records_ * p_.record_bytes;
}

absl::Status OutboundStream::Post(PutTracker& puts, ChunkKind kind, uint32_t op_seq,
                                  uint32_t records, size_t body_bytes) {
  ChunkHeader h{};
  h.magic = kChunkMagic;
  h.kind = static_cast<uint32_t>(kind);
  h.op_seq = op_seq;
  h.records = records;
  h.stream_seq = sent_;
  h.config_hash = p_.config_hash;
  h.body_bytes = static_cast<uint32_t>(body_bytes);
  char* slot = StageSlot(sent_);
  std::memcpy(slot, &h, sizeof(h));
  const size_t slot_off = static_cast<size_t>(slot - static_cast<char*>(region_->data));
  const size_t remote_off = p_.remote_offset + (sent_ % p_.chunks) * p_.chunk_bytes;
  absl::StatusOr<uint64_t> id = puts.Put(*region_, slot_off, p_.peer_rank, *region_, remote_off,
                                         kChunkHeaderBytes + body_bytes, MakeTag(p_.data_kind, 0));
  if (!id.ok()) return Annotate(id.status(), p_.name);
  stage_put_[sent_ % p_.chunks] = *id;
  ++sent_;
  ++bytes_.chunks;
  if (kind == ChunkKind::kRecords) {
    bytes_.records += body_bytes;
    bytes_.record_count += records;
    bytes_.metadata += kChunkHeaderBytes;
  } else {
    bytes_.metadata += kChunkHeaderBytes + body_bytes;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> OutboundStream::Flush(PutTracker& puts, uint32_t op_seq) {
  if (records_ == 0) return true;
  if (!CanPost(puts)) return false;
  absl::Status s = Post(puts, ChunkKind::kRecords, op_seq, records_, records_ * p_.record_bytes);
  if (!s.ok()) return s;
  records_ = 0;
  return true;
}

absl::StatusOr<bool> OutboundStream::SendCounts(PutTracker& puts, uint32_t op_seq,
                                                const PeerCounts& counts) {
  if (records_ != 0) {
    return absl::InternalError(absl::StrCat(p_.name, ": counts sent behind open records"));
  }
  const uint64_t id = stage_put_[sent_ % p_.chunks];
  if ((id != 0 && !puts.Completed(id)) || !CanPost(puts)) return false;
  const size_t body = (counts.tokens_per_rank.size() + counts.tokens_per_expert.size() + 1) * 4;
  EncodePeerCounts(counts, StageSlot(sent_) + kChunkHeaderBytes);
  absl::Status s = Post(puts, ChunkKind::kCounts, op_seq, 0, body);
  if (!s.ok()) return s;
  return true;
}

absl::Status OutboundStream::AddCredits(uint32_t n) {
  if (credited_ + n > sent_) {
    return absl::DataLossError(absl::StrCat(p_.name, ": the peer returned ", credited_ + n,
                                            " chunk credits, only ", sent_, " chunks were sent"));
  }
  credited_ += n;
  return absl::OkStatus();
}

void InboundStream::Init(const CommRegion* region, Params params) {
  region_ = region;
  p_ = std::move(params);
}

absl::Status InboundStream::OnArrival(size_t length) {
  if (arrived_.size() >= p_.chunks) {
    return absl::DataLossError(absl::StrCat(p_.name, ": more than ", p_.chunks,
                                            " chunks in flight (the peer ignores credits)"));
  }
  arrived_.push_back(length);
  return absl::OkStatus();
}

absl::StatusOr<const ChunkHeader*> InboundStream::Current(uint32_t op_seq) {
  if (arrived_.empty()) return nullptr;
  if (!parsed_) {
    const char* slot = static_cast<const char*>(region_->data) + p_.ring_offset +
                       (consumed_ % p_.chunks) * p_.chunk_bytes;
    absl::StatusOr<ChunkHeader> h =
        ParseChunkHeader(slot, arrived_.front(), p_.chunk_bytes, consumed_, p_.config_hash,
                         p_.record_bytes, p_.name.c_str());
    if (!h.ok()) return h.status();
    header_ = *h;
    body_ = slot + kChunkHeaderBytes;
    parsed_ = true;
    cursor = 0;
  }
  if (header_.op_seq != op_seq) {
    return absl::DataLossError(absl::StrCat(p_.name, ": chunk ", header_.stream_seq,
                                            " belongs to operation ", header_.op_seq,
                                            " but this rank is in operation ", op_seq,
                                            " (the ranks disagree on the sequence of "
                                            "dispatch/combine calls)"));
  }
  return &header_;
}

void InboundStream::Finish() {
  arrived_.pop_front();
  ++consumed_;
  parsed_ = false;
  cursor = 0;
  ++pending_credits_;
}

absl::StatusOr<bool> InboundStream::ReturnCredits(PutTracker& puts, size_t credit_source,
                                                  size_t credit_sink) {
  if (pending_credits_ == 0) return true;
  if (!puts.CanPost()) return false;
  const uint32_t n = std::min(pending_credits_, kMaxTagValue);
  absl::StatusOr<uint64_t> id = puts.Put(*region_, credit_source, p_.peer_rank, *region_,
                                         credit_sink, kCreditBytes, MakeTag(p_.credit_kind, n));
  if (!id.ok()) return Annotate(id.status(), p_.name);
  pending_credits_ -= n;
  bytes_.credits += kCreditBytes;
  return pending_credits_ == 0;
}

}  // namespace ep
}  // namespace tokenrail
