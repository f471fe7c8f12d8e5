#include "tools/bench/ep/plan.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/bytes.h"
#include "common/status.h"
#include "runtime/ep/numeric.h"
#include "tools/bench/align.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

constexpr char kPrefix[] = "ep-plan:";
constexpr uint32_t kMagic = 0x50455254;  // "TREP"
constexpr uint16_t kVersion = 2;         // 2: no `deterministic` byte
constexpr uint32_t kMaxCases = 64;
constexpr uint32_t kMaxItems = 256;

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("ep plan: ", what));
}

absl::StatusOr<ep::DType> DTypeFromByte(uint8_t b, absl::string_view field) {
  if (b > static_cast<uint8_t>(ep::DType::kFp8E4M3)) {
    return Bad(absl::StrCat(field, " dtype code ", b));
  }
  return static_cast<ep::DType>(b);
}

size_t Fp8ScaleBytes(int64_t hidden) {
  return static_cast<size_t>((hidden + ep::kFp8TileSize - 1) / ep::kFp8TileSize) * sizeof(float);
}

}  // namespace

size_t StatedDispatchRecordBytes(int top_k, int64_t hidden, ep::DType dtype) {
  size_t header = 8 + 8 * static_cast<size_t>(top_k);
  if (dtype == ep::DType::kFp8E4M3) header += Fp8ScaleBytes(hidden);
  return RoundUp(RoundUp(header, 16) + static_cast<size_t>(hidden) * ep::DTypeSize(dtype), 16);
}

size_t PayloadBytes(int64_t hidden, ep::DType dtype) {
  size_t bytes = static_cast<size_t>(hidden) * ep::DTypeSize(dtype);
  if (dtype == ep::DType::kFp8E4M3) bytes += Fp8ScaleBytes(hidden);
  return bytes;
}

const char* ImplName(Impl impl) { return impl == Impl::kMpi ? "mpi" : "tokenrail"; }
const char* RoutingName(EngineRouting routing) {
  return routing == EngineRouting::kFlat ? "flat" : "hier";
}

absl::Status Validate(const EpPlan& plan) {
  TR_RETURN_IF_ERROR(Annotate(Validate(plan.workload), "ep plan workload"));
  if (plan.cases.empty() || plan.cases.size() > kMaxCases) {
    return Bad(absl::StrCat(plan.cases.size(), " cases (1..", kMaxCases, ")"));
  }
  std::set<std::string> names;
  for (const CaseSpec& c : plan.cases) {
    if (c.name.empty() || !names.insert(c.name).second) {
      return Bad(absl::StrCat("case name '", c.name, "' is empty or repeated"));
    }
    if (c.impl == Impl::kMpi && c.routing != EngineRouting::kHierarchical) {
      return Bad(absl::StrCat("case ", c.name, ": the MPI baseline has no routing choice"));
    }
    const auto f32_or_bf16 = [](ep::DType d) {
      return d == ep::DType::kFloat32 || d == ep::DType::kBFloat16;
    };
    const bool expert_ok = c.dispatch_dtype == ep::DType::kFp8E4M3
                               ? f32_or_bf16(c.expert_dtype)
                               : c.expert_dtype == c.dispatch_dtype;
    if (!f32_or_bf16(c.combine_dtype) || !expert_ok) {
      return Bad(absl::StrCat("case ", c.name, ": dispatch ", ep::DTypeName(c.dispatch_dtype),
                              ", expert ", ep::DTypeName(c.expert_dtype), ", combine ",
                              ep::DTypeName(c.combine_dtype), " is not a supported combination"));
    }
  }
  if (plan.iters == 0 || plan.verify_every == 0 || plan.align < 1 ||
      plan.timeout <= absl::ZeroDuration()) {
    return Bad(absl::StrCat("iters=", plan.iters, " verify_every=", plan.verify_every,
                            " align=", plan.align, " timeout=", absl::FormatDuration(plan.timeout),
                            " must all be positive"));
  }
  if (plan.ucx && (plan.workload.topology.nodes < 2 ||
                   plan.hosts.size() != static_cast<size_t>(plan.workload.topology.nodes) ||
                   plan.ucx_sizes.empty())) {
    return Bad(absl::StrCat("the ucx measurement needs >= 2 nodes, a host per node (",
                            plan.hosts.size(), " given) and sizes"));
  }
  return absl::OkStatus();
}

std::string EncodePlan(const EpPlan& p) {
  ByteWriter w;
  const WorkloadSpec& s = p.workload;
  for (int32_t v :
       {s.topology.nodes, s.topology.ranks_per_node, s.topology.experts, s.top_k, s.max_nodes}) {
    w.Put<int32_t>(v);
  }
  w.Put<int64_t>(s.tokens);
  w.Put<int64_t>(s.hidden);
  w.Put<uint8_t>(static_cast<uint8_t>(s.skew.kind));
  w.Put<double>(s.skew.exponent);
  w.Put<int32_t>(s.skew.hot_expert);
  w.Put<double>(s.skew.boost);
  w.Put<uint8_t>(static_cast<uint8_t>(s.expert));
  w.Put<uint64_t>(s.seed);
  w.Put<uint32_t>(static_cast<uint32_t>(p.cases.size()));
  for (const CaseSpec& c : p.cases) {
    w.PutBytes(c.name);
    for (uint8_t b : {static_cast<uint8_t>(c.impl), static_cast<uint8_t>(c.routing),
                      static_cast<uint8_t>(c.dispatch_dtype), static_cast<uint8_t>(c.combine_dtype),
                      static_cast<uint8_t>(c.expert_dtype)}) {
      w.Put<uint8_t>(b);
    }
  }
  for (uint64_t v : {p.iters, p.warmup, p.verify_every, p.buffer_bytes}) w.Put<uint64_t>(v);
  w.Put<int64_t>(p.align);
  w.PutBytes(p.network);
  w.Put<uint8_t>(p.daemon_stats ? 1 : 0);
  w.Put<uint8_t>(p.ucx ? 1 : 0);
  w.Put<uint32_t>(static_cast<uint32_t>(p.ucx_sizes.size()));
  for (uint64_t v : p.ucx_sizes) w.Put<uint64_t>(v);
  w.Put<uint32_t>(static_cast<uint32_t>(p.ucx_params.size()));
  for (const auto& [k, v] : p.ucx_params) {
    w.PutBytes(k);
    w.PutBytes(v);
  }
  w.Put<uint32_t>(static_cast<uint32_t>(p.hosts.size()));
  for (const std::string& h : p.hosts) w.PutBytes(h);
  w.Put<int64_t>(absl::ToInt64Milliseconds(p.timeout));
  return absl::StrCat(kPrefix, absl::BytesToHexString(SealBlob(kMagic, kVersion, w.data())));
}

bool IsPlanArgument(absl::string_view arg) { return absl::StartsWith(arg, kPrefix); }

absl::StatusOr<EpPlan> DecodePlan(absl::string_view arg) {
  if (!absl::ConsumePrefix(&arg, kPrefix)) return Bad("missing the 'ep-plan:' prefix");
  if (arg.size() % 2 != 0 ||
      !std::all_of(arg.begin(), arg.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return Bad("not hexadecimal");
  }
  const std::string blob = absl::HexStringToBytes(arg);
  TR_ASSIGN_OR_RETURN(absl::string_view payload, UnsealBlob(blob, kMagic, kVersion, "ep plan"));
  ByteReader r(payload, "ep plan");
  EpPlan p;
  WorkloadSpec& s = p.workload;
  for (int* v : {&s.topology.nodes, &s.topology.ranks_per_node, &s.topology.experts, &s.top_k,
                 &s.max_nodes}) {
    TR_ASSIGN_OR_RETURN(*v, r.Get<int32_t>());
  }
  TR_ASSIGN_OR_RETURN(s.tokens, r.Get<int64_t>());
  TR_ASSIGN_OR_RETURN(s.hidden, r.Get<int64_t>());
  TR_ASSIGN_OR_RETURN(const uint8_t skew_kind, r.Get<uint8_t>());
  if (skew_kind > static_cast<uint8_t>(Skew::Kind::kHot)) {
    return Bad(absl::StrCat("skew kind ", skew_kind));
  }
  s.skew.kind = static_cast<Skew::Kind>(skew_kind);
  TR_ASSIGN_OR_RETURN(s.skew.exponent, r.Get<double>());
  TR_ASSIGN_OR_RETURN(s.skew.hot_expert, r.Get<int32_t>());
  TR_ASSIGN_OR_RETURN(s.skew.boost, r.Get<double>());
  TR_ASSIGN_OR_RETURN(const uint8_t expert, r.Get<uint8_t>());
  if (expert > static_cast<uint8_t>(ExpertKind::kLinear)) {
    return Bad(absl::StrCat("expert kind ", expert));
  }
  s.expert = static_cast<ExpertKind>(expert);
  TR_ASSIGN_OR_RETURN(s.seed, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(const uint32_t cases, r.Get<uint32_t>());
  if (cases > kMaxCases) return Bad(absl::StrCat(cases, " cases"));
  for (uint32_t i = 0; i < cases; ++i) {
    CaseSpec c;
    TR_ASSIGN_OR_RETURN(absl::string_view name, r.GetBytes(128));
    c.name = std::string(name);
    TR_ASSIGN_OR_RETURN(const uint8_t impl, r.Get<uint8_t>());
    TR_ASSIGN_OR_RETURN(const uint8_t routing, r.Get<uint8_t>());
    if (impl > 1 || routing > 1) return Bad(absl::StrCat("case ", c.name, ": impl/routing code"));
    c.impl = static_cast<Impl>(impl);
    c.routing = static_cast<EngineRouting>(routing);
    for (ep::DType* d : {&c.dispatch_dtype, &c.combine_dtype, &c.expert_dtype}) {
      TR_ASSIGN_OR_RETURN(const uint8_t b, r.Get<uint8_t>());
      TR_ASSIGN_OR_RETURN(*d, DTypeFromByte(b, c.name));
    }
    p.cases.push_back(std::move(c));
  }
  for (uint64_t* v : {&p.iters, &p.warmup, &p.verify_every, &p.buffer_bytes}) {
    TR_ASSIGN_OR_RETURN(*v, r.Get<uint64_t>());
  }
  TR_ASSIGN_OR_RETURN(p.align, r.Get<int64_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view network, r.GetBytes(64));
  p.network = std::string(network);
  TR_ASSIGN_OR_RETURN(const uint8_t daemon_stats, r.Get<uint8_t>());
  p.daemon_stats = daemon_stats != 0;
  TR_ASSIGN_OR_RETURN(const uint8_t ucx, r.Get<uint8_t>());
  p.ucx = ucx != 0;
  TR_ASSIGN_OR_RETURN(const uint32_t sizes, r.Get<uint32_t>());
  if (sizes > kMaxItems) return Bad(absl::StrCat(sizes, " ucx sizes"));
  for (uint32_t i = 0; i < sizes; ++i) {
    TR_ASSIGN_OR_RETURN(const uint64_t v, r.Get<uint64_t>());
    if (v == 0 || v > (1ull << 30)) return Bad(absl::StrCat("ucx size ", v));
    p.ucx_sizes.push_back(v);
  }
  TR_ASSIGN_OR_RETURN(const uint32_t params, r.Get<uint32_t>());
  if (params > kMaxItems) return Bad(absl::StrCat(params, " ucx params"));
  for (uint32_t i = 0; i < params; ++i) {
    TR_ASSIGN_OR_RETURN(absl::string_view k, r.GetBytes(256));
    TR_ASSIGN_OR_RETURN(absl::string_view v, r.GetBytes(4096));
    p.ucx_params[std::string(k)] = std::string(v);
  }
  TR_ASSIGN_OR_RETURN(const uint32_t hosts, r.Get<uint32_t>());
  if (hosts > kMaxItems) return Bad(absl::StrCat(hosts, " hosts"));
  for (uint32_t i = 0; i < hosts; ++i) {
    TR_ASSIGN_OR_RETURN(absl::string_view h, r.GetBytes(256));
    p.hosts.emplace_back(h);
  }
  TR_ASSIGN_OR_RETURN(const int64_t timeout_ms, r.Get<int64_t>());
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  p.timeout = absl::Milliseconds(timeout_ms);
  TR_RETURN_IF_ERROR(Validate(p));
  return p;
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
