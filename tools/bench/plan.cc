#include "tools/bench/plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/bytes.h"
#include "common/status.h"
#include "tools/bench/align.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace {

constexpr uint32_t kPlanMagic = 0x50425254;  // "TRBP"
constexpr uint16_t kPlanVersion = 1;
constexpr uint64_t kMaxSize = 1ull << 30;
constexpr size_t kMaxTests = 4096;
constexpr size_t kMaxParams = 256;
constexpr size_t kMaxString = 4096;
constexpr uint64_t kSlotAlign = 64;  // cache line: slots never share one

}  // namespace

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kLatency:
      return "lat";
    case Mode::kBandwidth:
      return "bw";
    case Mode::kBidirectional:
      return "bibw";
  }
  return "?";
}

absl::StatusOr<std::vector<uint64_t>> ParseSizeList(absl::string_view spec) {
  std::vector<uint64_t> sizes;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::vector<absl::string_view> range = absl::StrSplit(item, ':');
    if (range.size() > 2) {
      return absl::InvalidArgumentError(absl::StrCat("size range '", item, "': use FROM:TO"));
    }
    TR_ASSIGN_OR_RETURN(uint64_t from, ParseSize(range[0]));
    uint64_t to = from;
    if (range.size() == 2) {
      TR_ASSIGN_OR_RETURN(to, ParseSize(range[1]));
    }
    if (from == 0 || to > kMaxSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("size '", item, "' outside 1 B .. ", FormatSize(kMaxSize)));
    }
    if (from > to) {
      return absl::InvalidArgumentError(absl::StrCat("size range '", item, "' is inverted"));
    }
    // A range doubles from FROM and always includes TO.
    for (uint64_t s = from; s < to; s *= 2) sizes.push_back(s);
    sizes.push_back(to);
  }
  if (sizes.empty()) return absl::InvalidArgumentError("empty size list");
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

absl::StatusOr<std::vector<Mode>> ParseModes(absl::string_view spec) {
  bool want[3] = {false, false, false};
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    bool found = false;
    for (Mode m : {Mode::kLatency, Mode::kBandwidth, Mode::kBidirectional}) {
      if (item == ModeName(m)) {
        want[static_cast<int>(m)] = true;
        found = true;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown test '", item, "' (choose from lat, bw, bibw)"));
    }
  }
  std::vector<Mode> modes;
  for (Mode m : {Mode::kLatency, Mode::kBandwidth, Mode::kBidirectional}) {
    if (want[static_cast<int>(m)]) modes.push_back(m);
  }
  if (modes.empty()) return absl::InvalidArgumentError("no tests selected");
  return modes;
}

absl::StatusOr<std::map<std::string, std::string>> ParseParams(absl::string_view spec) {
  std::map<std::string, std::string> params;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::vector<absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("transport param '", item, "': expected key=value"));
    }
    if (!params.emplace(std::string(kv[0]), std::string(kv[1])).second) {
      return absl::InvalidArgumentError(absl::StrCat("transport param '", kv[0], "' given twice"));
    }
  }
  return params;
}

std::string FormatParams(const std::map<std::string, std::string>& params) {
  return absl::StrJoin(params, ",", absl::PairFormatter("="));
}

absl::StatusOr<Plan> MakePlan(const TransportBenchOptions& o, const std::string& backend,
                              const std::string& leader_name) {
  if (o.sizes.empty()) return absl::InvalidArgumentError("no message sizes");
  if (o.modes.empty()) return absl::InvalidArgumentError("no tests selected");
  if (o.iters == 0) return absl::InvalidArgumentError("--iters must be at least 1");
  if (o.min_iters == 0) return absl::InvalidArgumentError("--min_iters must be at least 1");
  if (o.window == 0) return absl::InvalidArgumentError("--window must be at least 1");
  if (o.max_bytes == 0) return absl::InvalidArgumentError("--max_bytes must be positive");
  Plan plan;
  plan.backend = backend;
  plan.params = o.params;
  plan.leader_name = leader_name;
  plan.timeout = o.timeout;
  plan.corrupt_iteration = o.corrupt_iteration;
  for (uint64_t size : o.sizes) {
    if (size == 0 || size > kMaxSize) {
      return absl::InvalidArgumentError(absl::StrCat("message size ", size, " outside 1 B .. 1G"));
    }
    const uint64_t stride = RoundUp(size, kSlotAlign);
    // Large messages run fewer iterations so a sweep to 64 MiB stays quick;
    // every test still gets min_iters samples.
    const uint64_t iters = std::max(o.min_iters, std::min(o.iters, o.max_bytes / size));
    const uint64_t warmup = std::min(o.warmup, std::max<uint64_t>(1, iters / 10));
    // Rotating slots: as many as the window needs, within the slot budget, at
    // least two (ping-pong verification needs the previous slot untouched).
    const uint64_t by_budget = o.slot_bytes / stride;
    const uint32_t slots =
        static_cast<uint32_t>(std::max<uint64_t>(2, std::min<uint64_t>(o.window, by_budget)));
    for (Mode mode : o.modes) {
      TestSpec t;
      t.mode = mode;
      t.size = size;
      t.iters = iters;
      t.warmup = warmup;
      t.stride = stride;
      t.slots = mode == Mode::kLatency ? 2 : slots;
      // A source slot is restamped only after its previous put completed, so
      // more puts than slots can never be outstanding.
      t.window = mode == Mode::kLatency ? 1 : std::min<uint32_t>(o.window, t.slots);
      plan.region_bytes = std::max(plan.region_bytes, t.stride * t.slots);
      plan.tests.push_back(t);
    }
  }
  if (plan.tests.size() > kMaxTests) {
    return absl::InvalidArgumentError(
        absl::StrCat(plan.tests.size(), " tests exceed the limit of ", kMaxTests));
  }
  return plan;
}

std::string PackPlan(const Plan& plan) {
  ByteWriter w;
  w.PutBytes(plan.backend);
  w.PutBytes(plan.leader_name);
  w.Put<uint32_t>(static_cast<uint32_t>(plan.params.size()));
  for (const auto& [k, v] : plan.params) {
    w.PutBytes(k);
    w.PutBytes(v);
  }
  w.Put<uint64_t>(plan.region_bytes);
  w.Put<int64_t>(plan.corrupt_iteration);
  w.Put<int64_t>(absl::ToInt64Milliseconds(plan.timeout));
  w.Put<uint32_t>(static_cast<uint32_t>(plan.tests.size()));
  for (const TestSpec& t : plan.tests) {
    w.Put<uint8_t>(static_cast<uint8_t>(t.mode));
    w.Put<uint64_t>(t.size);
    w.Put<uint64_t>(t.warmup);
    w.Put<uint64_t>(t.iters);
    w.Put<uint32_t>(t.window);
    w.Put<uint32_t>(t.slots);
    w.Put<uint64_t>(t.stride);
  }
  return SealBlob(kPlanMagic, kPlanVersion, w.data());
}

absl::StatusOr<Plan> UnpackPlan(absl::string_view blob) {
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kPlanMagic, kPlanVersion, "benchmark plan"));
  ByteReader r(payload, "benchmark plan");
  Plan plan;
  TR_ASSIGN_OR_RETURN(absl::string_view backend, r.GetBytes(kMaxString));
  TR_ASSIGN_OR_RETURN(absl::string_view leader, r.GetBytes(kMaxString));
  plan.backend = std::string(backend);
  plan.leader_name = std::string(leader);
  TR_ASSIGN_OR_RETURN(uint32_t nparams, r.Get<uint32_t>());
  if (nparams > kMaxParams) {
    return absl::InvalidArgumentError(absl::StrCat("benchmark plan: ", nparams, " params"));
  }
  for (uint32_t i = 0; i < nparams; ++i) {
    TR_ASSIGN_OR_RETURN(absl::string_view k, r.GetBytes(kMaxString));
    TR_ASSIGN_OR_RETURN(absl::string_view v, r.GetBytes(kMaxString));
    plan.params[std::string(k)] = std::string(v);
  }
  TR_ASSIGN_OR_RETURN(plan.region_bytes, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(plan.corrupt_iteration, r.Get<int64_t>());
  TR_ASSIGN_OR_RETURN(int64_t timeout_ms, r.Get<int64_t>());
  if (timeout_ms <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("benchmark plan: timeout ", timeout_ms, " ms"));
  }
  plan.timeout = absl::Milliseconds(timeout_ms);
  TR_ASSIGN_OR_RETURN(uint32_t ntests, r.Get<uint32_t>());
  if (ntests == 0 || ntests > kMaxTests) {
    return absl::InvalidArgumentError(absl::StrCat("benchmark plan: ", ntests, " tests"));
  }
  if (plan.region_bytes == 0 || plan.region_bytes > (16ull << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("benchmark plan: region of ", plan.region_bytes, " bytes"));
  }
  for (uint32_t i = 0; i < ntests; ++i) {
    TestSpec t;
    TR_ASSIGN_OR_RETURN(uint8_t mode, r.Get<uint8_t>());
    if (mode > static_cast<uint8_t>(Mode::kBidirectional)) {
      return absl::InvalidArgumentError(
          absl::StrCat("benchmark plan: test mode ", static_cast<int>(mode)));
    }
    t.mode = static_cast<Mode>(mode);
    TR_ASSIGN_OR_RETURN(t.size, r.Get<uint64_t>());
    TR_ASSIGN_OR_RETURN(t.warmup, r.Get<uint64_t>());
    TR_ASSIGN_OR_RETURN(t.iters, r.Get<uint64_t>());
    TR_ASSIGN_OR_RETURN(t.window, r.Get<uint32_t>());
    TR_ASSIGN_OR_RETURN(t.slots, r.Get<uint32_t>());
    TR_ASSIGN_OR_RETURN(t.stride, r.Get<uint64_t>());
    // Everything the follower will index with must be consistent, so a
    // corrupt plan can never make it touch memory outside its regions.
    if (t.size == 0 || t.size > kMaxSize || t.stride < t.size || t.slots < 2 || t.window == 0 ||
        t.window > t.slots || t.iters == 0 || t.stride > plan.region_bytes / t.slots) {
      return absl::InvalidArgumentError(
          absl::StrCat("benchmark plan: inconsistent test ", i, " (size ", t.size, ", stride ",
                       t.stride, ", slots ", t.slots, ", window ", t.window, ", iters ", t.iters,
                       ", region ", plan.region_bytes, ")"));
    }
    plan.tests.push_back(t);
  }
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  return plan;
}

}  // namespace bench
}  // namespace tokenrail
