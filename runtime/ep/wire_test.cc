// Single-process tests of the engine's pieces: record formats, counts
// messages, chunk headers, the buffer plan, intra-node channels and the row
// kernels.
#include "runtime/ep/wire.h"

#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/ep/buffer_plan.h"
#include "runtime/ep/channel.h"
#include "runtime/ep/kernels.h"
#include "runtime/ep/numeric.h"

namespace tokenrail {
namespace ep {
namespace {

TEST(WireTest, RecordSizes) {
  const DispatchRecordLayout bf16 = DispatchRecordLayout::Make(4, 2048, DType::kBFloat16);
  const DispatchRecordLayout fp8 = DispatchRecordLayout::Make(4, 2048, DType::kFp8E4M3);
  EXPECT_EQ(bf16.size, 4144u);  // 8 header + 16 ids + 16 weights -> 48, + 4096
  EXPECT_EQ(fp8.size, 2160u);   // 48 + 16 tiles * 4 scales + 2048
  EXPECT_LE(static_cast<double>(fp8.size) / bf16.size, 0.53);
  const DispatchRecordLayout odd = DispatchRecordLayout::Make(3, 300, DType::kFp8E4M3);
  EXPECT_EQ(odd.tiles, 3);
  EXPECT_EQ(odd.payload_offset % 16, 0u);
  EXPECT_EQ(odd.size % 16, 0u);
  EXPECT_GE(odd.payload_offset, odd.scales_offset + 12);
  EXPECT_EQ(CombineRecordLayout::Make(2048, DType::kBFloat16).size, 16u + 4096u);
  EXPECT_EQ(CombineRecordLayout::Make(5, DType::kBFloat16).size, 32u);
}

TEST(WireTest, TagsRoundTrip) {
  const uint32_t t = MakeTag(TagKind::kCombineCredit, 4095);
  EXPECT_LE(t, 0xffffu);
  EXPECT_EQ(TagKindOf(t), static_cast<uint32_t>(TagKind::kCombineCredit));
  EXPECT_EQ(TagValueOf(t), 4095u);
}

TEST(WireTest, PeerCountsRoundTripAndValidation) {
  PeerCounts c;
  c.records = 10;
  c.tokens_per_rank = {7, 3};
  c.tokens_per_expert = {5, 2, 3, 0};
  std::vector<char> buf(PeerCountsBytes(2, 2));
  EncodePeerCounts(c, buf.data());
  absl::StatusOr<PeerCounts> d = DecodePeerCounts(buf.data(), buf.size(), 2, 2, 100);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->records, 10);
  EXPECT_EQ(d->tokens_per_rank, c.tokens_per_rank);
  EXPECT_EQ(d->tokens_per_expert, c.tokens_per_expert);
  EXPECT_EQ(DecodePeerCounts(buf.data(), buf.size() - 1, 2, 2, 100).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodePeerCounts(buf.data(), buf.size(), 2, 2, 5).status().code(),
            absl::StatusCode::kDataLoss);  // more records than allowed
  StoreI32(buf.data() + 4 + 8 + 4, 8);     // expert count above its rank's 7 tokens
  EXPECT_EQ(DecodePeerCounts(buf.data(), buf.size(), 2, 2, 100).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(WireTest, ChannelCountsRoundTripAndValidation) {
  ChannelCounts c;
  c.op_seq = 9;
  c.config_hash = 0xabcd;
  c.entries.push_back({3, 4, {1, 4}});
  c.entries.push_back({5, 0, {0, 0}});
  std::string buf(ChannelCountsBytes(2, 2), '\0');
  EncodeChannelCounts(c, 2, buf.data());
  absl::StatusOr<ChannelCounts> d = DecodeChannelCounts(buf.data(), buf.size(), 2, 2, 8);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->op_seq, 9u);
  EXPECT_EQ(d->entries[0].src_rank, 3);
  EXPECT_EQ(d->entries[0].tokens_per_expert, (std::vector<int32_t>{1, 4}));
  // Too many entries, a rank out of range, a record where counts were due.
  EXPECT_FALSE(DecodeChannelCounts(buf.data(), buf.size(), 2, 1, 8).ok());
  EXPECT_FALSE(DecodeChannelCounts(buf.data(), buf.size(), 2, 2, 4).ok());
  StoreI32(buf.data(), 17);
  EXPECT_EQ(DecodeChannelCounts(buf.data(), buf.size(), 2, 2, 8).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(WireTest, ChunkHeaderChecks) {
  std::vector<char> chunk(kChunkHeaderBytes + 2 * 64);
  ChunkHeader h{};
  h.magic = kChunkMagic;
  h.kind = static_cast<uint32_t>(ChunkKind::kRecords);
  h.op_seq = 1;
  h.records = 2;
  h.stream_seq = 5;
  h.config_hash = 7;
  h.body_bytes = 128;
  std::memcpy(chunk.data(), &h, sizeof(h));
  EXPECT_TRUE(ParseChunkHeader(chunk.data(), chunk.size(), 4096, 5, 7, 64, "s").ok());
  EXPECT_EQ(ParseChunkHeader(chunk.data(), chunk.size(), 4096, 6, 7, 64, "s").status().code(),
            absl::StatusCode::kDataLoss);  // out of sequence
  EXPECT_EQ(ParseChunkHeader(chunk.data(), chunk.size(), 4096, 5, 8, 64, "s").status().code(),
            absl::StatusCode::kFailedPrecondition);  // another config
  EXPECT_FALSE(ParseChunkHeader(chunk.data(), chunk.size(), 4096, 5, 7, 48, "s").ok());
  EXPECT_FALSE(ParseChunkHeader(chunk.data(), chunk.size(), 64, 5, 7, 64, "s").ok());
  EXPECT_FALSE(ParseChunkHeader(chunk.data(), 8, 4096, 5, 7, 64, "s").ok());
}

EpConfig PlanConfig(int nodes, int rpn, EpRouting routing) {
  EpConfig c;
  c.topology = {nodes, rpn, nodes * rpn * 2};
  c.top_k = 2;
  c.max_nodes = nodes;
  c.hidden = 200;
  c.routing = routing;
  c.buffer_bytes = 1 << 20;
  return c;
}

TEST(BufferPlanTest, PeersAreInverseAndRegionsDisjoint) {
  for (EpRouting routing : {EpRouting::kHierarchical, EpRouting::kFlat}) {
    for (int nodes : {1, 2, 3}) {
      const EpConfig c = PlanConfig(nodes, 3, routing);
      absl::StatusOr<BufferPlan> p = MakeBufferPlan(c);
      ASSERT_TRUE(p.ok()) << p.status();
      const int W = nodes * 3;
      EXPECT_EQ(p->peers, routing == EpRouting::kFlat ? W - 3 : nodes - 1);
      for (int r = 0; r < W; ++r) {
        std::set<int> seen;
        for (int q = 0; q < p->peers; ++q) {
          const int peer = p->PeerRank(r, q);
          EXPECT_NE(peer / 3, r / 3);
          EXPECT_EQ(p->PeerIndex(r, peer), q);
          EXPECT_GE(p->PeerIndex(peer, r), 0) << "peering must be symmetric";
          seen.insert(peer);
        }
        EXPECT_EQ(seen.size(), static_cast<size_t>(p->peers));
        EXPECT_EQ(p->PeerIndex(r, r), -1);
      }
      // Areas in order, inside the region.
      EXPECT_LE(p->rev_counters(2, p->sub_streams - 1) + sizeof(RingCounters),
                p->credit_source_offset);
      EXPECT_LE(p->fwd_ring(2) + p->fwd_slots * p->drec.size, p->rev_offset);
      EXPECT_LE(p->rev_ring(2, p->sub_streams - 1) + p->rev_slots * p->crec.size, p->peers_offset);
      if (p->peers > 0) {
        EXPECT_LE(p->combine_out(p->peers - 1) + p->chunks * p->cchunk_bytes, p->total_bytes);
        EXPECT_GE(p->dchunk_bytes, kChunkHeaderBytes + p->peer_counts_bytes);
      }
      EXPECT_GE(p->fwd_slots, p->counts_slots);
    }
  }
}

TEST(BufferPlanTest, MinimumAndBudget) {
  EpConfig c = PlanConfig(2, 2, EpRouting::kHierarchical);
  absl::StatusOr<size_t> min = MinBufferBytes(c);
  ASSERT_TRUE(min.ok());
  c.buffer_bytes = 1;  // raised to the minimum
  absl::StatusOr<BufferPlan> tiny = MakeBufferPlan(c);
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->total_bytes, *min);
  EXPECT_EQ(tiny->rev_slots, 1u);
  EXPECT_EQ(tiny->dchunk_records, 1u);
  c.buffer_bytes = 8 << 20;
  absl::StatusOr<BufferPlan> big = MakeBufferPlan(c);
  ASSERT_TRUE(big.ok());
  EXPECT_LE(big->total_bytes, c.buffer_bytes);
  EXPECT_GT(big->total_bytes, c.buffer_bytes / 2);
  EXPECT_EQ(big->chunks, kMaxChunksPerRing);
  EXPECT_LE(big->dchunk_bytes, kMaxChunkBytes);
}

// One ring in plain memory, both ends in this thread.
struct TestRing {
  alignas(64) EngineBell a{}, b{};
  alignas(64) RingCounters counters{};
  std::vector<char> slots;
  ChannelWriter w;
  ChannelReader r;
  TestRing(size_t slot, uint64_t n) : slots(slot * n) {
    w = ChannelWriter(&counters, slots.data(), slot, n, &b, "w");
    r = ChannelReader(&counters, slots.data(), slot, n, &a, "r");
  }
};

TEST(ChannelTest, StreamsAcrossWrapsWithMultiSlotMessages) {
  TestRing ring(16, 5);
  uint64_t sent = 0, got = 0;
  std::string msg(40, 'x'), out;  // 3 slots
  for (int round = 0; round < 50; ++round) {
    // One record per free slot, then a 3-slot message when it fits.
    for (;;) {
      absl::StatusOr<uint64_t> free = ring.w.Free();
      ASSERT_TRUE(free.ok());
      if (*free == 0) break;
      std::memcpy(ring.w.Slot(0), &sent, sizeof(sent));
      ring.w.Commit(1);
      ++sent;
      if (sent % 3 == 0) break;
    }
    ring.w.Publish();
    EXPECT_GT(ring.b.events.load(), 0u);  // the consumer's engine was woken
    absl::StatusOr<uint64_t> avail = ring.r.Available();
    ASSERT_TRUE(avail.ok());
    for (uint64_t i = 0; i < *avail; ++i) {
      uint64_t v;
      std::memcpy(&v, ring.r.Slot(i), sizeof(v));
      EXPECT_EQ(v, got++);
    }
    ring.r.Release(*avail);
    ring.r.Publish();
    msg[0] = static_cast<char>('a' + round % 26);
    absl::StatusOr<bool> wrote = ring.w.WriteMessage(msg.data(), msg.size());
    ASSERT_TRUE(wrote.ok());
    ASSERT_TRUE(*wrote);  // the ring is empty: 3 of 5 slots fit
    absl::StatusOr<bool> read = ring.r.ReadMessage(msg.size(), &out);
    ASSERT_TRUE(read.ok() && *read);
    EXPECT_EQ(out, msg);
  }
  EXPECT_EQ(sent, got);
  EXPECT_GT(sent, 50u);
}

TEST(ChannelTest, FullRingAndCorruptCounters) {
  TestRing ring(8, 2);
  ASSERT_EQ(*ring.w.Free(), 2u);
  ring.w.Commit(2);
  ring.w.Publish();
  EXPECT_EQ(*ring.w.Free(), 0u);
  absl::StatusOr<bool> wrote = ring.w.WriteMessage("12345678", 8);
  ASSERT_TRUE(wrote.ok());
  EXPECT_FALSE(*wrote);
  // A consumer position beyond what was published is impossible.
  ring.counters.tail.store(5);
  EXPECT_EQ(ring.w.Free().status().code(), absl::StatusCode::kDataLoss);
  TestRing other(8, 2);
  other.counters.head.store(9);  // more than the ring holds
  EXPECT_EQ(other.r.Available().status().code(), absl::StatusCode::kDataLoss);
}

TEST(KernelsTest, AccumulationMatchesScalarOrder) {
  std::vector<float> acc(300), v(300), ref(300);
  std::vector<uint16_t> vb(300);
  for (int i = 0; i < 300; ++i) {
    acc[i] = ref[i] = 0.1f * i - 7;
    v[i] = 1.0f / (i + 3);
    vb[i] = FloatToBf16(v[i]);
  }
  AccumulateWeighted(acc.data(), v.data(), DType::kFloat32, 0.37f, 300);
  for (int i = 0; i < 300; ++i) ref[i] = ref[i] + 0.37f * v[i];
  EXPECT_EQ(std::memcmp(acc.data(), ref.data(), 300 * 4), 0);
  Accumulate(acc.data(), vb.data(), DType::kBFloat16, 300);
  for (int i = 0; i < 300; ++i) ref[i] = ref[i] + Bf16ToFloat(vb[i]);
  EXPECT_EQ(std::memcmp(acc.data(), ref.data(), 300 * 4), 0);
  std::vector<uint16_t> out(300);
  StoreRow(acc.data(), 300, DType::kBFloat16, out.data());
  for (int i = 0; i < 300; ++i) EXPECT_EQ(out[i], FloatToBf16(acc[i]));
}

TEST(KernelsTest, AssignIsAddingToZeros) {
  std::vector<float> v = {-0.0f, 0.0f, 1.5f, -2.25f, 3e-39f, -1e30f};
  std::vector<uint16_t> vb(v.size());
  FloatToBf16(v.data(), static_cast<int64_t>(v.size()), vb.data());
  for (DType dt : {DType::kFloat32, DType::kBFloat16}) {
    const void* src = dt == DType::kFloat32 ? static_cast<const void*>(v.data())
                                            : static_cast<const void*>(vb.data());
    std::vector<float> zeros(v.size(), 0.0f), assigned(v.size(), 7.0f);
    AccumulateWeighted(zeros.data(), src, dt, -1.0f, static_cast<int64_t>(v.size()));
    AssignWeighted(assigned.data(), src, dt, -1.0f, static_cast<int64_t>(v.size()));
    EXPECT_EQ(std::memcmp(zeros.data(), assigned.data(), v.size() * 4), 0);
    std::fill(zeros.begin(), zeros.end(), 0.0f);
    Accumulate(zeros.data(), src, dt, static_cast<int64_t>(v.size()));
    Assign(assigned.data(), src, dt, static_cast<int64_t>(v.size()));
    EXPECT_EQ(std::memcmp(zeros.data(), assigned.data(), v.size() * 4), 0);
    EXPECT_FALSE(std::signbit(assigned[0]));  // 0 + -0 = +0
  }
}

TEST(KernelsTest, PackUnpackFp8AndNonFinite) {
  std::vector<float> x(200);
  for (int i = 0; i < 200; ++i) x[i] = (i % 7 - 3) * 1.5f;
  std::vector<uint8_t> q(200), q2(200);
  std::vector<float> s(2), s2(2);
  ASSERT_TRUE(PackRow(x.data(), DType::kFloat32, 200, DType::kFp8E4M3, q.data(), s.data()).ok());
  ASSERT_TRUE(QuantizeRowFp8(x.data(), 200, q2.data(), s2.data()).ok());
  EXPECT_EQ(q, q2);
  EXPECT_EQ(s, s2);
  x[150] = NAN;
  absl::Status bad = PackRow(x.data(), DType::kFloat32, 200, DType::kFp8E4M3, q.data(), s.data());
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(q[0], kFp8E4M3NanCode);  // the record still travels, as NaN
  EXPECT_EQ(ExpertDType(DType::kFp8E4M3, false), DType::kBFloat16);
  EXPECT_EQ(ExpertDType(DType::kFp8E4M3, true), DType::kFp8E4M3);
}

}  // namespace
}  // namespace ep
}  // namespace tokenrail
