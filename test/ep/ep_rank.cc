// The rank program of the expert-parallel correctness tests, run by
// tokenrail-launch once per rank. It attaches to its node's daemon, runs a
// suite of dispatch/combine scenarios through EpBuffer (each with its own
// buffer, a collective), checks every result against the single-process
// reference (runtime/ep/ep_testing.h: every rank derives all ranks' inputs
// from the seed), and reports machine-readable lines on stdout:
//
//   TR_EP_CASE rank=R case=NAME ok=1 y_hash=H ...    one per scenario
//   TR_EP_RESULT rank=R ok=1 cases=N                 the suite passed
//   TR_EP_FAULT rank=R code=UNAVAILABLE msg=...      (--die_rank) the failure seen
//   TR_EP_ERROR rank=R case=NAME code=.. msg=..      anything else; exit 1
//
// Suites:
//   full   encoded identity (BF16), the same with minimum buffers (must give
//          identical y bits), linear experts FP32 vs the reference, flat
//          routing, FP8 within the E4M3 bound (dequantized and kept),
//          BF16 inputs and outputs, handle reuse, zero-token ranks with all
//          tokens on one expert and padding, `--determinism_runs` repeats
//          with identical bits, and every invalid configuration and input.
//   fault  dispatches in a loop; rank --die_rank exits without detaching
//          after round 2, before issuing round 3; the others must see
//          their round-3 dispatch fail Unavailable naming it.
// Measurements are `tokenrail-bench ep`'s (tools/bench/ep).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/init.h"
#include "common/status.h"
#include "runtime/client/client.h"
#include "runtime/ep/buffer.h"
#include "runtime/ep/buffer_plan.h"
#include "runtime/ep/ep_testing.h"

ABSL_FLAG(std::string, suite, "full", "full | fault");
ABSL_FLAG(int, experts, 0, "routed experts (default: 4 per rank)");
ABSL_FLAG(int, top_k, 2, "experts per token");
ABSL_FLAG(int, max_nodes, 1, "M: nodes a token may reach");
ABSL_FLAG(int, tokens, 64, "tokens per rank (varied per rank by the scenarios)");
ABSL_FLAG(int, hidden, 96, "hidden size");
ABSL_FLAG(int, determinism_runs, 20, "full: identical-bits repetitions");
ABSL_FLAG(int, die_rank, -1, "fault: the rank that exits before issuing dispatch round 3");
ABSL_FLAG(uint64_t, seed, 1, "input seed");

namespace tokenrail {
namespace {

using ep::DType;
using ep::EpBuffer;
using ep::EpConfig;
using ep::EpRouting;
using ep::testing::ExpertKind;
using ep::testing::PayloadKind;
using ep::testing::RankReport;
using ep::testing::RoutingPattern;
using ep::testing::Scenario;

int g_rank = -1;

void Report(const std::string& line) {
  const std::string text = line + "\n";
  [[maybe_unused]] ssize_t n = ::write(STDOUT_FILENO, text.data(), text.size());
}

int ReportError(const std::string& what, const absl::Status& s) {
  Report(absl::StrCat("TR_EP_ERROR rank=", g_rank, " case=", what,
                      " code=", absl::StatusCodeToString(s.code()), " msg=", s.message()));
  return 1;
}

EpConfig BaseConfig(const runtime::RankTopology& t) {
  EpConfig c;
  c.topology.nodes = t.nodes;
  c.topology.ranks_per_node = t.ranks_per_node;
  const int experts = absl::GetFlag(FLAGS_experts);
  c.topology.experts = experts > 0 ? experts : 4 * t.world_size;
  c.top_k = absl::GetFlag(FLAGS_top_k);
  c.max_nodes = absl::GetFlag(FLAGS_max_nodes);
  c.hidden = absl::GetFlag(FLAGS_hidden);
  c.dispatch_dtype = DType::kBFloat16;
  c.combine_dtype = DType::kBFloat16;
  c.buffer_bytes = size_t{1} << 20;
  return c;
}

Scenario BaseScenario(const runtime::RankTopology& t) {
  Scenario s;
  s.config = BaseConfig(t);
  s.tokens = absl::GetFlag(FLAGS_tokens);
  s.seed = absl::GetFlag(FLAGS_seed);
  s.timeout = absl::Seconds(60);
  return s;
}

absl::StatusOr<RankReport> RunCase(runtime::RankClient& rc, const std::string& name,
                                   const Scenario& s) {
  TR_ASSIGN_OR_RETURN(std::unique_ptr<EpBuffer> buf, EpBuffer::Create(&rc, s.config));
  TR_ASSIGN_OR_RETURN(RankReport r, ep::testing::RunRank(*buf, s));
  // Keep the ranks in step between cases (each creates its own buffer).
  TR_RETURN_IF_ERROR(buf->Barrier(absl::Now() + absl::Seconds(60)));
  Report(absl::StrCat("TR_EP_CASE rank=", g_rank, " case=", name, " ok=1 ", r.Summary()));
  return r;
}

absl::Status ExpectInvalid(const absl::Status& s, const std::string& needle,
                           const std::string& what) {
  if (s.code() == absl::StatusCode::kInvalidArgument &&
      s.message().find(needle) != absl::string_view::npos) {
    return absl::OkStatus();
  }
  return absl::InternalError(
      absl::StrCat(what, ": expected InvalidArgument naming '", needle, "', got ", s.ToString()));
}

absl::Status InvalidInputs(runtime::RankClient& rc, const runtime::RankTopology& t) {
  const EpConfig good = BaseConfig(t);
  struct Bad {
    std::string name, needle;
    EpConfig c;
  };
  std::vector<Bad> bad;
  EpConfig c = good;
  c.top_k = c.topology.experts + 1;
  bad.push_back({"top-k > experts", "top_k", c});
  c = good;
  c.max_nodes = t.nodes + 1;
  bad.push_back({"M > N", "max_nodes", c});
  if (t.world_size > 1) {  // every E is divisible by 1
    c = good;
    c.topology.experts = t.world_size * 4 + 1;
    bad.push_back({"E not divisible", "divisible", c});
  }
  c = good;
  c.top_k = c.topology.experts_per_node() + 1;
  c.max_nodes = 1;
  if (c.top_k <= c.topology.experts && c.top_k <= ep::kMaxTopK) {
    bad.push_back({"k unreachable within M", "max_nodes", c});
  }
  c = good;
  c.topology.nodes = t.nodes + 1;
  c.topology.experts = (t.nodes + 1) * t.ranks_per_node * 4;
  bad.push_back({"not the job's topology", "the job has", c});
  for (const Bad& b : bad) {
    absl::StatusOr<std::unique_ptr<EpBuffer>> buf = EpBuffer::Create(&rc, b.c);
    TR_RETURN_IF_ERROR(ExpectInvalid(buf.status(), b.needle, b.name));
  }
  // Inputs: rejected on this rank before anything is enqueued, so the
  // buffer stays usable (a valid dispatch follows on every rank).
  TR_ASSIGN_OR_RETURN(std::unique_ptr<EpBuffer> buf, EpBuffer::Create(&rc, good));
  const int k = good.top_k;
  std::vector<float> x(2 * good.hidden, 1.0f), w(2 * k, 0.5f);
  std::vector<int32_t> idx(2 * k, -1);
  auto dispatch = [&](int64_t tokens) {
    ep::DispatchInput in{tokens, x.data(), DType::kFloat32, idx.data(), w.data()};
    return buf->Dispatch(in).status();
  };
  idx[0] = good.topology.experts;  // out of range
  TR_RETURN_IF_ERROR(
      ExpectInvalid(dispatch(2), absl::StrCat(good.topology.experts), "expert out of range"));
  if (k >= 2) {
    idx[0] = idx[1] = 0;  // duplicate
    TR_RETURN_IF_ERROR(ExpectInvalid(dispatch(2), "", "duplicate expert"));
  }
  if (t.nodes >= 2 && k >= 2 && good.max_nodes == 1) {
    idx[0] = 0;
    idx[1] = good.topology.experts - 1;  // first and last node
    TR_RETURN_IF_ERROR(ExpectInvalid(dispatch(2), "max_nodes", "token beyond M nodes"));
  }
  TR_RETURN_IF_ERROR(ExpectInvalid(dispatch(-3), "tokens=-3", "negative tokens"));
  std::fill(idx.begin(), idx.end(), -1);
  TR_ASSIGN_OR_RETURN(auto d, buf->Dispatch({2, x.data(), DType::kFloat32, idx.data(), w.data()}));
  TR_RETURN_IF_ERROR(d->Wait(absl::Now() + absl::Seconds(60)));
  if (d->output().rows != 0) return absl::InternalError("tokens without experts produced rows");
  return buf->Barrier(absl::Now() + absl::Seconds(60));
}

int Full(runtime::RankClient& rc) {
  const runtime::RankTopology& t = rc.topology();
  int cases = 0;
  std::string failed;
  absl::Status failure;
  // Runs one case; on failure remembers it (the suite stops at the first).
  auto run = [&](const std::string& name, const Scenario& s, RankReport* out) {
    absl::StatusOr<RankReport> r = RunCase(rc, name, s);
    if (!r.ok()) {
      failed = name;
      failure = r.status();
      return false;
    }
    ++cases;
    if (out != nullptr) *out = *std::move(r);
    return true;
  };

  // Encoded identity, hierarchical, default and minimum buffers.
  Scenario s = BaseScenario(t);
  RankReport base, small;
  if (!run("identity_bf16", s, &base)) return ReportError(failed, failure);
  absl::StatusOr<size_t> min = ep::MinBufferBytes(s.config);
  if (!min.ok()) return ReportError("min_buffer", min.status());
  Scenario tiny = s;
  tiny.config.buffer_bytes = *min;
  if (!run("tiny_buffers", tiny, &small)) return ReportError(failed, failure);
  if (small.y_hash != base.y_hash || small.dispatch_hash != base.dispatch_hash) {
    return ReportError("tiny_buffers",
                       absl::DataLossError(absl::StrCat("minimum buffers (", *min,
                                                        " B) changed the results: y hash ",
                                                        small.y_hash, " vs ", base.y_hash)));
  }
  // Linear experts against the reference: FP32 everywhere; flat routing;
  // BF16 in and out; FP8 dispatch (dequantized and kept, hidden not a
  // multiple of 128); handle reuse; zero-token ranks with every token on one
  // expert and padded blocks; emptied slots.
  Scenario lin = BaseScenario(t);
  lin.experts = ExpertKind::kLinear;
  lin.payload = PayloadKind::kRandom;
  lin.config.dispatch_dtype = DType::kFloat32;
  lin.config.combine_dtype = DType::kFloat32;
  Scenario flat = s;
  flat.config.routing = EpRouting::kFlat;
  Scenario flat_lin = lin;
  flat_lin.config.routing = EpRouting::kFlat;
  Scenario bf = lin;
  bf.config.dispatch_dtype = DType::kBFloat16;
  bf.config.combine_dtype = DType::kBFloat16;
  bf.x_dtype = DType::kBFloat16;
  bf.expert_out_dtype = DType::kBFloat16;
  Scenario fp8 = lin;
  fp8.config.hidden = 200;
  fp8.config.dispatch_dtype = DType::kFp8E4M3;
  fp8.config.combine_dtype = DType::kBFloat16;
  Scenario fp8_kept = fp8;
  fp8_kept.config.fp8_keep_quantized = true;
  Scenario reuse = s;
  reuse.rounds = 3;
  reuse.reuse_layout = true;
  Scenario one = s;
  one.zero_token_ranks = true;
  one.routing = RoutingPattern::kOneExpert;
  one.config.align = 8;
  Scenario sparse = one;
  sparse.routing = RoutingPattern::kSparse;
  const std::pair<const char*, const Scenario*> more[] = {{"linear_fp32", &lin},
                                                          {"flat_identity_bf16", &flat},
                                                          {"flat_linear_fp32", &flat_lin},
                                                          {"linear_bf16", &bf},
                                                          {"fp8", &fp8},
                                                          {"fp8_kept", &fp8_kept},
                                                          {"reuse", &reuse},
                                                          {"one_expert_zero_tokens", &one},
                                                          {"sparse_slots", &sparse}};
  for (const auto& [name, scenario] : more) {
    if (!run(name, *scenario, nullptr)) return ReportError(failed, failure);
  }
  // Determinism: identical bits on every repetition (one buffer).
  {
    absl::StatusOr<std::unique_ptr<EpBuffer>> buf = EpBuffer::Create(&rc, lin.config);
    if (!buf.ok()) return ReportError("determinism", buf.status());
    uint64_t first = 0;
    const int runs = absl::GetFlag(FLAGS_determinism_runs);
    for (int i = 0; i < runs; ++i) {
      absl::StatusOr<RankReport> r = ep::testing::RunRank(**buf, lin);
      if (!r.ok()) return ReportError("determinism", r.status());
      if (i == 0) first = r->y_hash;
      if (r->y_hash != first) {
        return ReportError("determinism",
                           absl::DataLossError(absl::StrCat("run ", i, " gave y hash ", r->y_hash,
                                                            ", run 0 gave ", first)));
      }
    }
    Report(absl::StrCat("TR_EP_CASE rank=", g_rank, " case=determinism ok=1 runs=", runs,
                        " y_hash=", first));
    ++cases;
    if (absl::Status b = (*buf)->Barrier(absl::Now() + absl::Seconds(60)); !b.ok()) {
      return ReportError("determinism", b);
    }
  }
  if (absl::Status v = InvalidInputs(rc, t); !v.ok()) return ReportError("invalid_inputs", v);
  Report(absl::StrCat("TR_EP_CASE rank=", g_rank, " case=invalid_inputs ok=1"));
  ++cases;
  Report(absl::StrCat("TR_EP_RESULT rank=", g_rank, " ok=1 cases=", cases));
  return 0;
}

int Fault(runtime::RankClient& rc) {
  const runtime::RankTopology& t = rc.topology();
  Scenario s = BaseScenario(t);
  absl::StatusOr<std::unique_ptr<EpBuffer>> buf = EpBuffer::Create(&rc, s.config);
  if (!buf.ok()) return ReportError("fault", buf.status());
  const int die = absl::GetFlag(FLAGS_die_rank);
  absl::StatusOr<std::vector<ep::testing::RankData>> in = ep::testing::MakeInputs(s, 0);
  if (!in.ok()) return ReportError("fault", in.status());
  const ep::testing::RankData& mine = (*in)[t.global_rank];
  for (int round = 0;; ++round) {
    if (round == 3 && t.global_rank == die) {
      Report(
          absl::StrCat("TR_EP_DYING rank=", g_rank, " unix_ms=", absl::ToUnixMillis(absl::Now())));
      std::_Exit(7);  // no detach: the daemon must count this rank as dead
    }
    absl::StatusOr<std::shared_ptr<ep::DispatchHandle>> d = (*buf)->Dispatch(
        {mine.tokens, mine.x.data(), DType::kFloat32, mine.topk_idx.data(), mine.weights.data()});
    absl::Status st = d.ok() ? (*d)->Wait(absl::Now() + absl::Seconds(30)) : d.status();
    if (!st.ok()) {
      Report(absl::StrCat("TR_EP_FAULT rank=", g_rank, " round=", round,
                          " code=", absl::StatusCodeToString(st.code()),
                          " unix_ms=", absl::ToUnixMillis(absl::Now()), " msg=", st.message()));
      return st.code() == absl::StatusCode::kUnavailable ? 3 : 1;
    }
  }
}

int Main(int argc, char** argv) {
  InitMain(argc, argv, "ep_rank --suite=full|fault (run by tokenrail-launch)");
  absl::StatusOr<runtime::AttachOptions> options = runtime::AttachOptions::FromEnvironment();
  if (!options.ok()) return ReportError("attach", options.status());
  absl::StatusOr<std::unique_ptr<runtime::RankClient>> rc = runtime::RankClient::Attach(*options);
  if (!rc.ok()) return ReportError("attach", rc.status());
  g_rank = (*rc)->topology().global_rank;
  const std::string suite = absl::GetFlag(FLAGS_suite);
  if (suite == "fault") return Fault(**rc);
  if (suite != "full") return ReportError("flags", absl::InvalidArgumentError("--suite=" + suite));
  const int rc_code = Full(**rc);
  if (absl::Status s = (*rc)->Detach(); !s.ok() && rc_code == 0) return ReportError("detach", s);
  return rc_code;
}

}  // namespace
}  // namespace tokenrail

int main(int argc, char** argv) { return tokenrail::Main(argc, argv); }
