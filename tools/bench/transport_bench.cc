#include "tools/bench/transport_bench.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/bytes.h"
#include "common/logging.h"
#include "common/status.h"
#include "tools/bench/baseline.h"
#include "tools/bench/local_peer.h"
#include "tools/bench/loops.h"
#include "tools/bench/session.h"
#include "transport/registry.h"

namespace tokenrail {
namespace bench {
namespace {

constexpr size_t kMaxAddress = 1 << 20;

std::string PackHello(const absl::Status& status, absl::string_view address) {
  ByteWriter w;
  w.PutBytes(PackStatus(status));
  w.PutBytes(address);
  return w.Release();
}

absl::StatusOr<std::string> UnpackHello(absl::string_view blob) {
  ByteReader r(blob, "follower hello");
  TR_ASSIGN_OR_RETURN(absl::string_view status_blob, r.GetBytes(kMaxAddress));
  TR_ASSIGN_OR_RETURN(absl::Status status, UnpackStatus(status_blob));
  TR_ASSIGN_OR_RETURN(absl::string_view address, r.GetBytes(kMaxAddress));
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (!status.ok()) return Annotate(status, "peer");
  return std::string(address);
}

void SetSummary(Record& row, std::vector<double> samples) {
  const Summary s = Summarize(&samples);
  row.Set("p50_us", s.p50).Set("p99_us", s.p99).Set("min_us", s.min).Set("max_us", s.max);
  row.Set("mean_us", s.mean);
}

Record MakeRow(const Plan& plan, const TestSpec& t, const SideResult& leader,
               const SideResult& follower, const BaselineResult* baseline) {
  Record row;
  row.Set("bench", "transport").Set("backend", plan.backend);
  row.Set("params", FormatParams(plan.params));
  row.Set("mode", ModeName(t.mode)).Set("size", t.size).Set("iters", t.iters);
  row.Set("warmup", t.warmup).Set("window", static_cast<int64_t>(t.window));
  row.Set("slots", static_cast<int64_t>(t.slots));
  SetSummary(row, leader.samples_us);
  const double bytes = static_cast<double>(t.size) * static_cast<double>(t.iters);
  double gbytes = 0;
  std::optional<std::pair<double, double>> directions;
  if (t.mode == Mode::kLatency) {
    // Effective ping-pong bandwidth of one message per one-way latency.
    const double p50 = *row.GetDouble("p50_us");
    gbytes = GigabytesPerSecond(static_cast<double>(t.size), p50 * 1e-6);
  } else if (t.mode == Mode::kBandwidth) {
    gbytes = GigabytesPerSecond(bytes, leader.send_ns / 1e9);
  } else {
    // Both directions ran at once; the slower side bounds the aggregate.
    directions.emplace(GigabytesPerSecond(bytes, leader.send_ns / 1e9),
                       GigabytesPerSecond(bytes, follower.send_ns / 1e9));
    gbytes = GigabytesPerSecond(2 * bytes, std::max(leader.send_ns, follower.send_ns) / 1e9);
  }
  row.Set("gbytes_per_s", gbytes);
  if (directions) {
    row.Set("fwd_gbytes_per_s", directions->first).Set("rev_gbytes_per_s", directions->second);
  }
  if (baseline != nullptr && t.mode != Mode::kLatency) {
    row.Set("baseline", baseline->name).Set("baseline_gbytes_per_s", baseline->gbytes_per_s);
    row.Set("baseline_p50_us", baseline->per_op_us.p50);
    row.Set("ratio", baseline->gbytes_per_s > 0 ? gbytes / baseline->gbytes_per_s : 0.0);
  }
  const bool verified = leader.verify.ok() && follower.verify.ok();
  row.Set("verified", verified);
  row.Set("checked", leader.received + follower.received);
  row.Set("full_checks", leader.full_checks + follower.full_checks);
  if (!verified) {
    row.Set("error", !leader.verify.ok()
                         ? absl::StrCat("leader received: ", leader.verify.message())
                         : absl::StrCat("follower received: ", follower.verify.message()));
  }
  return row;
}

std::string SectionText(const Plan& plan, const transport::Capabilities& caps,
                        const TransportBenchOptions& o) {
  std::vector<std::string> traits;
  if (caps.intra_node) traits.push_back("intra-node");
  if (caps.inter_node) traits.push_back("inter-node");
  if (caps.native_rma) traits.push_back("native RMA");
  return absl::StrCat("transport ", plan.backend, " (", absl::StrJoin(traits, ", "), "; nominal ",
                      caps.bandwidth_gbytes, " GB/s, ", caps.latency_us,
                      " us)  params: ", plan.params.empty() ? "-" : FormatParams(plan.params),
                      "  peer: ", o.inter_node ? "remote host" : "local process", "\n",
                      "lat: put+notification ping-pong, one-way = RTT/2; bw/bibw: ", o.window,
                      " outstanding puts at most (win column), p50/p99 = sender's time per put "
                      "(chunks of win puts); ",
                      "GB/s = 1e9 B/s; bibw GB/s = both directions");
}

// One backend: plan, set-up with the follower, every test, teardown.
absl::Status LeadBackend(const TransportBenchOptions& options, const std::string& backend,
                         transport::OobChannel& oob, Printer& printer,
                         std::vector<std::string>* failures) {
  TR_ASSIGN_OR_RETURN(Plan plan, MakePlan(options, backend, "bench-leader"));
  Session s(&oob, plan.timeout);
  TR_RETURN_IF_ERROR(s.CreateContext(plan, plan.leader_name, {}));
  TR_RETURN_IF_ERROR(s.Send(Frame::kPlan, PackPlan(plan)));
  TR_ASSIGN_OR_RETURN(std::string hello, s.Recv(Frame::kHello));
  TR_ASSIGN_OR_RETURN(std::string peer_address, UnpackHello(hello));
  TR_RETURN_IF_ERROR(s.Send(Frame::kAddress, s.context().address()));
  TR_RETURN_IF_ERROR(Annotate(s.Connect(peer_address), backend));
  TR_RETURN_IF_ERROR(s.AllocateRegions(plan.region_bytes));
  TR_RETURN_IF_ERROR(Annotate(s.ExchangeKeys(), backend));
  printer.Section(SectionText(plan, s.context().capabilities(), options));

  std::map<uint64_t, BaselineResult> baselines;
  for (const TestSpec& t : plan.tests) {
    const BaselineResult* baseline = nullptr;
    if (options.baseline == Baseline::kMemcpy && t.mode != Mode::kLatency) {
      auto it = baselines.find(t.size);
      if (it == baselines.end()) {
        // The follower waits at the test's first barrier meanwhile.
        TR_ASSIGN_OR_RETURN(BaselineResult b, RunMemcpyBaseline(t));
        it = baselines.emplace(t.size, std::move(b)).first;
      }
      baseline = &it->second;
    }
    TR_ASSIGN_OR_RETURN(SideResult mine, RunTest(s, t, /*is_leader=*/true, plan.corrupt_iteration));
    TR_ASSIGN_OR_RETURN(std::string blob, s.Recv(Frame::kResult));
    TR_ASSIGN_OR_RETURN(SideResult theirs, UnpackSideResult(blob));
    const Record row = MakeRow(plan, t, mine, theirs, baseline);
    printer.Row(row);
    if (!mine.verify.ok() || !theirs.verify.ok()) {
      failures->push_back(absl::StrCat(backend, " ", *row.GetString("error")));
    }
  }
  TR_RETURN_IF_ERROR(s.Send(Frame::kDone, ""));
  return s.Recv(Frame::kDone).status();
}

}  // namespace

Table TransportTable() {
  using F = Table::Format;
  return Table({{"mode", "mode", F::kString, 4},
                {"size", "size", F::kSize, 5},
                {"iters", "iters", F::kInt, 5},
                {"window", "win", F::kInt, 3},
                {"p50_us", "p50_us", F::kFixed3, 10},
                {"p99_us", "p99_us", F::kFixed3, 10},
                {"min_us", "min_us", F::kFixed3, 10},
                {"gbytes_per_s", "GB/s", F::kFixed2, 7},
                {"fwd_gbytes_per_s", "fwd_GB/s", F::kFixed2, 8},
                {"rev_gbytes_per_s", "rev_GB/s", F::kFixed2, 8},
                {"baseline_gbytes_per_s", "memcpy_GB/s", F::kFixed2, 11},
                {"ratio", "ratio", F::kFixed2, 5},
                {"verified", "verified", F::kString, 8}});
}

absl::StatusOr<std::vector<std::string>> ResolveBackends(const TransportBenchOptions& options) {
  if (!options.backend.empty()) {
    TR_ASSIGN_OR_RETURN(const transport::BackendEntry* entry,
                        transport::FindBackend(options.backend));
    return std::vector<std::string>{entry->name};
  }
  transport::TransportOptions topts;
  topts.params = options.params;
  transport::Requirements req;
  req.intra_node = !options.inter_node;
  req.inter_node = options.inter_node;
  TR_ASSIGN_OR_RETURN(std::vector<transport::Capabilities> caps,
                      transport::SelectBackends(req, options.transports, topts));
  std::vector<std::string> names;
  for (const transport::Capabilities& c : caps) names.push_back(c.backend);
  return names;
}

absl::Status RunTransportLeader(const TransportBenchOptions& options, transport::OobChannel& oob,
                                Printer& printer) {
  std::vector<std::string> failures;
  absl::Status status = [&]() -> absl::Status {
    TR_ASSIGN_OR_RETURN(std::vector<std::string> backends, ResolveBackends(options));
    for (const std::string& backend : backends) {
      TR_RETURN_IF_ERROR(LeadBackend(options, backend, oob, printer, &failures));
    }
    return absl::OkStatus();
  }();
  // Best effort: a follower that is still listening exits cleanly.
  Session(&oob, options.timeout).Send(Frame::kBye, "").IgnoreError();
  if (!status.ok()) return status;
  if (!failures.empty()) {
    return absl::DataLossError(absl::StrCat(
        failures.size(), " test(s) failed verification: ", absl::StrJoin(failures, "; ")));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> RunTransportFollower(const FollowerOptions& options,
                                            transport::OobChannel& oob) {
  size_t tests = 0;
  std::vector<std::string> failures;
  while (true) {
    Session control(&oob, options.timeout);
    TR_ASSIGN_OR_RETURN(auto frame, control.RecvAny("a plan"));
    if (frame.first == Frame::kBye) break;
    if (frame.first != Frame::kPlan) {
      return absl::InvalidArgumentError(
          absl::StrCat("bench protocol: expected a plan from the leader, got frame type ",
                       static_cast<int>(frame.first)));
    }
    // On a set-up error tell the leader why, then stop: it cannot run this
    // plan without us.
    absl::StatusOr<Plan> plan = UnpackPlan(frame.second);
    if (!plan.ok()) {
      control.Send(Frame::kHello, PackHello(plan.status(), "")).IgnoreError();
      return plan.status();
    }
    Session s(&oob, plan->timeout);
    if (absl::Status setup = s.CreateContext(*plan, options.name, options.params); !setup.ok()) {
      s.Send(Frame::kHello, PackHello(setup, "")).IgnoreError();
      return setup;
    }
    TR_RETURN_IF_ERROR(s.Send(Frame::kHello, PackHello(absl::OkStatus(), s.context().address())));
    TR_ASSIGN_OR_RETURN(std::string peer_address, s.Recv(Frame::kAddress));
    TR_RETURN_IF_ERROR(Annotate(s.Connect(peer_address), plan->backend));
    TR_RETURN_IF_ERROR(s.AllocateRegions(plan->region_bytes));
    TR_RETURN_IF_ERROR(Annotate(s.ExchangeKeys(), plan->backend));
    for (const TestSpec& t : plan->tests) {
      TR_ASSIGN_OR_RETURN(SideResult r, RunTest(s, t, /*is_leader=*/false, -1));
      TR_RETURN_IF_ERROR(s.Send(Frame::kResult, PackSideResult(r)));
      if (!r.verify.ok()) failures.push_back(std::string(r.verify.message()));
      ++tests;
    }
    TR_RETURN_IF_ERROR(s.Recv(Frame::kDone).status());
    TR_RETURN_IF_ERROR(s.Send(Frame::kDone, ""));
  }
  if (!failures.empty()) {
    return absl::DataLossError(
        absl::StrCat(failures.size(),
                     " received message(s) failed verification: ", absl::StrJoin(failures, "; ")));
  }
  return tests;
}

absl::Status RunTransportLocal(const TransportBenchOptions& options,
                               std::vector<std::string> peer_argv, Printer& printer) {
  TR_ASSIGN_OR_RETURN(transport::OobListener listener,
                      transport::OobListener::Listen("127.0.0.1", 0));
  peer_argv.push_back(absl::StrCat("--connect=127.0.0.1:", listener.port()));
  TR_ASSIGN_OR_RETURN(ChildProcess peer, ChildProcess::Spawn(peer_argv));
  TR_ASSIGN_OR_RETURN(transport::OobChannel oob,
                      AcceptFromChild(listener, peer, absl::Now() + options.timeout));
  const absl::Status run = RunTransportLeader(options, oob, printer);
  // After a failure the peer may sit in a transport wait; the ChildProcess
  // destructor terminates it once the short grace period is over.
  absl::StatusOr<int> code =
      peer.Wait(absl::Now() + (run.ok() ? absl::Seconds(10) : absl::Seconds(1)));
  if (!run.ok()) return run;
  if (!code.ok()) return Annotate(code.status(), "peer process did not exit");
  if (*code != 0) {
    return absl::InternalError(
        absl::StrCat("peer process exited with code ", *code, " (see its messages above)"));
  }
  return absl::OkStatus();
}

}  // namespace bench
}  // namespace tokenrail

namespace tokenrail {
namespace bench {

absl::StatusOr<std::vector<Record>> RunTransportLeaderRecords(const TransportBenchOptions& options,
                                                              transport::OobChannel& oob,
                                                              absl::string_view what) {
  char* buf = nullptr;
  size_t len = 0;
  std::FILE* mem = ::open_memstream(&buf, &len);
  if (mem == nullptr) return absl::ResourceExhaustedError("open_memstream failed");
  absl::Status run;
  {
    Printer printer(TransportTable(), /*json=*/true, mem);
    run = RunTransportLeader(options, oob, printer);
  }
  std::fclose(mem);
  const std::string text(buf, len);
  std::free(buf);
  TR_RETURN_IF_ERROR(Annotate(run, what));
  std::vector<Record> rows;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    if (!absl::StartsWith(line, "{")) continue;
    TR_ASSIGN_OR_RETURN(Record r, Record::ParseJson(line));
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace bench
}  // namespace tokenrail
