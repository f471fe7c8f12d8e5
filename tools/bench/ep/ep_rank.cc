#include "tools/bench/ep/ep_rank.h"

#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/rpc/auth.h"
#include "common/status.h"
#include "runtime/client/client.h"
#include "runtime/ep/buffer.h"
#include "tools/bench/ep/check.h"
#include "tools/bench/ep/daemon_stats.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/ep/rank_loop.h"
#include "tools/bench/ep/tokenrail_exchange.h"
#include "tools/bench/ep/ucx_probe.h"
#include "tools/launch/control_client.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

void Emit(const char* tag, const Record& r) {
  const std::string text = absl::StrCat(tag, r.ToJson(), "\n");
  [[maybe_unused]] ssize_t n = ::write(STDOUT_FILENO, text.data(), text.size());
}

std::string GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// Where the daemons' counters come from, or why they cannot.
struct StatsSource {
  DaemonStatsOptions options;
  std::string unavailable;  // reason, when empty options
};

StatsSource FindStatsSource(const runtime::RankTopology& t, const EpPlan& plan) {
  StatsSource s;
  s.options.job_id = t.job_id;
  s.options.querier = t.global_rank == 0;
  s.options.timeout = plan.timeout;
  if (!s.options.querier) return s;
  s.options.coordinator = GetEnv("TOKENRAIL_COORDINATOR");
  std::string token_file = GetEnv("TOKENRAIL_AUTH_TOKEN_FILE");
  if (s.options.coordinator.empty()) {
    // The launcher exports neither variable: its private run directory (the
    // one holding our socket) has node 0's ready file, which names the
    // hosted coordinator's port, and the run's token.
    const std::string socket = GetEnv("TOKENRAIL_SOCKET");
    const std::string dir = socket.substr(0, socket.rfind('/'));
    absl::StatusOr<launch::DaemonReady> ready = launch::ReadReadyFile(dir + "/n0.ready");
    if (!ready.ok() || ready->coordinator_port == 0 || plan.hosts.empty()) {
      s.options.querier = false;
      s.unavailable =
          "the launcher exports no TOKENRAIL_COORDINATOR and its run directory has no "
          "coordinator port";
      return s;
    }
    s.options.coordinator = absl::StrCat(plan.hosts[0], ":", ready->coordinator_port);
    if (token_file.empty() && ::access((dir + "/token").c_str(), R_OK) == 0) {
      token_file = dir + "/token";
    }
  }
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = rpc::ReadTokenFile(token_file);
    if (!token.ok()) {
      s.options.querier = false;
      s.unavailable = std::string(token.status().message());
      return s;
    }
    s.options.auth_token = *token;
  }
  return s;
}

absl::Status RunTokenrailCase(runtime::RankClient& rc, const EpPlan& plan, const CaseSpec& spec,
                              const StatsSource& stats_source) {
  const int rank = rc.topology().global_rank;
  CheckOptions co;
  co.dispatch_dtype = spec.dispatch_dtype;
  co.expert_dtype = spec.expert_dtype;
  co.combine_dtype = spec.combine_dtype;
  co.align = plan.align;
  TR_ASSIGN_OR_RETURN(std::unique_ptr<Checker> checker, Checker::Create(plan.workload, rank, co));
  const ep::EpConfig config = MakeEpConfig(plan, spec);
  TR_ASSIGN_OR_RETURN(std::unique_ptr<ep::EpBuffer> buffer, ep::EpBuffer::Create(&rc, config));
  const ep::DType x_dtype =
      spec.dispatch_dtype == ep::DType::kFloat32 ? ep::DType::kFloat32 : ep::DType::kBFloat16;
  TokenrailUnderTest under(*buffer, checker->input(), x_dtype, plan.timeout);
  std::unique_ptr<DaemonStats> daemon;
  if (plan.daemon_stats) {
    TR_ASSIGN_OR_RETURN(daemon, DaemonStats::Create(stats_source.options));
  }
  TR_ASSIGN_OR_RETURN(Record r, RunCase(under, *checker, spec, plan, daemon.get()));
  under.Report(&r);
  if (plan.daemon_stats && rank == 0 && !stats_source.unavailable.empty()) {
    r.Set("daemon_stats", absl::StrCat("unavailable: ", stats_source.unavailable));
  }
  Emit(kRowTag, r);
  // Every rank leaves the case together (the buffer's engine stops here).
  return under.Barrier();
}

}  // namespace

bool IsEpRankArgument(absl::string_view arg) { return IsPlanArgument(arg); }

absl::Status RunEpRank(absl::string_view plan_arg) {
  TR_ASSIGN_OR_RETURN(const EpPlan plan, DecodePlan(plan_arg));
  TR_ASSIGN_OR_RETURN(runtime::AttachOptions options, runtime::AttachOptions::FromEnvironment());
  TR_ASSIGN_OR_RETURN(std::unique_ptr<runtime::RankClient> rc,
                      runtime::RankClient::Attach(options));
  const runtime::RankTopology& t = rc->topology();
  const ep::EpTopology& want = plan.workload.topology;
  if (t.nodes != want.nodes || t.ranks_per_node != want.ranks_per_node) {
    return absl::FailedPreconditionError(absl::StrCat("the job has ", t.nodes, " x ",
                                                      t.ranks_per_node, " ranks; the plan is for ",
                                                      ep::ToString(want)));
  }
  SetLogPrefix(absl::StrCat("n", t.node_id, "/r", t.global_rank, " "));
  if (plan.ucx) {
    TR_ASSIGN_OR_RETURN(std::vector<Record> rows, MeasureUcx(*rc, plan));
    for (const Record& r : rows) Emit(kUcxTag, r);
  }
  const StatsSource stats_source = FindStatsSource(t, plan);
  for (const CaseSpec& spec : plan.cases) {
    if (spec.impl != Impl::kTokenrail) continue;
    TR_RETURN_IF_ERROR(Annotate(RunTokenrailCase(*rc, plan, spec, stats_source),
                                absl::StrCat("case ", spec.name)));
  }
  return rc->Detach();
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
