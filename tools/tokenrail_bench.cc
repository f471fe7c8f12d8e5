// tokenrail-bench: microbenchmarks of tokenrail's layers. A thin CLI: flags
// become typed options and each subcommand hands them to its library in
// //tools/bench. Adding a subcommand = a Run function + one kSubcommands line.
//
//   tokenrail-bench barrier [--participants=64] [--iters=N] [--warmup=N] [--json]
//   tokenrail-bench ep [--topologies=1x4,2x2] [--tokens=N] [--hidden=N] [--experts=N]
//       [--top_k=K] [--max_nodes=M] [--dtypes=bf16,fp8_e4m3] [--skew=...]
//       [--ep_baselines=mpi,flat,ucx] [--ep_network=auto|netns|loopback] [--json]
//       (all flags: tools/bench/ep/ep_flags.h)
//   tokenrail-bench info [--json] [--transports=FILTER]
//   tokenrail-bench proxy [--network=auto|netns|loopback] [--sizes=...] [--iters=N]
//       [--tests=lat,bw] [--warmup=N] [--window=N] [--rounds=N] [--ping_iters=N]
//       [--params=k=v,...] [--json]
//   tokenrail-bench transport [--backend=NAME | --transports=FILTER]
//       [--params=k=v,...] [--sizes=8:64M] [--tests=lat,bw,bibw] [--iters=N]
//       [--warmup=N] [--window=N] [--baseline=memcpy|none] [--json]
//       [--listen=IP:PORT | --connect=IP:PORT]
//
// Exit codes: 0 success, 1 failure (including data verification), 2 usage.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/init.h"
#include "common/status.h"
#include "tools/bench/barrier_bench.h"
#include "tools/bench/ep/ep_bench.h"
#include "tools/bench/ep/ep_flags.h"
#include "tools/bench/ep/ep_rank.h"
#include "tools/bench/info.h"
#include "tools/bench/local_peer.h"
#include "tools/bench/plan.h"
#include "tools/bench/proxy_bench.h"
#include "tools/bench/report.h"
#include "tools/bench/transport_bench.h"
#include "transport/oob.h"
#include "transport/transport.h"

// Shared by subcommands.
ABSL_FLAG(bool, json, false, "Print one JSON object per line instead of a table.");
ABSL_FLAG(std::string, backend, "",
          "Transport backend to use (see `tokenrail-bench info`). Default: every backend "
          "that --transports allows and that works here.");
ABSL_FLAG(std::string, transports, "",
          "Backend filter like UCX_TLS: 'shm,ucx' (these, in order), '^verbs' (all but "
          "these), '' (all).");
ABSL_FLAG(std::string, params, "",
          "Backend params k=v,k=v passed to TransportOptions::params (e.g. tls=tcp for ucx). "
          "On a --listen follower they override the leader's.");
// transport
ABSL_FLAG(std::string, sizes, "8:64M",
          "Message sizes: FROM:TO (powers of two, K/M/G binary), a list, or both: "
          "'8:64M', '8,4K,1M'.");
ABSL_FLAG(std::string, tests, "lat,bw,bibw",
          "Tests: lat (ping-pong latency), bw (put bandwidth), bibw (bidirectional; transport "
          "only).");
ABSL_FLAG(uint64_t, iters, 1000, "Timed iterations per size and test.");
ABSL_FLAG(uint64_t, min_iters, 10, "Fewest timed iterations when --max_bytes reduces them.");
ABSL_FLAG(std::string, max_bytes, "1G",
          "Bytes per test and direction above which iterations are reduced (large sizes).");
ABSL_FLAG(uint64_t, warmup, 100, "Untimed iterations before each test (<= iters/10).");
ABSL_FLAG(uint32_t, window, 64, "Outstanding puts in the bandwidth tests.");
ABSL_FLAG(std::string, slot_bytes, "8M",
          "Budget per buffer for rotating message slots (at least 2 slots per size).");
ABSL_FLAG(std::string, baseline, "memcpy",
          "Baseline measured in the same run: memcpy (same sizes and slots) or none.");
ABSL_FLAG(std::string, listen, "",
          "Two-host mode: listen on IP:PORT for the peer (this side follows its plan).");
ABSL_FLAG(std::string, connect, "",
          "Two-host mode: connect to the peer at IP:PORT (this side leads and prints).");
ABSL_FLAG(std::string, role, "auto",
          "leader, follower or auto (--connect leads, --listen follows, local mode leads).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(60),
          "Longest wait without progress (connect, every put, notification and barrier).");
ABSL_FLAG(int64_t, corrupt_iteration, -1,
          "Testing aid: corrupt this timed iteration of every test, to prove that "
          "verification catches it. -1: off.");

// barrier
ABSL_FLAG(int32_t, participants, 64,
          "barrier: simulated daemons joined to an in-process coordinator.");

// proxy
ABSL_FLAG(std::string, network, "auto",
          "proxy: netns (a network namespace per node; needs root), loopback, or auto (netns "
          "when root).");
ABSL_FLAG(uint64_t, ping_iters, 10000, "proxy: RankClient::Ping round trips timed (0: skip).");
ABSL_FLAG(uint32_t, rounds, 7,
          "proxy: bandwidth rounds, each the proxy then the direct path (each side "
          "reports its median over the rounds).");
ABSL_FLAG(bool, direct, true, "proxy: also measure a direct ucx put between the same nodes.");
ABSL_FLAG(std::string, daemon, "",
          "proxy: the tokenraild binary (default: found beside this one).");

namespace tokenrail {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Results (tables, JSON lines) are the only thing on stdout, so scripts can
// parse it: libraries that log to stdout (UCX does by default) are moved to
// stderr. Set once in main before any subcommand runs.
std::FILE* results = stdout;

std::FILE* ReserveStdoutForResults() {
  std::fflush(stdout);
  const int fd = ::dup(STDOUT_FILENO);
  if (fd < 0 || ::dup2(STDERR_FILENO, STDOUT_FILENO) < 0) return stdout;
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);  // peers we spawn print nothing there
  std::FILE* f = ::fdopen(fd, "w");
  return f != nullptr ? f : stdout;
}

int UsageError(absl::string_view message) {
  std::fprintf(stderr, "tokenrail-bench: %s\n", std::string(message).c_str());
  return kExitUsage;
}

int Failure(absl::string_view what, const absl::Status& s) {
  std::fprintf(stderr, "tokenrail-bench %s: %s\n", std::string(what).c_str(), s.ToString().c_str());
  return kExitFailure;
}

absl::StatusOr<std::pair<std::string, uint16_t>> ParseHostPort(absl::string_view flag,
                                                               absl::string_view text) {
  const size_t colon = text.rfind(':');
  uint32_t port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(text.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, "='", text, "': expected IP:PORT"));
  }
  return std::make_pair(std::string(text.substr(0, colon)), static_cast<uint16_t>(port));
}

absl::StatusOr<bench::TransportBenchOptions> TransportOptionsFromFlags() {
  bench::TransportBenchOptions o;
  o.backend = absl::GetFlag(FLAGS_backend);
  o.transports = absl::GetFlag(FLAGS_transports);
  TR_ASSIGN_OR_RETURN(o.params, bench::ParseParams(absl::GetFlag(FLAGS_params)));
  TR_ASSIGN_OR_RETURN(o.sizes, bench::ParseSizeList(absl::GetFlag(FLAGS_sizes)));
  TR_ASSIGN_OR_RETURN(o.modes, bench::ParseModes(absl::GetFlag(FLAGS_tests)));
  o.iters = absl::GetFlag(FLAGS_iters);
  o.min_iters = absl::GetFlag(FLAGS_min_iters);
  TR_ASSIGN_OR_RETURN(o.max_bytes, bench::ParseSize(absl::GetFlag(FLAGS_max_bytes)));
  o.warmup = absl::GetFlag(FLAGS_warmup);
  o.window = absl::GetFlag(FLAGS_window);
  TR_ASSIGN_OR_RETURN(o.slot_bytes, bench::ParseSize(absl::GetFlag(FLAGS_slot_bytes)));
  const std::string baseline = absl::GetFlag(FLAGS_baseline);
  if (baseline == "memcpy") {
    o.baseline = bench::Baseline::kMemcpy;
  } else if (baseline == "none") {
    o.baseline = bench::Baseline::kNone;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--baseline='", baseline, "': choose memcpy or none"));
  }
  o.timeout = absl::GetFlag(FLAGS_timeout);
  if (o.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--timeout must be positive");
  }
  o.corrupt_iteration = absl::GetFlag(FLAGS_corrupt_iteration);
  return o;
}

// Runs the leader or the follower over an established OOB channel.
int RunRole(bool lead, const bench::TransportBenchOptions& options, transport::OobChannel& oob,
            bench::Printer& printer) {
  if (lead) {
    absl::Status s = bench::RunTransportLeader(options, oob, printer);
    return s.ok() ? 0 : Failure("transport", s);
  }
  bench::FollowerOptions fo;
  fo.params = options.params;
  fo.timeout = options.timeout;
  absl::StatusOr<size_t> tests = bench::RunTransportFollower(fo, oob);
  if (!tests.ok()) return Failure("transport (follower)", tests.status());
  std::fprintf(stderr, "tokenrail-bench transport: follower ran %zu tests\n", *tests);
  return 0;
}

int RunTransport(const std::vector<char*>& args) {
  if (args.size() > 2) return UsageError(absl::StrCat("unexpected argument '", args[2], "'"));
  absl::StatusOr<bench::TransportBenchOptions> options = TransportOptionsFromFlags();
  if (!options.ok()) return UsageError(options.status().message());
  const std::string listen = absl::GetFlag(FLAGS_listen);
  const std::string connect = absl::GetFlag(FLAGS_connect);
  const std::string role = absl::GetFlag(FLAGS_role);
  if (!listen.empty() && !connect.empty()) {
    return UsageError("--listen and --connect are exclusive");
  }
  if (role != "auto" && role != "leader" && role != "follower") {
    return UsageError(absl::StrCat("--role='", role, "': choose leader, follower or auto"));
  }
  bench::Printer printer(bench::TransportTable(), absl::GetFlag(FLAGS_json), results);

  if (listen.empty() && connect.empty()) {
    if (role == "follower") return UsageError("a follower needs --listen or --connect");
    absl::StatusOr<std::string> self = bench::SelfExecutable();
    if (!self.ok()) return Failure("transport", self.status());
    // The peer is this binary in the follower role; its log lines are tagged.
    std::vector<std::string> peer = {
        *self, "transport", "--role=follower",
        absl::StrCat("--timeout=", absl::FormatDuration(options->timeout)), "--log_prefix=[peer] "};
    absl::Status s = bench::RunTransportLocal(*options, std::move(peer), printer);
    return s.ok() ? 0 : Failure("transport", s);
  }

  // Two hosts (or network namespaces): TCP OOB bootstrap between them.
  const bool lead = role == "leader" || (role == "auto" && !connect.empty());
  options->inter_node = true;
  const absl::Time deadline = absl::Now() + options->timeout;
  if (!listen.empty()) {
    absl::StatusOr<std::pair<std::string, uint16_t>> hp = ParseHostPort("listen", listen);
    if (!hp.ok()) return UsageError(hp.status().message());
    absl::StatusOr<transport::OobListener> listener =
        transport::OobListener::Listen(hp->first, hp->second);
    if (!listener.ok()) return Failure("transport", listener.status());
    std::fprintf(stderr, "tokenrail-bench transport: listening on %s:%u\n", hp->first.c_str(),
                 listener->port());
    absl::StatusOr<transport::OobChannel> oob = listener->Accept(deadline);
    if (!oob.ok()) return Failure("transport", oob.status());
    return RunRole(lead, *options, *oob, printer);
  }
  absl::StatusOr<std::pair<std::string, uint16_t>> hp = ParseHostPort("connect", connect);
  if (!hp.ok()) return UsageError(hp.status().message());
  absl::StatusOr<transport::OobChannel> oob =
      transport::OobChannel::Connect(hp->first, hp->second, deadline);
  if (!oob.ok()) return Failure("transport", oob.status());
  return RunRole(lead, *options, *oob, printer);
}

int RunProxy(const std::vector<char*>& args) {
  // This executable is also the benchmark cluster's rank program.
  if (args.size() == 3 && bench::IsProxyRankArgument(args[2])) {
    absl::Status s = bench::RunProxyRank(args[2]);
    return s.ok() ? 0 : Failure("proxy (rank)", s);
  }
  if (args.size() > 2) return UsageError(absl::StrCat("unexpected argument '", args[2], "'"));
  bench::ProxyBenchOptions o;
  absl::StatusOr<std::map<std::string, std::string>> params =
      bench::ParseParams(absl::GetFlag(FLAGS_params));
  absl::StatusOr<std::vector<uint64_t>> sizes = bench::ParseSizeList(absl::GetFlag(FLAGS_sizes));
  absl::StatusOr<uint64_t> max_bytes = bench::ParseSize(absl::GetFlag(FLAGS_max_bytes));
  for (const absl::Status& s : {params.status(), sizes.status(), max_bytes.status()}) {
    if (!s.ok()) return UsageError(s.message());
  }
  o.params = *params;
  o.sizes = *sizes;
  o.max_bytes = *max_bytes;
  o.iters = absl::GetFlag(FLAGS_iters);
  o.min_iters = absl::GetFlag(FLAGS_min_iters);
  o.warmup = absl::GetFlag(FLAGS_warmup);
  o.window = absl::GetFlag(FLAGS_window);
  o.ping_iters = absl::GetFlag(FLAGS_ping_iters);
  o.rounds = absl::GetFlag(FLAGS_rounds);
  absl::StatusOr<std::vector<bench::Mode>> modes = bench::ParseModes(absl::GetFlag(FLAGS_tests));
  if (!modes.ok()) return UsageError(modes.status().message());
  // bibw (in --tests' default) is the transport bench's alone.
  o.latency = std::find(modes->begin(), modes->end(), bench::Mode::kLatency) != modes->end();
  o.bandwidth = std::find(modes->begin(), modes->end(), bench::Mode::kBandwidth) != modes->end();
  o.direct = absl::GetFlag(FLAGS_direct);
  o.daemon_path = absl::GetFlag(FLAGS_daemon);
  o.timeout = absl::GetFlag(FLAGS_timeout);
  const std::string network = absl::GetFlag(FLAGS_network);
  if (network == "auto") {
    o.network = bench::ProxyNetwork::kAuto;
  } else if (network == "netns") {
    o.network = bench::ProxyNetwork::kNetns;
  } else if (network == "loopback") {
    o.network = bench::ProxyNetwork::kLoopback;
  } else {
    return UsageError(absl::StrCat("--network='", network, "': choose auto, netns or loopback"));
  }
  absl::StatusOr<std::string> self = bench::SelfExecutable();
  if (!self.ok()) return Failure("proxy", self.status());
  bench::Printer printer(bench::ProxyTable(), absl::GetFlag(FLAGS_json), results);
  absl::Status s = bench::RunProxyBench(o, {*self, "proxy"}, printer);
  return s.ok() ? 0 : Failure("proxy", s);
}

int RunBarrier(const std::vector<char*>& args) {
  if (args.size() > 2) return UsageError(absl::StrCat("unexpected argument '", args[2], "'"));
  bench::BarrierBenchOptions o;
  o.participants = absl::GetFlag(FLAGS_participants);
  o.rounds = absl::GetFlag(FLAGS_iters);
  o.warmup = absl::GetFlag(FLAGS_warmup);
  o.timeout = absl::GetFlag(FLAGS_timeout);
  if (absl::Status s = o.Validate(); !s.ok()) return UsageError(s.message());
  absl::StatusOr<bench::BarrierBenchResult> r = bench::RunBarrierBench(o);
  if (!r.ok()) return Failure("barrier", r.status());
  bench::Printer p(bench::BarrierTable(), absl::GetFlag(FLAGS_json), results);
  p.Section("barrier: coordinator allgather, in-process, loopback");
  for (const bench::Record& rec : bench::BarrierRecords(*r)) p.Row(rec);
  return 0;
}

int RunEp(const std::vector<char*>& args) {
  namespace eb = bench::ep_bench;
  // This executable is also the benchmark cluster's rank program.
  if (args.size() == 3 && eb::IsEpRankArgument(args[2])) {
    absl::Status s = eb::RunEpRank(args[2]);
    return s.ok() ? 0 : Failure("ep (rank)", s);
  }
  if (args.size() > 2) return UsageError(absl::StrCat("unexpected argument '", args[2], "'"));
  absl::StatusOr<eb::EpBenchOptions> o = eb::EpBenchOptionsFromFlags(
      absl::GetFlag(FLAGS_json), absl::GetFlag(FLAGS_params), absl::GetFlag(FLAGS_timeout));
  if (!o.ok()) return UsageError(o.status().message());
  absl::StatusOr<std::string> self = bench::SelfExecutable();
  if (!self.ok()) return Failure("ep", self.status());
  absl::Status s = eb::RunEpBench(*o, {*self, "ep"}, results);
  return s.ok() ? 0 : Failure("ep", s);
}

int RunInfo(const std::vector<char*>& args) {
  if (args.size() > 2) return UsageError(absl::StrCat("unexpected argument '", args[2], "'"));
  absl::StatusOr<std::map<std::string, std::string>> params =
      bench::ParseParams(absl::GetFlag(FLAGS_params));
  if (!params.ok()) return UsageError(params.status().message());
  transport::TransportOptions options;
  options.name = "bench-info";
  options.params = *params;
  const std::string backend = absl::GetFlag(FLAGS_backend);
  const std::string filter = backend.empty() ? absl::GetFlag(FLAGS_transports) : backend;
  absl::StatusOr<std::vector<bench::BackendInfo>> info = bench::CollectBackendInfo(filter, options);
  if (!info.ok()) return Failure("info", info.status());
  if (absl::GetFlag(FLAGS_json)) {
    for (const bench::BackendInfo& b : *info) {
      std::fprintf(results, "%s\n", bench::FormatInfoJson(b).c_str());
    }
  } else {
    std::fputs(bench::FormatInfoText(*info).c_str(), results);
  }
  return 0;
}

struct Subcommand {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<char*>& args);
};

constexpr Subcommand kSubcommands[] = {
    {"transport", "point-to-point put latency and bandwidth between two processes or hosts",
     &RunTransport},
    {"proxy",
     "proxy puts (rank -> daemon -> daemon -> rank) vs direct transport puts, on a launched "
     "2-node cluster",
     &RunProxy},
    {"barrier", "coordinator barrier latency with N simulated daemons (in-process, loopback)",
     &RunBarrier},
    {"ep",
     "expert-parallel dispatch/combine on launched clusters vs MPI_Alltoallv and flat routing",
     &RunEp},
    {"info", "registered transport backends, their capabilities, devices and params", &RunInfo},
};

std::string Usage() {
  std::string usage = "tokenrail-bench <subcommand> [flags]\n\nsubcommands:\n";
  for (const Subcommand& c : kSubcommands) {
    absl::StrAppendFormat(&usage, "  %-10s %s\n", c.name, c.summary);
  }
  absl::StrAppend(&usage, "\nRun with --helpfull for every flag.");
  return usage;
}

}  // namespace
}  // namespace tokenrail

int main(int argc, char** argv) {
  // --help lists this file's flags (abseil matches files named after the
  // program, which is spelled with a dash here).
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "tools/tokenrail_bench.cc") ||
           absl::EndsWith(file, "tools/bench/ep/ep_flags.cc") ||
           absl::EndsWith(file, "common/init.cc");
  };
  absl::SetFlagsUsageConfig(config);
  static const std::string usage = tokenrail::Usage();
  std::vector<char*> args = tokenrail::InitMain(argc, argv, usage.c_str());
  if (args.size() < 2) {
    std::fprintf(stderr, "usage: %s\n", usage.c_str());
    return tokenrail::kExitUsage;
  }
  for (const tokenrail::Subcommand& c : tokenrail::kSubcommands) {
    if (absl::string_view(args[1]) != c.name) continue;
    tokenrail::results = tokenrail::ReserveStdoutForResults();
    const int code = c.run(args);
    std::fflush(tokenrail::results);
    return code;
  }
  std::fprintf(stderr, "tokenrail-bench: unknown subcommand '%s'\n\nusage: %s\n", args[1],
               usage.c_str());
  return tokenrail::kExitUsage;
}
