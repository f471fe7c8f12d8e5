#include "tools/bench/ep/ep_bench.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <set>
#include <variant>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "runtime/ep/buffer_plan.h"
#include "runtime/ep/config.h"
#include "tools/bench/align.h"
#include "tools/bench/ep/aggregate.h"
#include "tools/bench/ep/tokenrail_exchange.h"
#include "tools/bench/plan.h"
#include "tools/bench/report.h"
#include "tools/launch/launcher.h"
#include "tools/launch/netns.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

// The 1-minute load average: the rows carry it, because timings on a host
// shared with other work mean little without it.
double Load1() {
  double l[1] = {0};
  return ::getloadavg(l, 1) == 1 ? l[0] : -1;
}

std::string CaseName(Impl impl, EngineRouting routing, ep::DType dtype) {
  return absl::StrCat(ImplName(impl), impl == Impl::kMpi ? "" : "/",
                      impl == Impl::kMpi ? "" : RoutingName(routing), "/", ep::DTypeName(dtype));
}

CaseSpec MakeCase(Impl impl, EngineRouting routing, ep::DType dtype, ep::DType combine) {
  CaseSpec c;
  c.name = CaseName(impl, routing, dtype);
  c.impl = impl;
  c.routing = routing;
  c.dispatch_dtype = dtype;
  c.combine_dtype = combine;
  // What the engine hands the experts (ep::ExpertDType without keeping FP8).
  c.expert_dtype = dtype == ep::DType::kFloat32 ? ep::DType::kFloat32 : ep::DType::kBFloat16;
  return c;
}

// Results of the launched ranks go to the collector; everything else the
// cluster says goes to stderr, prefixed, so stdout holds only results. (The
// CLI moves a rank's stdout to stderr, so tags are accepted on both.)
class Collector : public launch::OutputSink {
 public:
  Collector() : forward_(STDERR_FILENO, STDERR_FILENO) {}
  void Line(absl::string_view label, launch::Stream stream, absl::string_view line) override {
    std::vector<Record>* into = &rows_;
    absl::StatusOr<std::optional<Record>> r = Record::ParseTagged(kRowTag, line);
    if (r.ok() && !r->has_value() && label == "n0/r0") {
      into = &ucx_;
      r = Record::ParseTagged(kUcxTag, line);
    }
    if (!r.ok()) {
      if (error_.ok()) error_ = Annotate(r.status(), absl::StrCat("result line of ", label));
    } else if (r->has_value()) {
      into->push_back(std::move(**r));
    } else {
      forward_.Line(label, stream, line);
    }
  }
  std::vector<Record>& rows() { return rows_; }
  std::vector<Record>& ucx() { return ucx_; }
  const absl::Status& error() const { return error_; }

 private:
  launch::PrefixingSink forward_;
  std::vector<Record> rows_, ucx_;
  absl::Status error_;
};

// The arena must hold every case's region (regions are never freed while
// the rank stays attached) for each local rank, plus the daemon's rings.
absl::StatusOr<uint64_t> ArenaBytes(const EpPlan& plan) {
  uint64_t per_rank = 64 << 10;  // the UCX probe's address region and slack
  for (const CaseSpec& c : plan.cases) {
    TR_ASSIGN_OR_RETURN(const ep::BufferPlan bp, ep::MakeBufferPlan(MakeEpConfig(plan, c)));
    per_rank += RoundUp(bp.total_bytes, 1 << 20);
  }
  return std::max<uint64_t>(
      256ull << 20,
      RoundUp(per_rank * plan.workload.topology.ranks_per_node + (64ull << 20), 1 << 20));
}

absl::Status RunCluster(const EpBenchOptions& o, const EpPlan& plan, bool netns,
                        const std::vector<std::string>& self_argv, Collector* collector) {
  launch::LaunchOptions lo;
  lo.placement.nodes = plan.workload.topology.nodes;
  lo.placement.ranks_per_node = plan.workload.topology.ranks_per_node;
  lo.netns = netns;
  lo.job_name = "ep-bench";
  // Every wait inside a rank is bounded by plan.timeout; this bounds the
  // whole run too (setup, all cases, teardown).
  lo.timeout =
      plan.timeout * static_cast<double>(plan.cases.size() * (plan.warmup + plan.iters) + 4);
  lo.experts = plan.workload.topology.experts;
  lo.top_k = plan.workload.top_k;
  lo.max_nodes_per_token = plan.workload.max_nodes;
  lo.daemon_path = launch::FindTokenraild();
  lo.transport_params = FormatParams(plan.ucx_params);
  if (o.arena_bytes > 0) {
    lo.arena_bytes = o.arena_bytes;
  } else {
    TR_ASSIGN_OR_RETURN(lo.arena_bytes, ArenaBytes(plan));
  }
  lo.command = self_argv;
  lo.command.push_back(EncodePlan(plan));
  lo.failure_grace = absl::Seconds(5);
  TR_RETURN_IF_ERROR(launch::ValidateOptions(lo));
  launch::Launcher launcher(std::move(lo), collector);
  const int code = launcher.Run();
  TR_RETURN_IF_ERROR(collector->error());
  if (code != 0) {
    return absl::InternalError(
        absl::StrCat("the ", ep::ToString(plan.workload.topology),
                     " benchmark cluster failed (tokenrail-launch exit code ", code,
                     "); its output is above on stderr"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::pair<int, int>>> ParseTopologies(absl::string_view text) {
  std::vector<std::pair<int, int>> out;
  std::set<std::pair<int, int>> seen;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const std::vector<absl::string_view> nr = absl::StrSplit(item, 'x');
    int n = 0, r = 0;
    if (nr.size() != 2 || !absl::SimpleAtoi(nr[0], &n) || !absl::SimpleAtoi(nr[1], &r) || n < 1 ||
        r < 1 || n > 64 || r > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("topology '", item, "': expected NODESxRANKS, e.g. 2x2"));
    }
    // A repeated topology would run twice and mix its rows in the ratios.
    if (!seen.emplace(n, r).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("topology '", item, "' is given twice (as ", n, "x", r, ")"));
    }
    out.emplace_back(n, r);
  }
  if (out.empty()) return absl::InvalidArgumentError("no topology given");
  return out;
}

absl::StatusOr<TopologyPlans> MakeTopologyPlans(const EpBenchOptions& o, int nodes,
                                                int ranks_per_node) {
  if (o.dtypes.empty()) return absl::InvalidArgumentError("no dtype given");
  TopologyPlans t;
  EpPlan base;
  WorkloadSpec& w = base.workload;
  w.topology = ep::EpTopology{nodes, ranks_per_node, o.experts};
  w.tokens = o.tokens;
  w.hidden = o.hidden;
  w.top_k = o.top_k;
  w.max_nodes = std::min(o.max_nodes, nodes);
  w.skew = o.skew;
  w.expert = o.expert;
  w.seed = o.seed;
  TR_RETURN_IF_ERROR(Annotate(Validate(w), absl::StrCat("topology ", nodes, "x", ranks_per_node)));
  base.iters = o.iters;
  base.warmup = o.warmup;
  base.verify_every = o.verify_every;
  base.align = o.align;
  base.buffer_bytes = o.buffer_bytes;
  base.timeout = o.timeout;

  t.mpi = base;
  t.mpi.network = "shm";
  t.mpi.daemon_stats = false;
  if (nodes == 1 && o.mpi) {
    for (ep::DType d : o.dtypes) {
      t.mpi.cases.push_back(MakeCase(Impl::kMpi, EngineRouting::kHierarchical, d, o.combine_dtype));
    }
    t.has_mpi = true;
    TR_RETURN_IF_ERROR(Validate(t.mpi));
  }

  t.netns = nodes > 1 &&
            (o.network == Network::kNetns || (o.network == Network::kAuto && ::geteuid() == 0));
  EpPlan& p = t.tokenrail;
  p = base;
  p.network = t.netns ? "netns" : "loopback";
  p.daemon_stats = o.daemon_stats;
  for (ep::DType d : o.dtypes) {
    p.cases.push_back(MakeCase(Impl::kTokenrail, EngineRouting::kHierarchical, d, o.combine_dtype));
  }
  if (nodes > 1 && o.flat) {
    p.cases.push_back(
        MakeCase(Impl::kTokenrail, EngineRouting::kFlat, o.dtypes[0], o.combine_dtype));
  }
  // Both the daemons and the UCX measurement cross the same wire: TCP.
  p.ucx_params = o.params;
  p.ucx_params.emplace("tls", "tcp");
  if (t.netns) p.ucx_params.emplace("net_devices", launch::NetnsCluster::kDevice);
  p.ucx = nodes > 1 && o.ucx;
  if (p.ucx) p.ucx_sizes = o.ucx_sizes;
  // Each node's address as its ranks reach it (the UCX measurement listens
  // there; rank 0 finds the coordinator at node 0's).
  for (int n = 0; n < nodes; ++n) {
    p.hosts.push_back(t.netns ? launch::NetnsCluster::NodeAddress(n) : "127.0.0.1");
  }
  TR_RETURN_IF_ERROR(Validate(p));
  // The engine's own limits (hidden, align, ranks per node, ...), before any
  // rank builds inputs of that size.
  if (p.align < 1 || p.align > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("--align=", p.align, " must be in 1..4096"));
  }
  for (const CaseSpec& c : p.cases) {
    TR_RETURN_IF_ERROR(Annotate(ep::Validate(MakeEpConfig(p, c)),
                                absl::StrCat("topology ", nodes, "x", ranks_per_node)));
  }
  return t;
}

absl::Status RunEpBench(const EpBenchOptions& o, const std::vector<std::string>& self_argv,
                        std::FILE* out) {
  if (self_argv.empty()) return absl::InvalidArgumentError("no rank command");
  std::vector<TopologyPlans> plans;
  for (const auto& [n, r] : o.topologies) {
    TR_ASSIGN_OR_RETURN(TopologyPlans t, MakeTopologyPlans(o, n, r));
    plans.push_back(std::move(t));
  }
  Printer cases(CaseTable(), o.json, out);
  cases.Section(absl::StrCat(
      "expert-parallel dispatch/combine: ", o.tokens, " tokens/rank, hidden ", o.hidden, ", ",
      o.experts, " experts, top-", o.top_k, ", M=min(", o.max_nodes, ",nodes), skew ",
      FormatSkew(o.skew), ", ", ExpertKindName(o.expert), " experts, combine ",
      ep::DTypeName(o.combine_dtype), ", ", o.iters, " iterations after ", o.warmup,
      " warm-up, every result verified against runtime/ep/reference\n"
      "times (us): per iteration the slowest rank, then p50/p99; rt = dispatch + combine\n"
      "disp/comb GB/s (algorithm bandwidth, DeepEP's): distinct tokens a rank receives x hidden "
      "x dtype size (+FP8 scales), mean over ranks, / p50 time; 1 GB = 1e9 B\n"
      "disp_bytes: bytes one dispatch sends rank-to-rank, all ranks; inter_rec_B: dispatch "
      "records crossing nodes (exact = tokens x destination nodes (flat: ranks) x record); "
      "inter_GB/s: bytes a node sends to other nodes per dispatch (records + chunk headers + "
      "counts + credits) / p50; "
      "daemon: the daemons' GetStats agree with the engine; imbal: max expert load / mean; "
      "load: the host's 1-minute load average when the case started"));

  absl::Status first_error;
  const auto note = [&first_error](const absl::Status& s) {
    if (!s.ok() && first_error.ok()) first_error = s;
    if (!s.ok()) std::fprintf(stderr, "tokenrail-bench ep: %s\n", s.ToString().c_str());
  };
  std::vector<Record> rows, ucx_rows;
  bool all_verified = true;
  const auto add_rows = [&](const EpPlan& plan, const std::vector<Record>& records, Impl impl,
                            double load_before, double load_after) {
    if (o.dump_rank_records) {
      for (const Record& r : records) {
        std::fprintf(stderr, "rank record: %s\n", r.ToJson().c_str());
      }
    }
    for (const CaseSpec& spec : plan.cases) {
      if (spec.impl != impl) continue;
      // A job that failed before any rank reported was noted already.
      if (std::none_of(records.begin(), records.end(), [&spec](const Record& r) {
            return r.GetString("case").value_or("") == spec.name;
          })) {
        continue;
      }
      absl::StatusOr<Record> row = AggregateCase(plan, spec, records);
      if (!row.ok()) {
        note(row.status());
        continue;
      }
      if (!row->GetBool("verified").value_or(false)) all_verified = false;
      row->Set("load1_before", load_before).Set("load1_after", load_after);
      cases.Row(*row);
      rows.push_back(std::move(*row));
    }
  };

  for (const TopologyPlans& t : plans) {
    if (t.has_mpi) {
      const double load = Load1();
      absl::StatusOr<std::vector<Record>> records = RunMpiBaseline(t.mpi, o.mpi_run);
      if (records.ok()) {
        add_rows(t.mpi, *records, Impl::kMpi, load, Load1());
      } else {
        note(Annotate(records.status(), "MPI baseline"));
      }
    }
    // One job per case: a fresh job never sees a previous buffer's
    // messages still in flight (see the report: the engine does not drain
    // them when an EpBuffer is destroyed), and a failing case cannot take
    // the others down. The UCX measurement runs in the first job.
    const std::string topo = absl::StrCat(t.tokenrail.workload.topology.nodes, "x",
                                          t.tokenrail.workload.topology.ranks_per_node);
    for (size_t i = 0; i < t.tokenrail.cases.size(); ++i) {
      EpPlan one = t.tokenrail;
      one.cases = {t.tokenrail.cases[i]};
      one.ucx = t.tokenrail.ucx && i == 0;
      Collector collector;
      const double load = Load1();
      note(Annotate(RunCluster(o, one, t.netns, self_argv, &collector),
                    absl::StrCat("case ", one.cases[0].name)));
      add_rows(one, collector.rows(), Impl::kTokenrail, load, Load1());
      for (Record& u : collector.ucx()) {
        Record tagged;
        tagged.Set("bench", "ep_ucx").Set("topology", topo).Set("network", one.network);
        for (const auto& [key, value] : u.fields()) {
          if (key == "bench") continue;
          std::visit([&tagged, &key = key](const auto& v) { tagged.Set(key, v); }, value);
        }
        ucx_rows.push_back(std::move(tagged));
      }
    }
  }
  if (!ucx_rows.empty()) {
    Printer ucx(UcxTable(), o.json, out);
    ucx.Section(
        absl::StrCat("UCX put bandwidth between node 0 and node 1 (tokenrail-bench "
                     "transport's loops, the daemons' params), same run"));
    for (const Record& u : ucx_rows) ucx.Row(u);
  }
  const std::vector<Record> ratios = Ratios(rows, ucx_rows);
  if (!ratios.empty()) {
    Printer printer(RatioTable(), o.json, out);
    printer.Section(
        "ratios at p50 (speedup = baseline time / tokenrail time); targets from issue 4");
    for (const Record& r : ratios) printer.Row(r);
  }
  std::fflush(out);
  if (!first_error.ok()) return first_error;
  if (!all_verified) return absl::DataLossError("a case failed verification (see its row)");
  return absl::OkStatus();
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
