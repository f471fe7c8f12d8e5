#include "tools/bench/ep/aggregate.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "tools/bench/ep/rank_loop.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

int64_t IntOr(const Record& r, absl::string_view key, int64_t fallback = 0) {
  return r.GetInt(key).value_or(fallback);
}

std::string TopologyName(const ep::EpTopology& t) {
  return absl::StrCat(t.nodes, "x", t.ranks_per_node);
}

// Per iteration: the maximum over ranks.
absl::StatusOr<std::vector<double>> MaxOverRanks(const std::vector<Record>& records,
                                                 absl::string_view key, uint64_t iters) {
  std::vector<double> out(iters, 0.0);
  for (const Record& r : records) {
    TR_ASSIGN_OR_RETURN(const std::string text, r.GetString(key));
    TR_ASSIGN_OR_RETURN(const std::vector<double> v, SplitSamples(text));
    if (v.size() != iters) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", IntOr(r, "rank", -1), " reported ",
                                                     v.size(), " ", key, " samples, expected ",
                                                     iters));
    }
    for (uint64_t i = 0; i < iters; ++i) out[i] = std::max(out[i], v[i]);
  }
  return out;
}

double Gbps(double bytes, double micros) { return micros > 0 ? bytes / (micros * 1e3) : 0; }

}  // namespace

absl::StatusOr<Record> AggregateCase(const EpPlan& plan, const CaseSpec& spec,
                                     const std::vector<Record>& rank_records) {
  const WorkloadSpec& w = plan.workload;
  const int world = w.topology.world_size();
  std::vector<Record> records;
  std::set<int64_t> ranks;
  for (const Record& r : rank_records) {
    if (r.GetString("case").value_or("") != spec.name) continue;
    const int64_t rank = IntOr(r, "rank", -1);
    if (rank < 0 || rank >= world || !ranks.insert(rank).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("case ", spec.name, ": rank ", rank, " is out of range or repeated"));
    }
    records.push_back(r);
  }
  if (static_cast<int>(records.size()) != world) {
    return absl::InvalidArgumentError(
        absl::StrCat("case ", spec.name, ": ", records.size(), " of ", world, " ranks reported"));
  }
  std::sort(records.begin(), records.end(),
            [](const Record& a, const Record& b) { return IntOr(a, "rank") < IntOr(b, "rank"); });

  Record row;
  row.Set("bench", "ep")
      .Set("topology", TopologyName(w.topology))
      .Set("network", plan.network)
      .Set("impl", ImplName(spec.impl))
      .Set("routing", spec.impl == Impl::kMpi ? "-" : RoutingName(spec.routing))
      .Set("dtype", std::string(ep::DTypeName(spec.dispatch_dtype)))
      .Set("combine_dtype", std::string(ep::DTypeName(spec.combine_dtype)))
      .Set("tokens", w.tokens)
      .Set("hidden", w.hidden)
      .Set("experts", w.topology.experts)
      .Set("top_k", w.top_k)
      .Set("max_nodes", w.max_nodes)
      .Set("skew", FormatSkew(w.skew))
      .Set("expert_fn", ExpertKindName(w.expert))
      .Set("iters", plan.iters)
      .Set("warmup", plan.warmup);

  TR_ASSIGN_OR_RETURN(std::vector<double> d, MaxOverRanks(records, "dispatch_us", plan.iters));
  TR_ASSIGN_OR_RETURN(std::vector<double> c, MaxOverRanks(records, "combine_us", plan.iters));
  std::vector<double> rt(plan.iters);
  for (uint64_t i = 0; i < plan.iters; ++i) rt[i] = d[i] + c[i];
  const Summary ds = Summarize(&d), cs = Summarize(&c), rs = Summarize(&rt);
  row.Set("dispatch_p50_us", ds.p50).Set("dispatch_p99_us", ds.p99);
  row.Set("combine_p50_us", cs.p50).Set("combine_p99_us", cs.p99);
  row.Set("roundtrip_p50_us", rs.p50).Set("roundtrip_p99_us", rs.p99);

  int64_t recv_tokens = 0, dispatch_bytes = 0, combine_bytes = 0, inter_bytes = 0;
  int64_t record_bytes_got = 0, record_bytes_want = 0, metadata = 0, fp8_inexact = 0;
  int64_t op_inter_total = 0;
  bool verified = true, stable = true;
  std::string error;
  std::vector<int64_t> load(w.topology.experts, 0);
  const size_t rec = spec.impl == Impl::kMpi
                         ? static_cast<size_t>(IntOr(records[0], "record_bytes"))
                         : StatedDispatchRecordBytes(w.top_k, w.hidden, spec.dispatch_dtype);
  for (const Record& r : records) {
    recv_tokens += IntOr(r, "recv_tokens");
    dispatch_bytes += IntOr(r, "dispatch_intra_bytes") + IntOr(r, "dispatch_inter_bytes");
    combine_bytes += IntOr(r, "combine_intra_bytes") + IntOr(r, "combine_inter_bytes");
    inter_bytes += IntOr(r, "dispatch_inter_bytes");
    record_bytes_got += IntOr(r, "dispatch_op_inter_record_bytes");
    const int64_t copies = IntOr(
        r, spec.routing == EngineRouting::kFlat ? "remote_rank_copies" : "remote_node_copies");
    record_bytes_want += copies * static_cast<int64_t>(rec);
    metadata +=
        IntOr(r, "dispatch_op_inter_metadata_bytes") + IntOr(r, "dispatch_op_inter_credit_bytes");
    op_inter_total += IntOr(r, "dispatch_op_inter_record_bytes") +
                      IntOr(r, "dispatch_op_inter_metadata_bytes") +
                      IntOr(r, "dispatch_op_inter_credit_bytes");
    fp8_inexact += IntOr(r, "fp8_inexact_rows");
    if (!r.GetBool("verified").value_or(false)) {
      verified = false;
      if (error.empty()) {
        error = absl::StrCat("rank ", IntOr(r, "rank"), ": ",
                             r.GetString("error").value_or("no verification result"));
      }
    }
    if (!r.GetBool("stable").value_or(false)) stable = false;
    if (absl::StatusOr<std::string> tpe = r.GetString("tokens_per_expert"); tpe.ok()) {
      absl::StatusOr<std::vector<double>> v = SplitSamples(*tpe);
      if (v.ok() && v->size() == load.size()) {
        for (size_t e = 0; e < load.size(); ++e) load[e] += static_cast<int64_t>((*v)[e]);
      }
    }
  }
  const double recv_mean = static_cast<double>(recv_tokens) / world;
  row.Set("recv_tokens_mean", recv_mean);
  row.Set("dispatch_gbps", Gbps(recv_mean * PayloadBytes(w.hidden, spec.dispatch_dtype), ds.p50));
  row.Set("combine_gbps", Gbps(recv_mean * PayloadBytes(w.hidden, spec.combine_dtype), cs.p50));
  row.Set("dispatch_bytes", dispatch_bytes).Set("combine_bytes", combine_bytes);
  row.Set("record_bytes", static_cast<int64_t>(rec));
  if (spec.impl == Impl::kTokenrail && w.topology.nodes > 1) {
    row.Set("internode_record_bytes", record_bytes_got)
        .Set("internode_expected_bytes", record_bytes_want)
        .Set("internode_exact", record_bytes_got == record_bytes_want)
        .Set("internode_metadata_bytes", metadata)
        .Set("internode_gbps", Gbps(static_cast<double>(inter_bytes) / w.topology.nodes, ds.p50));
    const Record& r0 = records[0];
    if (r0.Has("daemon_dispatch_inter_bytes")) {
      const int64_t daemon = IntOr(r0, "daemon_dispatch_inter_bytes");
      row.Set("daemon_dispatch_inter_bytes", daemon)
          .Set("daemon_combine_inter_bytes", IntOr(r0, "daemon_combine_inter_bytes"))
          .Set("engine_dispatch_inter_bytes", op_inter_total)
          .Set("daemon_match", daemon == op_inter_total);
    } else if (r0.Has("daemon_stats")) {
      row.Set("daemon_stats", *r0.GetString("daemon_stats"));
    }
  }
  const int64_t total_load = std::accumulate(load.begin(), load.end(), int64_t{0});
  if (total_load > 0) {
    const double mean = static_cast<double>(total_load) / load.size();
    row.Set("imbalance", *std::max_element(load.begin(), load.end()) / mean);
  }
  row.Set("fp8_inexact_rows", fp8_inexact);
  row.Set("stable", stable);
  row.Set("verified", verified);
  if (!error.empty()) row.Set("error", error);
  return row;
}

namespace {

struct Key {
  std::string topology, impl, routing, dtype;
  bool operator<(const Key& o) const {
    return std::tie(topology, impl, routing, dtype) <
           std::tie(o.topology, o.impl, o.routing, o.dtype);
  }
};

Key KeyOf(const Record& r) {
  return {r.GetString("topology").value_or(""), r.GetString("impl").value_or(""),
          r.GetString("routing").value_or(""), r.GetString("dtype").value_or("")};
}

double D(const Record& r, absl::string_view key) {
  absl::StatusOr<double> d = r.GetDouble(key);
  if (d.ok()) return *d;
  return static_cast<double>(r.GetInt(key).value_or(0));
}

Record Ratio(const std::string& what, const Key& k, double value, const std::string& target) {
  Record r;
  r.Set("bench", "ep_ratio").Set("what", what).Set("topology", k.topology).Set("dtype", k.dtype);
  r.Set("value", value);
  if (!target.empty()) {
    r.Set("target", target);
    const double t = std::stod(target.substr(2));
    r.Set("met", target[0] == '>' ? value >= t : value <= t);
  }
  return r;
}

}  // namespace

std::vector<Record> Ratios(const std::vector<Record>& rows, const std::vector<Record>& ucx) {
  std::map<Key, const Record*> by;
  for (const Record& r : rows) by[KeyOf(r)] = &r;
  const auto find = [&](Key k) -> const Record* {
    auto it = by.find(k);
    return it == by.end() ? nullptr : it->second;
  };
  std::vector<Record> out;
  for (const Record& r : rows) {
    const Key k = KeyOf(r);
    if (k.impl != "tokenrail" || k.routing != "hier") continue;
    const bool bf16 = k.dtype == "bf16";
    if (const Record* mpi = find({k.topology, "mpi", "-", k.dtype})) {
      out.push_back(Ratio("roundtrip speedup vs MPI_Alltoallv", k,
                          D(*mpi, "roundtrip_p50_us") / D(r, "roundtrip_p50_us"),
                          bf16 ? ">=1.3" : ""));
      out.push_back(Ratio("dispatch speedup vs MPI_Alltoallv", k,
                          D(*mpi, "dispatch_p50_us") / D(r, "dispatch_p50_us"), ""));
      out.push_back(Ratio("combine speedup vs MPI_Alltoallv", k,
                          D(*mpi, "combine_p50_us") / D(r, "combine_p50_us"), ""));
    }
    if (const Record* flat = find({k.topology, "tokenrail", "flat", k.dtype})) {
      out.push_back(Ratio("roundtrip speedup vs flat routing", k,
                          D(*flat, "roundtrip_p50_us") / D(r, "roundtrip_p50_us"),
                          bf16 ? ">=1.2" : ""));
      if (D(*flat, "internode_record_bytes") > 0) {
        out.push_back(Ratio("inter-node bytes hier / flat", k,
                            D(r, "internode_record_bytes") / D(*flat, "internode_record_bytes"),
                            ""));
      }
    }
    if (k.dtype == "fp8_e4m3") {
      if (const Record* b = find({k.topology, "tokenrail", "hier", "bf16"})) {
        out.push_back(Ratio("fp8 / bf16 dispatch bytes", k,
                            D(r, "dispatch_bytes") / D(*b, "dispatch_bytes"), "<=0.53"));
      }
    }
    double bw = 0, bibw = 0;
    for (const Record& u : ucx) {
      if (u.GetString("topology").value_or("") != k.topology) continue;
      const std::string mode = u.GetString("mode").value_or("");
      const double g = u.GetDouble("gbytes_per_s").value_or(0);
      if (mode == "bw") bw = std::max(bw, g);
      if (mode == "bibw") bibw = std::max(bibw, g);
    }
    if (bw > 0 && r.Has("internode_gbps")) {
      out.push_back(Ratio("inter-node GB/s during dispatch / UCX tcp put bw", k,
                          D(r, "internode_gbps") / bw, bf16 ? ">=0.7" : ""));
      if (bibw > 0) {
        out.push_back(Ratio("inter-node GB/s during dispatch / (UCX tcp bibw / 2)", k,
                            D(r, "internode_gbps") / (bibw / 2), ""));
      }
    }
  }
  return out;
}

Table CaseTable() {
  using F = Table::Format;
  return Table({{"topology", "topo", F::kString, 4},
                {"network", "net", F::kString, 8},
                {"impl", "impl", F::kString, 9},
                {"routing", "route", F::kString, 5},
                {"dtype", "dtype", F::kString, 8},
                {"dispatch_p50_us", "disp_p50", F::kFixed2, 9},
                {"dispatch_p99_us", "disp_p99", F::kFixed2, 9},
                {"combine_p50_us", "comb_p50", F::kFixed2, 9},
                {"combine_p99_us", "comb_p99", F::kFixed2, 9},
                {"roundtrip_p50_us", "rt_p50", F::kFixed2, 9},
                {"roundtrip_p99_us", "rt_p99", F::kFixed2, 9},
                {"dispatch_gbps", "disp_GB/s", F::kFixed3, 0},
                {"combine_gbps", "comb_GB/s", F::kFixed3, 0},
                {"dispatch_bytes", "disp_bytes", F::kInt, 0},
                {"internode_record_bytes", "inter_rec_B", F::kInt, 0},
                {"internode_exact", "exact", F::kBool, 0},
                {"internode_gbps", "inter_GB/s", F::kFixed3, 0},
                {"daemon_match", "daemon", F::kBool, 0},
                {"imbalance", "imbal", F::kFixed2, 0},
                {"load1_before", "load", F::kFixed2, 0},
                {"verified", "verified", F::kBool, 0}});
}

Table RatioTable() {
  using F = Table::Format;
  return Table({{"what", "what", F::kString, 52},
                {"topology", "topo", F::kString, 4},
                {"dtype", "dtype", F::kString, 8},
                {"value", "value", F::kFixed3, 0},
                {"target", "target", F::kString, 6},
                {"met", "met", F::kBool, 0}});
}

Table UcxTable() {
  using F = Table::Format;
  return Table({{"topology", "topo", F::kString, 4},
                {"mode", "mode", F::kString, 4},
                {"size", "size", F::kSize, 6},
                {"iters", "iters", F::kInt, 6},
                {"gbytes_per_s", "GB/s", F::kFixed3, 0},
                {"p50_us", "p50_us", F::kFixed2, 0},
                {"verified", "verified", F::kBool, 0}});
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
