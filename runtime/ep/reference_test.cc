#include "runtime/ep/reference.h"

#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/ep/gate.h"
#include "runtime/ep/layout.h"
#include "runtime/ep/numeric.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace ep {
namespace {

// Owns the per-rank inputs that RankInput views.
struct World {
  EpTopology topo;
  ReferenceOptions options;
  std::vector<std::vector<float>> x, weights;
  std::vector<std::vector<int32_t>> idx;
  std::vector<RankInput> inputs;

  void Bind() {
    inputs.clear();
    for (size_t r = 0; r < x.size(); ++r) {
      RankInput in;
      in.num_tokens = static_cast<int64_t>(idx[r].size()) / options.top_k;
      in.x = x[r];
      in.topk_idx = idx[r];
      in.topk_weights = weights[r];
      inputs.push_back(in);
    }
  }
};

// Routed by the real gate (node-limited), encoded payloads, some ranks with
// no tokens, some -1 slots.
World MakeWorld(const EpTopology& topo, int k, int max_nodes, int64_t hidden, uint32_t seed,
                int64_t align = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  World w;
  w.topo = topo;
  w.options.top_k = k;
  w.options.hidden = hidden;
  w.options.align = align;
  GateOptions g;
  g.top_k = k;
  g.max_nodes = max_nodes;
  for (int r = 0; r < topo.world_size(); ++r) {
    const int64_t tokens = (r % 3 == 2) ? 0 : 1 + static_cast<int64_t>(rng() % 40);
    std::vector<float> logits(tokens * topo.experts);
    for (float& v : logits) v = nd(rng);
    std::vector<int32_t> idx(tokens * k);
    std::vector<float> wts(tokens * k);
    EXPECT_TRUE(Gate(topo, g, tokens, logits, {}, absl::MakeSpan(idx), absl::MakeSpan(wts)).ok());
    for (int64_t t = 0; t < tokens; ++t) {
      if (rng() % 7 == 0) idx[t * k + rng() % k] = -1;
    }
    std::vector<float> x(tokens * hidden);
    EXPECT_TRUE(FillEncodedPayload(r, tokens, hidden, absl::MakeSpan(x)).ok());
    w.x.push_back(std::move(x));
    w.idx.push_back(std::move(idx));
    w.weights.push_back(std::move(wts));
  }
  w.Bind();
  return w;
}

TEST(ReferenceDispatchTest, HandExample) {
  // One node, two ranks, four experts (two per rank), top-2, hidden 3.
  World w;
  w.topo = EpTopology{1, 2, 4};
  w.options.top_k = 2;
  w.options.hidden = 3;
  w.idx = {{3, 0, 1, 2}, {2, 3}};  // rank 0: t0 -> {3, 0}, t1 -> {1, 2}; rank 1: t0 -> {2, 3}
  w.weights = {{0.75f, 0.25f, 0.5f, 0.5f}, {0.125f, 0.875f}};
  w.x = {{1, 2, 3, 4, 5, 6}, {7, 8, 9}};
  w.Bind();
  absl::StatusOr<std::vector<RankDispatch>> d = ReferenceDispatch(w.topo, w.options, w.inputs);
  ASSERT_TRUE(d.ok()) << d.status();
  // Rank 0 hosts experts 0, 1: expert 0 gets (r0, t0); expert 1 gets (r0, t1).
  const RankDispatch& r0 = (*d)[0];
  ASSERT_EQ(r0.rows.size(), 2u);
  EXPECT_EQ(r0.rows[0].src_rank, 0);
  EXPECT_EQ(r0.rows[0].src_token, 0);
  EXPECT_EQ(r0.rows[0].local_expert, 0);
  EXPECT_EQ(r0.rows[0].topk_slot, 1);
  EXPECT_EQ(r0.rows[0].weight, 0.25f);
  EXPECT_EQ(r0.rows[1].src_token, 1);
  EXPECT_EQ(r0.rows[1].local_expert, 1);
  EXPECT_EQ(r0.x, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(r0.expert_counts, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(r0.received_tokens, 2);
  // Rank 1 hosts experts 2, 3: expert 2 gets (r0, t1), (r1, t0); expert 3
  // gets (r0, t0), (r1, t0): ordered by (source rank, token).
  const RankDispatch& r1 = (*d)[1];
  ASSERT_EQ(r1.rows.size(), 4u);
  const int32_t want[4][4] = {{0, 1, 0, 1}, {1, 0, 0, 0}, {0, 0, 1, 0}, {1, 0, 1, 1}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r1.rows[i].src_rank, want[i][0]) << i;
    EXPECT_EQ(r1.rows[i].src_token, want[i][1]) << i;
    EXPECT_EQ(r1.rows[i].local_expert, want[i][2]) << i;
    EXPECT_EQ(r1.rows[i].topk_slot, want[i][3]) << i;
  }
  EXPECT_EQ(r1.x, (std::vector<float>{4, 5, 6, 7, 8, 9, 1, 2, 3, 7, 8, 9}));
  EXPECT_EQ(r1.expert_counts, (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(r1.expert_offsets, (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(r1.received_tokens, 3);  // (r0,t0), (r0,t1), (r1,t0)

  // Combine with experts that multiply by (local expert + 1) * 10 on rank 1
  // and by 1 on rank 0: y = sum_j w_j * f_{e_j}(x).
  std::vector<std::vector<float>> outs = {r0.x, r1.x};
  for (size_t i = 0; i < r1.rows.size(); ++i) {
    for (int c = 0; c < 3; ++c) outs[1][i * 3 + c] *= (r1.rows[i].local_expert + 1) * 10.0f;
  }
  const std::vector<absl::Span<const float>> views = {outs[0], outs[1]};
  absl::StatusOr<std::vector<std::vector<float>>> y =
      ReferenceCombine(w.topo, w.options, w.inputs, *d, views);
  ASSERT_TRUE(y.ok()) << y.status();
  // r0 t0: 0.75 * 20x + 0.25 * x = 15.25 x; r0 t1: 0.5 x + 0.5 * 10x = 5.5x;
  // r1 t0: 0.125 * 10x + 0.875 * 20x = 18.75 x.
  EXPECT_EQ((*y)[0], (std::vector<float>{15.25f, 30.5f, 45.75f, 22.0f, 27.5f, 33.0f}));
  EXPECT_EQ((*y)[1], (std::vector<float>{131.25f, 150.0f, 168.75f}));
}

TEST(ReferenceDispatchTest, AgreesWithLayoutAndPayloadsOnRandomWorlds) {
  const struct {
    EpTopology topo;
    int k, max_nodes;
  } cases[] = {{{1, 1, 4}, 2, 1},  {{1, 4, 16}, 4, 1}, {{2, 2, 16}, 4, 2},
               {{4, 1, 16}, 4, 2}, {{3, 2, 24}, 6, 2}, {{2, 2, 16}, 3, 1}};
  uint32_t seed = 1;
  for (const auto& c : cases) {
    for (int64_t align : {1, 4}) {
      SCOPED_TRACE(ToString(c.topo) + " align=" + std::to_string(align));
      World w = MakeWorld(c.topo, c.k, c.max_nodes, 20, seed++, align);
      absl::StatusOr<std::vector<RankDispatch>> d = ReferenceDispatch(w.topo, w.options, w.inputs);
      ASSERT_TRUE(d.ok()) << d.status();
      // Layout of every source: per-rank and per-expert counts must add up.
      std::vector<int64_t> tokens_to(c.topo.world_size(), 0), expert_rows(c.topo.experts, 0);
      for (int src = 0; src < c.topo.world_size(); ++src) {
        absl::StatusOr<Layout> l = ComputeLayout(c.topo, c.k, w.inputs[src].num_tokens, w.idx[src]);
        ASSERT_TRUE(l.ok()) << l.status();
        for (int r = 0; r < c.topo.world_size(); ++r) tokens_to[r] += l->tokens_per_rank[r];
        for (int e = 0; e < c.topo.experts; ++e) expert_rows[e] += l->tokens_per_expert[e];
      }
      for (int r = 0; r < c.topo.world_size(); ++r) {
        const RankDispatch& rd = (*d)[r];
        EXPECT_EQ(rd.received_tokens, tokens_to[r]);
        const int epr = c.topo.experts_per_rank();
        ASSERT_EQ(rd.expert_offsets.size(), static_cast<size_t>(epr + 1));
        EXPECT_EQ(rd.expert_offsets[epr], static_cast<int64_t>(rd.rows.size()));
        for (int le = 0; le < epr; ++le) {
          EXPECT_EQ(rd.expert_counts[le], expert_rows[c.topo.first_expert_of_rank(r) + le]);
          const int64_t begin = rd.expert_offsets[le], end = rd.expert_offsets[le + 1];
          EXPECT_EQ(begin % align, 0);
          EXPECT_EQ(end - begin, (rd.expert_counts[le] + align - 1) / align * align);
          for (int64_t i = begin; i < end; ++i) {
            const DispatchRow& row = rd.rows[i];
            EXPECT_EQ(row.local_expert, le);
            const absl::Span<const float> data(rd.x.data() + i * 20, 20);
            if (i >= begin + rd.expert_counts[le]) {
              EXPECT_TRUE(row.is_padding());
              EXPECT_EQ(row.weight, 0.0f);
              for (float v : data) EXPECT_EQ(v, 0.0f);
              continue;
            }
            ASSERT_FALSE(row.is_padding());
            // Right expert, weight from the source, ordered by (rank, token).
            const int k = c.k;
            EXPECT_EQ(w.idx[row.src_rank][row.src_token * k + row.topk_slot],
                      c.topo.first_expert_of_rank(r) + le);
            EXPECT_EQ(row.weight, w.weights[row.src_rank][row.src_token * k + row.topk_slot]);
            if (i > begin) {
              const DispatchRow& prev = rd.rows[i - 1];
              EXPECT_LT(std::make_pair(prev.src_rank, prev.src_token),
                        std::make_pair(row.src_rank, row.src_token));
            }
            // The payload says where it came from.
            absl::StatusOr<PayloadOrigin> origin = DecodePayloadRow(data);
            ASSERT_TRUE(origin.ok()) << origin.status();
            EXPECT_EQ(origin->rank, row.src_rank);
            EXPECT_EQ(origin->token, row.src_token);
          }
        }
      }
      // Without payload copies the metadata is the same.
      ReferenceOptions meta = w.options;
      meta.copy_payload = false;
      absl::StatusOr<std::vector<RankDispatch>> m = ReferenceDispatch(w.topo, meta, w.inputs);
      ASSERT_TRUE(m.ok());
      for (int r = 0; r < c.topo.world_size(); ++r) {
        EXPECT_TRUE((*m)[r].x.empty());
        EXPECT_EQ((*m)[r].rows.size(), (*d)[r].rows.size());
        EXPECT_EQ((*m)[r].expert_offsets, (*d)[r].expert_offsets);
      }
    }
  }
}

TEST(ReferenceCombineTest, IdentityExpertsGiveWeightSumTimesX) {
  World w = MakeWorld(EpTopology{2, 2, 16}, 4, 2, 33, 99, /*align=*/8);
  absl::StatusOr<std::vector<RankDispatch>> d = ReferenceDispatch(w.topo, w.options, w.inputs);
  ASSERT_TRUE(d.ok());
  std::vector<absl::Span<const float>> outs;
  for (const RankDispatch& rd : *d) outs.push_back(rd.x);  // identity experts
  absl::StatusOr<std::vector<std::vector<float>>> y =
      ReferenceCombine(w.topo, w.options, w.inputs, *d, outs);
  absl::StatusOr<std::vector<std::vector<float>>> id = IdentityCombine(w.topo, w.options, w.inputs);
  ASSERT_TRUE(y.ok()) << y.status();
  ASSERT_TRUE(id.ok()) << id.status();
  for (int r = 0; r < w.topo.world_size(); ++r) {
    ASSERT_EQ((*y)[r].size(), (*id)[r].size());
    for (size_t i = 0; i < (*y)[r].size(); ++i) {
      ASSERT_EQ(std::memcmp(&(*y)[r][i], &(*id)[r][i], sizeof(float)), 0)
          << "rank " << r << " element " << i << ": bitwise equal by construction";
    }
    for (int64_t t = 0; t < w.inputs[r].num_tokens; ++t) {
      double wsum = 0;
      for (int j = 0; j < 4; ++j) {
        if (w.idx[r][t * 4 + j] >= 0) wsum += w.weights[r][t * 4 + j];
      }
      for (int64_t c = 0; c < 33; ++c) {
        const double want = wsum * w.x[r][t * 33 + c];
        EXPECT_NEAR((*y)[r][t * 33 + c], want, 4 * 1.2e-7 * std::fabs(want) + 1e-30);
      }
    }
  }
}

TEST(ReferenceCombineTest, LinearExpertsMatchDirectComputation) {
  const int64_t H = 16;
  World w = MakeWorld(EpTopology{3, 2, 12}, 3, 2, H, 5);
  std::mt19937 rng(17);
  std::normal_distribution<float> nd;
  for (auto& x : w.x) {
    for (float& v : x) v = nd(rng);
  }
  w.Bind();
  // Expert e: out = A_e x, A_e random H x H.
  std::vector<std::vector<float>> A(w.topo.experts, std::vector<float>(H * H));
  for (auto& a : A) {
    for (float& v : a) v = nd(rng);
  }
  const auto apply = [&](int e, const float* x, float* out) {
    for (int64_t i = 0; i < H; ++i) {
      float acc = 0.0f;
      for (int64_t j = 0; j < H; ++j) acc += A[e][i * H + j] * x[j];
      out[i] = acc;
    }
  };
  absl::StatusOr<std::vector<RankDispatch>> d = ReferenceDispatch(w.topo, w.options, w.inputs);
  ASSERT_TRUE(d.ok());
  std::vector<std::vector<float>> outs(w.topo.world_size());
  for (int r = 0; r < w.topo.world_size(); ++r) {
    const RankDispatch& rd = (*d)[r];
    outs[r].assign(rd.rows.size() * H, 0.0f);
    for (size_t i = 0; i < rd.rows.size(); ++i) {
      if (rd.rows[i].is_padding()) continue;
      apply(w.topo.first_expert_of_rank(r) + rd.rows[i].local_expert, rd.x.data() + i * H,
            outs[r].data() + i * H);
    }
  }
  std::vector<absl::Span<const float>> views(outs.begin(), outs.end());
  absl::StatusOr<std::vector<std::vector<float>>> y =
      ReferenceCombine(w.topo, w.options, w.inputs, *d, views);
  ASSERT_TRUE(y.ok()) << y.status();
  for (int r = 0; r < w.topo.world_size(); ++r) {
    for (int64_t t = 0; t < w.inputs[r].num_tokens; ++t) {
      // Directly, in slot order with the same roundings: bitwise equal.
      std::vector<float> acc(H, 0.0f), out(H);
      for (int j = 0; j < 3; ++j) {
        const int32_t e = w.idx[r][t * 3 + j];
        if (e < 0) continue;
        apply(e, w.x[r].data() + t * H, out.data());
        for (int64_t c = 0; c < H; ++c) acc[c] = acc[c] + w.weights[r][t * 3 + j] * out[c];
      }
      for (int64_t c = 0; c < H; ++c) ASSERT_EQ((*y)[r][t * H + c], acc[c]);
    }
  }
}

TEST(ReferenceTest, RejectsBadInputsNamingTheRank) {
  World w = MakeWorld(EpTopology{2, 1, 4}, 2, 1, 4, 3);
  std::vector<RankInput> one(w.inputs.begin(), w.inputs.begin() + 1);
  EXPECT_NE(ReferenceDispatch(w.topo, w.options, one)
                .status()
                .message()
                .find("1 rank inputs for world size 2"),
            absl::string_view::npos);
  w.idx[1] = {0, 9};
  w.x[1].resize(4);
  w.weights[1].resize(2);
  w.Bind();
  const absl::Status s = ReferenceDispatch(w.topo, w.options, w.inputs).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("rank 1: topk_idx: token 0 slot 1 holds expert 9"),
            absl::string_view::npos)
      << s;
  w.idx[1] = {0, 1};
  w.x[1].resize(3);
  w.Bind();
  EXPECT_NE(ReferenceDispatch(w.topo, w.options, w.inputs)
                .status()
                .message()
                .find("rank 1 x has 3 elements, expected 4"),
            absl::string_view::npos);
  ReferenceOptions bad = w.options;
  bad.align = 0;
  EXPECT_EQ(ReferenceDispatch(w.topo, bad, w.inputs).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Combine with expert outputs of the wrong size.
  w.x[1].resize(4);
  w.Bind();
  absl::StatusOr<std::vector<RankDispatch>> d = ReferenceDispatch(w.topo, w.options, w.inputs);
  ASSERT_TRUE(d.ok());
  std::vector<float> short_out(1);
  std::vector<absl::Span<const float>> outs = {(*d)[0].x, short_out};
  const absl::Status c = ReferenceCombine(w.topo, w.options, w.inputs, *d, outs).status();
  EXPECT_NE(c.message().find("rank 1 expert output has 1 elements"), absl::string_view::npos) << c;
}

TEST(EncodedPayloadTest, ValuesAreExactInBf16AndDistinctPerRow) {
  std::set<std::vector<uint16_t>> heads;
  for (int rank = 0; rank < 256; rank += 51) {
    for (int64_t token : {0, 1, 255, 256, 4095, 65535}) {
      std::vector<uint16_t> head;
      for (int64_t c = 0; c < 3000; ++c) {
        const float v = EncodePayload(rank, token, c);
        ASSERT_TRUE(std::isnormal(v));
        ASSERT_EQ(Bf16ToFloat(FloatToBf16(v)), v) << "exact in BF16";
        if (c < 3) head.push_back(FloatToBf16(v));
      }
      EXPECT_TRUE(heads.insert(head).second) << "rank " << rank << " token " << token;
      std::vector<float> row(3000);
      for (int64_t c = 0; c < 3000; ++c) row[c] = EncodePayload(rank, token, c);
      absl::StatusOr<PayloadOrigin> o = DecodePayloadRow(row);
      ASSERT_TRUE(o.ok()) << o.status();
      EXPECT_EQ(o->rank, rank);
      EXPECT_EQ(o->token, token);
    }
  }
}

TEST(EncodedPayloadTest, MisplacedValuesAreCaughtAndNamed) {
  const int64_t H = 256;
  std::vector<float> x(4 * H);
  ASSERT_TRUE(FillEncodedPayload(2, 4, H, absl::MakeSpan(x)).ok());
  std::vector<float> row(x.begin() + 1 * H, x.begin() + 2 * H);  // rank 2, token 1
  int caught = 0, trials = 0;
  // A value from another token, same column, anywhere in the row.
  for (int64_t c = 3; c < H; ++c) {
    std::vector<float> bad = row;
    bad[c] = x[3 * H + c];
    ++trials;
    const absl::Status s = DecodePayloadRow(bad).status();
    if (s.code() == absl::StatusCode::kDataLoss) {
      ++caught;
      EXPECT_NE(s.message().find("rank 2 token 1: column " + std::to_string(c)),
                absl::string_view::npos)
          << s;
    }
  }
  // Only the 6-bit check can differ for column-byte columns: nearly all are caught.
  EXPECT_GE(caught, trials - 8);
  // A chunk shifted by one column is caught.
  std::vector<float> shifted = row;
  std::copy(row.begin() + 128, row.end() - 1, shifted.begin() + 129);
  EXPECT_EQ(DecodePayloadRow(shifted).status().code(), absl::StatusCode::kDataLoss);
  // A zeroed tail (lost chunk) is caught, naming what the column holds.
  std::vector<float> zero = row;
  std::fill(zero.begin() + 200, zero.end(), 0.0f);
  const absl::Status z = DecodePayloadRow(zero).status();
  EXPECT_NE(z.message().find("column 200 holds 0"), absl::string_view::npos) << z;
  EXPECT_NE(z.message().find("no payload value"), absl::string_view::npos) << z;
  // Domain checks.
  std::vector<float> small(2);
  EXPECT_EQ(DecodePayloadRow(small).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> one(4);
  EXPECT_EQ(FillEncodedPayload(256, 1, 4, absl::MakeSpan(one)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FillEncodedPayload(0, 2, 4, absl::MakeSpan(one)).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ep
}  // namespace tokenrail
