#include "tools/bench/ep/workload.h"

#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "runtime/ep/gate.h"
#include "runtime/ep/numeric.h"
#include "runtime/ep/reference.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

// Key domains, so the streams of logits and expert weights never overlap.
constexpr uint64_t kLogitDomain = 0x4c4f474954ull;   // "LOGIT"
constexpr uint64_t kExpertDomain = 0x4558505254ull;  // "EXPRT"

uint64_t SplitMix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t MixKey(uint64_t a, uint64_t b) { return SplitMix64(SplitMix64(a) ^ b); }

// Uniform [0, 1) double from a 64-bit counter key (SplitMix64 finalizer).
double UnitUniform(uint64_t key) {
  return static_cast<double>(SplitMix64(key) >> 11) * (1.0 / 9007199254740992.0);
}

// Standard normal from two uniforms (Box-Muller); u1 in (0, 1].
double Normal(uint64_t key) {
  const double u1 = 1.0 - UnitUniform(MixKey(key, 1));
  const double u2 = UnitUniform(MixKey(key, 2));
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// The skew term added to expert e's logit.
double SkewLogit(const Skew& skew, int expert) {
  switch (skew.kind) {
    case Skew::Kind::kNone:
      return 0;
    case Skew::Kind::kZipf:
      return -skew.exponent * std::log1p(static_cast<double>(expert));
    case Skew::Kind::kHot:
      return expert == skew.hot_expert ? skew.boost : 0;
  }
  return 0;
}

}  // namespace

absl::StatusOr<Skew> ParseSkew(absl::string_view text) {
  Skew s;
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "skew '", text, "': ", why, " (expected none, zipf:EXPONENT or hot:EXPERT:BOOST)"));
  };
  if (parts[0] == "none" && parts.size() == 1) return s;
  if (parts[0] == "zipf" && parts.size() == 2) {
    s.kind = Skew::Kind::kZipf;
    if (!absl::SimpleAtod(parts[1], &s.exponent) || !std::isfinite(s.exponent) || s.exponent < 0) {
      return bad("the exponent must be a finite number >= 0");
    }
    return s;
  }
  if (parts[0] == "hot" && parts.size() == 3) {
    s.kind = Skew::Kind::kHot;
    if (!absl::SimpleAtoi(parts[1], &s.hot_expert) || s.hot_expert < 0) {
      return bad("the expert must be an integer >= 0");
    }
    if (!absl::SimpleAtod(parts[2], &s.boost) || !std::isfinite(s.boost)) {
      return bad("the boost must be a finite number");
    }
    return s;
  }
  return bad("unknown form");
}

std::string FormatSkew(const Skew& skew) {
  switch (skew.kind) {
    case Skew::Kind::kNone:
      return "none";
    case Skew::Kind::kZipf:
      return absl::StrCat("zipf:", skew.exponent);
    case Skew::Kind::kHot:
      return absl::StrCat("hot:", skew.hot_expert, ":", skew.boost);
  }
  return "none";
}

absl::StatusOr<ExpertKind> ParseExpertKind(absl::string_view text) {
  if (text == "identity") return ExpertKind::kIdentity;
  if (text == "linear") return ExpertKind::kLinear;
  return absl::InvalidArgumentError(
      absl::StrCat("experts '", text, "': choose identity or linear"));
}

const char* ExpertKindName(ExpertKind kind) {
  return kind == ExpertKind::kIdentity ? "identity" : "linear";
}

absl::Status Validate(const WorkloadSpec& spec) {
  TR_RETURN_IF_ERROR(ep::Validate(spec.topology, spec.top_k, spec.max_nodes));
  if (spec.tokens < 0 || spec.tokens > ep::kPayloadMaxTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokens=", spec.tokens, " must be in [0, ", ep::kPayloadMaxTokens, "]"));
  }
  if (spec.topology.world_size() > ep::kPayloadMaxRanks) {
    return absl::InvalidArgumentError(
        absl::StrCat("world size ", spec.topology.world_size(), " exceeds ", ep::kPayloadMaxRanks));
  }
  if (spec.hidden < 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("hidden=", spec.hidden, " must be >= 3 (a row names its origin)"));
  }
  if (spec.skew.kind == Skew::Kind::kHot && spec.skew.hot_expert >= spec.topology.experts) {
    return absl::InvalidArgumentError(absl::StrCat("skew hot expert ", spec.skew.hot_expert,
                                                   " >= experts ", spec.topology.experts));
  }
  return absl::OkStatus();
}

absl::StatusOr<RankWorkload> MakeRankWorkload(const WorkloadSpec& spec, int rank, int forms) {
  TR_RETURN_IF_ERROR(Validate(spec));
  if (rank < 0 || rank >= spec.topology.world_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " outside world size ", spec.topology.world_size()));
  }
  const int E = spec.topology.experts;
  const int64_t T = spec.tokens, H = spec.hidden;
  RankWorkload w;
  w.rank = rank;
  w.tokens = T;

  std::vector<double> skew(E);
  for (int e = 0; e < E; ++e) skew[e] = SkewLogit(spec.skew, e);
  std::vector<float> logits(static_cast<size_t>(T) * E);
  const uint64_t rank_key = MixKey(MixKey(spec.seed, kLogitDomain), static_cast<uint64_t>(rank));
  for (int64_t t = 0; t < T; ++t) {
    const uint64_t token_key = MixKey(rank_key, static_cast<uint64_t>(t));
    for (int e = 0; e < E; ++e) {
      logits[t * E + e] =
          static_cast<float>(Normal(MixKey(token_key, static_cast<uint64_t>(e))) + skew[e]);
    }
  }
  ep::GateOptions gate;
  gate.top_k = spec.top_k;
  gate.max_nodes = spec.max_nodes;
  gate.routing = ep::Routing::kNodeLimited;
  gate.score_function = ep::ScoreFunction::kSigmoid;
  w.topk_idx.resize(static_cast<size_t>(T) * spec.top_k);
  w.topk_weights.resize(w.topk_idx.size());
  TR_RETURN_IF_ERROR(Annotate(ep::Gate(spec.topology, gate, T, logits, {},
                                       absl::MakeSpan(w.topk_idx), absl::MakeSpan(w.topk_weights)),
                              absl::StrCat("gate of rank ", rank)));

  if (forms & (kPayloadBf16 | kPayloadF32)) {
    std::vector<float> x(static_cast<size_t>(T * H));
    TR_RETURN_IF_ERROR(ep::FillEncodedPayload(rank, T, H, absl::MakeSpan(x)));
    if (forms & kPayloadBf16) {
      w.x_bf16.resize(x.size());
      // Exact: encoded values are BF16 numbers.
      ep::FloatToBf16(x.data(), static_cast<int64_t>(x.size()), w.x_bf16.data());
    }
    if (forms & kPayloadF32) w.x_f32 = std::move(x);
  }
  return w;
}

Experts::Experts(const WorkloadSpec& spec) : kind_(spec.expert), hidden_(spec.hidden) {
  if (kind_ != ExpertKind::kLinear) return;
  const int experts = spec.topology.experts;
  a_.resize(static_cast<size_t>(experts) * hidden_);
  b_.resize(a_.size());
  const uint64_t base = MixKey(spec.seed, kExpertDomain);
  for (int e = 0; e < experts; ++e) {
    const uint64_t ek = MixKey(base, static_cast<uint64_t>(e));
    for (int64_t c = 0; c < hidden_; ++c) {
      const uint64_t ck = MixKey(ek, static_cast<uint64_t>(c));
      a_[e * hidden_ + c] = static_cast<float>(2.0 * UnitUniform(MixKey(ck, 1)) - 1.0);
      b_[e * hidden_ + c] = static_cast<float>(2.0 * UnitUniform(MixKey(ck, 2)) - 1.0);
    }
  }
}

void Experts::Apply(int expert, const float* in, float* out) const {
  if (kind_ == ExpertKind::kIdentity) {
    for (int64_t c = 0; c < hidden_; ++c) out[c] = in[c];
    return;
  }
  const float* a = a_.data() + static_cast<size_t>(expert) * hidden_;
  const float* b = b_.data() + static_cast<size_t>(expert) * hidden_;
  const int64_t last = hidden_ - 1;
  for (int64_t c = 0; c < last; ++c) out[c] = a[c] * in[c] + b[c] * in[c + 1];
  out[last] = a[last] * in[last] + b[last] * in[0];
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
