// The engine between threads of one process (InProcessWorld): every
// scenario of ep_testing.h on every topology the issue names, both routings,
// every payload type, tiny buffers, handle reuse, determinism, invalid
// inputs and failures. The same scenarios run between processes on launched
// clusters in test/ep/.
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "runtime/ep/buffer.h"
#include "runtime/ep/buffer_plan.h"
#include "runtime/ep/ep_testing.h"
#include "runtime/ep/in_process_comm.h"

namespace tokenrail {
namespace ep {
namespace {

using testing::ExpertKind;
using testing::PayloadKind;
using testing::RankReport;
using testing::RoutingPattern;
using testing::Scenario;

EpConfig Config(int nodes, int rpn, int experts, int top_k, int max_nodes, int64_t hidden) {
  EpConfig c;
  c.topology = {nodes, rpn, experts};
  c.top_k = top_k;
  c.max_nodes = max_nodes;
  c.hidden = hidden;
  c.dispatch_dtype = DType::kBFloat16;
  c.combine_dtype = DType::kBFloat16;
  c.buffer_bytes = 1 << 20;
  return c;
}

struct WorldResult {
  std::vector<absl::StatusOr<RankReport>> reports;
  std::vector<uint64_t> y_hashes() const {
    std::vector<uint64_t> h;
    for (const auto& r : reports) h.push_back(r.ok() ? r->y_hash : 0);
    return h;
  }
};

// An in-process world shaped like `c`'s topology.
InProcessWorld::Options WorldFor(const EpConfig& c) {
  InProcessWorld::Options wo;
  wo.nodes = c.topology.nodes;
  wo.ranks_per_node = c.topology.ranks_per_node;
  return wo;
}

// Runs `s` on every rank of an in-process world, one thread per rank.
WorldResult RunWorld(const Scenario& s, absl::Duration put_delay = absl::ZeroDuration()) {
  InProcessWorld::Options wo = WorldFor(s.config);
  wo.heap_bytes = size_t{256} << 20;
  wo.put_delay = put_delay;
  InProcessWorld world(wo);
  const int W = world.world_size();
  WorldResult out;
  out.reports.assign(W, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int r = 0; r < W; ++r) {
    threads.emplace_back([&, r] {
      absl::StatusOr<std::unique_ptr<EpBuffer>> buf = EpBuffer::Create(world.comm(r), s.config);
      if (!buf.ok()) {
        out.reports[r] = buf.status();
        return;
      }
      out.reports[r] = testing::RunRank(**buf, s);
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

// Creates every rank's buffer (a collective: one thread per rank). Empty,
// with the failure reported, when a rank's Create fails.
std::vector<std::unique_ptr<EpBuffer>> CreateBuffers(InProcessWorld& world, const EpConfig& c) {
  const int W = world.world_size();
  std::vector<absl::StatusOr<std::unique_ptr<EpBuffer>>> created(W);
  std::vector<std::thread> threads;
  for (int r = 0; r < W; ++r) {
    threads.emplace_back([&, r] { created[r] = EpBuffer::Create(world.comm(r), c); });
  }
  for (auto& t : threads) t.join();
  std::vector<std::unique_ptr<EpBuffer>> bufs;
  for (int r = 0; r < W; ++r) {
    if (!created[r].ok()) {
      ADD_FAILURE() << "rank " << r << ": " << created[r].status();
      return {};
    }
    bufs.push_back(*std::move(created[r]));
  }
  return bufs;
}

void ExpectAllOk(const WorldResult& w, const std::string& what) {
  for (size_t r = 0; r < w.reports.size(); ++r) {
    EXPECT_TRUE(w.reports[r].ok()) << what << " rank " << r << ": " << w.reports[r].status();
  }
}

struct Shape {
  int nodes, rpn, experts, top_k, max_nodes;
};
const Shape kShapes[] = {
    {1, 1, 4, 2, 1}, {1, 4, 16, 4, 1}, {2, 2, 16, 4, 2}, {4, 1, 8, 3, 2}, {3, 2, 12, 4, 2}};

TEST(EngineTest, TopologiesIdentityEncodedBf16) {
  for (const Shape& sh : kShapes) {
    for (EpRouting routing : {EpRouting::kHierarchical, EpRouting::kFlat}) {
      Scenario s;
      s.config = Config(sh.nodes, sh.rpn, sh.experts, sh.top_k, sh.max_nodes, 130);
      s.config.routing = routing;
      s.tokens = 40;
      const std::string what = absl::StrCat(ToString(s.config.topology), " ", RoutingName(routing));
      ExpectAllOk(RunWorld(s), what);
    }
  }
}

TEST(EngineTest, LinearExpertsFp32AgainstReference) {
  for (const Shape& sh : kShapes) {
    Scenario s;
    s.config = Config(sh.nodes, sh.rpn, sh.experts, sh.top_k, sh.max_nodes, 72);
    s.config.dispatch_dtype = DType::kFloat32;
    s.config.combine_dtype = DType::kFloat32;
    s.experts = ExpertKind::kLinear;
    s.payload = PayloadKind::kRandom;
    s.tokens = 48;
    ExpectAllOk(RunWorld(s), ToString(s.config.topology));
  }
}

TEST(EngineTest, LinearExpertsBf16InputsAndOutputs) {
  Scenario s;
  s.config = Config(3, 2, 12, 4, 2, 300);
  s.experts = ExpertKind::kLinear;
  s.payload = PayloadKind::kRandom;
  s.x_dtype = DType::kBFloat16;
  s.expert_out_dtype = DType::kBFloat16;
  s.tokens = 64;
  ExpectAllOk(RunWorld(s), "3x2 bf16");
}

TEST(EngineTest, Fp8DispatchWithinBound) {
  for (bool keep : {false, true}) {
    Scenario s;
    s.config = Config(2, 2, 16, 4, 2, 300);  // 3 tiles, the last partial
    s.config.dispatch_dtype = DType::kFp8E4M3;
    s.config.fp8_keep_quantized = keep;
    s.payload = PayloadKind::kRandom;
    s.experts = ExpertKind::kLinear;
    s.tokens = 64;
    WorldResult w = RunWorld(s);
    ExpectAllOk(w, keep ? "fp8 kept" : "fp8");
    // RunRank fails a rank whose error exceeds the bound; here the check
    // must also have seen real rounding error (it ran).
    for (const auto& r : w.reports) {
      if (r.ok()) {
        EXPECT_GT(r->max_fp8_error_ratio, 0.0);
      }
    }
  }
}

TEST(EngineTest, Fp8MovesAtMost053OfBf16Bytes) {
  Scenario s;
  s.config = Config(2, 2, 16, 4, 2, 2048);
  s.payload = PayloadKind::kRandom;
  s.tokens = 32;
  s.uneven_tokens = false;
  WorldResult bf16 = RunWorld(s);
  ExpectAllOk(bf16, "bf16");
  s.config.dispatch_dtype = DType::kFp8E4M3;
  WorldResult fp8 = RunWorld(s);
  ExpectAllOk(fp8, "fp8");
  for (size_t r = 0; r < bf16.reports.size(); ++r) {
    if (!bf16.reports[r].ok() || !fp8.reports[r].ok()) continue;
    const double a = bf16.reports[r]->dispatch_stats.inter_node_bytes();
    const double b = fp8.reports[r]->dispatch_stats.inter_node_bytes();
    if (a > 0) {
      EXPECT_LE(b / a, 0.53) << "rank " << r << ": " << b << " vs " << a;
    }
  }
}

TEST(EngineTest, TinyBuffersGiveIdenticalBits) {
  for (EpRouting routing : {EpRouting::kHierarchical, EpRouting::kFlat}) {
    Scenario s;
    s.config = Config(3, 2, 12, 4, 2, 96);
    s.config.routing = routing;
    s.experts = ExpertKind::kLinear;
    s.payload = PayloadKind::kRandom;
    s.tokens = 64;
    WorldResult big = RunWorld(s);
    ExpectAllOk(big, "default buffers");
    absl::StatusOr<size_t> min = MinBufferBytes(s.config);
    ASSERT_TRUE(min.ok());
    s.config.buffer_bytes = *min;
    WorldResult tiny = RunWorld(s, absl::Microseconds(20));
    ExpectAllOk(tiny, "minimum buffers");
    EXPECT_EQ(big.y_hashes(), tiny.y_hashes());
  }
}

TEST(EngineTest, DeterministicAcrossRuns) {
  Scenario s;
  s.config = Config(2, 2, 16, 4, 2, 64);
  s.experts = ExpertKind::kLinear;
  s.payload = PayloadKind::kRandom;
  s.tokens = 96;
  s.rounds = 2;
  const WorldResult first = RunWorld(s);
  ExpectAllOk(first, "first run");
  for (int run = 0; run < 4; ++run) {
    const WorldResult again = RunWorld(s, absl::Microseconds(run * 7));
    ExpectAllOk(again, absl::StrCat("run ", run));
    EXPECT_EQ(again.y_hashes(), first.y_hashes()) << "run " << run;
  }
}

TEST(EngineTest, HandleReuse) {
  for (EpRouting routing : {EpRouting::kHierarchical, EpRouting::kFlat}) {
    Scenario s;
    s.config = Config(2, 2, 16, 4, 2, 64);
    s.config.routing = routing;
    s.rounds = 3;
    s.reuse_layout = true;
    s.tokens = 50;
    ExpectAllOk(RunWorld(s), "reuse");
  }
}

TEST(EngineTest, EdgeRoutings) {
  for (RoutingPattern pattern : {RoutingPattern::kOneExpert, RoutingPattern::kSparse}) {
    Scenario s;
    s.config = Config(3, 2, 12, 4, 2, 33);
    s.routing = pattern;
    s.zero_token_ranks = true;
    s.tokens = 40;
    s.config.align = 8;
    ExpectAllOk(RunWorld(s), "edge routing");
  }
}

TEST(EngineTest, TopKOneAndSixteen) {
  Scenario s;
  s.config = Config(2, 2, 32, 16, 2, 40);
  s.tokens = 24;
  ExpectAllOk(RunWorld(s), "top-16");
  s.config = Config(2, 2, 8, 1, 1, 40);
  ExpectAllOk(RunWorld(s), "top-1");
}

TEST(EngineTest, InvalidConfigsNameTheValues) {
  InProcessWorld::Options wo;
  wo.nodes = 1;
  wo.ranks_per_node = 1;
  InProcessWorld world(wo);
  struct Bad {
    EpConfig c;
    std::string needle;
  };
  std::vector<Bad> bad;
  bad.push_back({Config(1, 1, 4, 5, 1, 8), "top_k"});      // top-k > experts
  bad.push_back({Config(1, 1, 4, 2, 2, 8), "max_nodes"});  // M > N
  bad.push_back({Config(1, 1, 4, 2, 1, 0), "hidden=0"});
  bad.push_back({Config(2, 1, 4, 2, 1, 8), "the job has 1 x 1"});  // not the comm's topology
  EpConfig c = Config(1, 1, 4, 2, 1, 8);
  c.combine_dtype = DType::kFp8E4M3;
  bad.push_back({c, "combine_dtype"});
  c = Config(1, 1, 4, 2, 1, 8);
  c.fp8_keep_quantized = true;
  bad.push_back({c, "fp8_keep_quantized"});
  c = Config(1, 1, 4, 2, 1, 8);
  c.align = 0;
  bad.push_back({c, "align=0"});
  for (const Bad& b : bad) {
    absl::StatusOr<std::unique_ptr<EpBuffer>> buf = EpBuffer::Create(world.comm(0), b.c);
    ASSERT_FALSE(buf.ok()) << b.needle;
    EXPECT_EQ(buf.status().code(), absl::StatusCode::kInvalidArgument) << buf.status();
    EXPECT_NE(buf.status().message().find(b.needle), std::string::npos) << buf.status();
  }
  // E not divisible by N * R, and k unreachable within M nodes.
  EXPECT_EQ(Validate(Config(2, 2, 6, 2, 1, 8)).code(), absl::StatusCode::kInvalidArgument);
  absl::Status unreachable = Validate(Config(2, 2, 8, 5, 1, 8));
  EXPECT_EQ(unreachable.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unreachable.message().find("5"), std::string::npos) << unreachable;
  // Local ranks are byte-sized in the forwarding plan.
  absl::Status wide =
      Validate(Config(1, kMaxRanksPerNode + 1, 4 * (kMaxRanksPerNode + 1), 2, 1, 8));
  EXPECT_EQ(wide.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wide.message().find("ranks_per_node=257"), std::string::npos) << wide;
  EXPECT_TRUE(Validate(Config(1, kMaxRanksPerNode, 4 * kMaxRanksPerNode, 2, 1, 8)).ok());
}

TEST(EngineTest, InvalidInputsAreRejectedOnTheCallingRank) {
  const EpConfig config = Config(2, 1, 4, 2, 1, 8);
  InProcessWorld world(WorldFor(config));
  std::vector<std::unique_ptr<EpBuffer>> bufs = CreateBuffers(world, config);
  ASSERT_EQ(bufs.size(), 2u);
  std::vector<float> x(2 * 8, 1.0f), w(4, 0.5f);
  auto dispatch = [&](std::vector<int32_t> idx, int64_t tokens) {
    DispatchInput in;
    in.tokens = tokens;
    in.x = x.data();
    in.topk_idx = idx.data();
    in.topk_weights = w.data();
    return bufs[0]->Dispatch(in).status();
  };
  absl::Status s = dispatch({0, 7, 1, 2}, 2);  // expert 7 of 4
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("7"), std::string::npos) << s;
  s = dispatch({0, 0, 1, 2}, 2);  // duplicate expert
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  s = dispatch({0, 2, 1, 3}, 2);  // token 0 reaches 2 nodes, M = 1
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("max_nodes"), std::string::npos) << s;
  s = dispatch({0, 1, 2, 3}, -1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  DispatchInput null_x;
  null_x.tokens = 1;
  EXPECT_EQ(bufs[0]->Dispatch(null_x).status().code(), absl::StatusCode::kInvalidArgument);
  // Nothing was enqueued: the buffers still work together.
  EXPECT_TRUE(bufs[0]->status().ok());
}

TEST(EngineTest, AsyncAndFailure) {
  const EpConfig config = Config(2, 2, 8, 2, 2, 16);
  InProcessWorld world(WorldFor(config));
  std::vector<std::unique_ptr<EpBuffer>> bufs = CreateBuffers(world, config);
  ASSERT_EQ(bufs.size(), 4u);
  std::vector<float> x(8 * 16, 1.0f), w(16, 0.25f);
  std::vector<int32_t> idx = {0, 4, 1, 5, 2, 6, 3, 7, 0, 7, 1, 6, 2, 5, 3, 4};
  DispatchInput in{8, x.data(), DType::kFloat32, idx.data(), w.data()};
  // Ranks 0..2 dispatch; rank 3 does not yet: nobody can finish.
  std::vector<std::shared_ptr<DispatchHandle>> h(4);
  for (int r = 0; r < 3; ++r) h[r] = *bufs[r]->Dispatch(in);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(h[0]->Wait(absl::Now() + absl::Milliseconds(50)).code(),
            absl::StatusCode::kDeadlineExceeded);
  h[3] = *bufs[3]->Dispatch(in);
  for (int r = 0; r < 4; ++r) {
    ASSERT_TRUE(h[r]->Wait(absl::Now() + absl::Seconds(20)).ok()) << r;
  }
  // Now ranks 0..2 dispatch again and rank 3 "dies".
  for (int r = 0; r < 3; ++r) h[r] = *bufs[r]->Dispatch(in);
  absl::SleepFor(absl::Milliseconds(50));
  world.Fail(absl::UnavailableError("rank 3 (node 1) died"));
  for (int r = 0; r < 3; ++r) {
    absl::Status s = h[r]->Wait(absl::Now() + absl::Seconds(10));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_NE(s.message().find("rank 3"), std::string::npos) << s;
    // Sticky: later operations fail at once.
    EXPECT_EQ(bufs[r]->Dispatch(in).status().code(), absl::StatusCode::kUnavailable);
  }
}

TEST(EngineTest, NonFiniteFp8InputFailsOnlyItsRankAndTheExchangeCompletes) {
  EpConfig c = Config(2, 1, 4, 2, 2, 130);
  c.dispatch_dtype = DType::kFp8E4M3;
  InProcessWorld world(WorldFor(c));
  std::vector<std::unique_ptr<EpBuffer>> bufs = CreateBuffers(world, c);
  ASSERT_EQ(bufs.size(), 2u);
  std::vector<int32_t> idx = {0, 2, 1, 3};
  std::vector<float> w(4, 0.5f);
  std::vector<std::vector<float>> x(2, std::vector<float>(2 * 130, 1.0f));
  x[1][130 + 129] = NAN;  // rank 1, token 1, tile 1
  // Dispatch and Combine only enqueue: one thread drives both ranks.
  std::vector<std::shared_ptr<DispatchHandle>> d(2);
  std::vector<absl::StatusOr<std::shared_ptr<CombineHandle>>> comb(2);
  std::vector<absl::Status> dstat(2), cstat(2);
  for (int r = 0; r < 2; ++r) {
    d[r] = *bufs[r]->Dispatch({2, x[r].data(), DType::kFloat32, idx.data(), w.data()});
  }
  for (int r = 0; r < 2; ++r) dstat[r] = d[r]->Wait(absl::Now() + absl::Seconds(20));
  for (int r = 0; r < 2; ++r) {
    comb[r] = bufs[r]->Combine(d[r], {d[r]->output().x, DType::kBFloat16});
  }
  for (int r = 0; r < 2; ++r) {
    cstat[r] = comb[r].ok() ? (*comb[r])->Wait(absl::Now() + absl::Seconds(20)) : comb[r].status();
  }
  EXPECT_TRUE(dstat[0].ok()) << dstat[0];
  EXPECT_EQ(dstat[1].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dstat[1].message().find("token 1"), std::string::npos) << dstat[1];
  EXPECT_NE(dstat[1].message().find("tile 1"), std::string::npos) << dstat[1];
  EXPECT_TRUE(cstat[0].ok()) << cstat[0];
  EXPECT_TRUE(cstat[1].ok()) << cstat[1];
  EXPECT_TRUE(bufs[1]->status().ok()) << "an input problem must not fail the buffer";
}

TEST(EngineTest, QueuedBarrierTimesFromItsStart) {
  const EpConfig config = Config(1, 2, 4, 2, 1, 16);
  InProcessWorld world(WorldFor(config));
  std::vector<std::unique_ptr<EpBuffer>> bufs = CreateBuffers(world, config);
  ASSERT_EQ(bufs.size(), 2u);
  std::vector<int32_t> idx = {0, 2, 1, 3};  // 2 tokens
  std::vector<float> x(2 * 16, 1.0f), w(4, 0.5f);
  const DispatchInput in{2, x.data(), DType::kFloat32, idx.data(), w.data()};
  // Rank 0's barrier queues behind a dispatch that waits for rank 1: the
  // caller's deadline passes first.
  std::shared_ptr<DispatchHandle> d0 = *bufs[0]->Dispatch(in);
  absl::Status b0 = bufs[0]->Barrier(absl::Now() + absl::Seconds(2));
  EXPECT_EQ(b0.code(), absl::StatusCode::kDeadlineExceeded) << b0;
  // Rank 1 catches up, and joins the barrier after rank 0's has started:
  // that one has its 2 s from then, and neither buffer fails.
  std::shared_ptr<DispatchHandle> d1 = *bufs[1]->Dispatch(in);
  EXPECT_TRUE(d0->Wait(absl::Now() + absl::Seconds(10)).ok());
  EXPECT_TRUE(d1->Wait(absl::Now() + absl::Seconds(10)).ok());
  absl::SleepFor(absl::Milliseconds(200));
  absl::Status b1 = bufs[1]->Barrier(absl::Now() + absl::Seconds(10));
  EXPECT_TRUE(b1.ok()) << b1;
  EXPECT_TRUE(bufs[0]->status().ok()) << bufs[0]->status();
  EXPECT_TRUE(bufs[1]->status().ok()) << bufs[1]->status();
}

TEST(EngineTest, StatsArePublished) {
  const EpConfig config = Config(1, 2, 4, 2, 1, 16);
  InProcessWorld world(WorldFor(config));
  std::vector<std::unique_ptr<EpBuffer>> bufs = CreateBuffers(world, config);
  ASSERT_EQ(bufs.size(), 2u);
  std::vector<int32_t> idx = {0, 2, 1, 3, 0, 1};  // 3 tokens
  std::vector<float> x(3 * 16, 1.0f), w(6, 0.5f);
  std::vector<std::shared_ptr<DispatchHandle>> d(2);
  for (int r = 0; r < 2; ++r) {
    d[r] = *bufs[r]->Dispatch({3, x.data(), DType::kFloat32, idx.data(), w.data()});
  }
  for (int r = 0; r < 2; ++r) ASSERT_TRUE(d[r]->Wait(absl::Now() + absl::Seconds(20)).ok()) << r;
  // Rank 0 hosts experts 0, 1: each rank sends it tokens {0 (e0), 1 (e1), 2 (e0, e1)}.
  EpStats s0 = bufs[0]->stats();
  EXPECT_EQ(s0.dispatches, 1u);
  EXPECT_EQ(s0.tokens_per_expert, (std::vector<uint64_t>{4, 4}));
  EXPECT_EQ(world.tokens_per_expert(0), (std::vector<uint64_t>{4, 4}));
  EXPECT_GT(s0.intra_node_bytes, 0u);
  EXPECT_EQ(world.direct_bytes(0), s0.intra_node_bytes);
  EXPECT_EQ(s0.inter_node_bytes, 0u);
}

}  // namespace
}  // namespace ep
}  // namespace tokenrail
