// tokenrail-launch: start a tokenrail job's daemons and ranks and supervise
// them. See launcher.h for the behaviour and cluster_env.h for cluster mode.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/init.h"
#include "common/rpc/client_flags.h"
#include "tools/launch/cluster_env.h"
#include "tools/launch/launcher.h"
#include "tools/launch/output.h"
#include "tools/launch/subprocess.h"

ABSL_FLAG(int, nodes, 0, "Nodes (daemons) in the job. Local mode: default 1.");
ABSL_FLAG(int, ranks_per_node, 0, "Rank processes per node. Local mode: default 1.");
ABSL_FLAG(bool, netns, false,
          "Run each node in its own network namespace joined by veth pairs to a bridge, with "
          "UCX restricted to TCP between nodes (local mode; needs root).");
ABSL_FLAG(int, experts, 0, "Routed experts in the job spec (default: world size).");
ABSL_FLAG(int, top_k, 1, "Experts per token in the job spec.");
ABSL_FLAG(int, max_nodes_per_token, 0, "Node-limited routing bound (default: nodes).");
ABSL_FLAG(std::string, job_name, "", "Job name (default: the command's base name).");
ABSL_FLAG(std::string, job_id, "",
          "Job id, [a-z0-9-]{1,64} (default: generated; in cluster mode derived from the "
          "scheduler's job).");
ABSL_FLAG(std::string, daemon, "",
          "Path of tokenraild (default: next to this binary, in its Bazel runfiles, or PATH).");
ABSL_FLAG(std::string, transports, "", "Inter-node transport filter for tokenraild (e.g. ucx).");
ABSL_FLAG(std::string, transport_params, "",
          "Transport parameters k=v,... for tokenraild (--netns adds tls=tcp).");
ABSL_FLAG(std::string, arena_bytes, "",
          "Shared arena per node, e.g. 256M (default: tokenraild's).");
ABSL_FLAG(int, heartbeat_interval_ms, 0, "Daemon heartbeat interval (default: tokenraild's).");
ABSL_FLAG(int, heartbeat_timeout_ms, 0,
          "Silence after which a daemon is declared dead (default: tokenraild's).");
ABSL_FLAG(std::string, daemon_flagfile, "", "A --flagfile passed to every tokenraild.");
ABSL_FLAG(std::string, bind_host, "",
          "Address daemons bind (default: 127.0.0.1; the node's address with --netns; 0.0.0.0 in "
          "cluster mode).");
ABSL_FLAG(std::string, coordinator_listen, "",
          "Cluster mode: where node 0's coordinator binds (default 0.0.0.0:<coordinator port>).");
ABSL_FLAG(std::string, cluster, "none",
          "none: the whole cluster on this machine. slurm / torchrun: this launcher runs one "
          "node's share, placed by SLURM_* or RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE/"
          "MASTER_ADDR/MASTER_PORT. auto: whichever is present.");
ABSL_FLAG(bool, no_auth, false, "Cluster mode without a token (trusted networks only).");
ABSL_FLAG(double, timeout, 0, "Fail the job after this many seconds (0: no limit).");
ABSL_FLAG(double, startup_timeout, 60, "Seconds a daemon may take to become ready.");
ABSL_FLAG(double, failure_grace, 10,
          "After a failure, seconds the other ranks get to observe it and exit on their own.");
ABSL_FLAG(double, kill_grace, 5, "Seconds between SIGTERM and SIGKILL when tearing down.");
ABSL_FLAG(double, stop_timeout, 20, "Seconds daemons get to drain and exit after success.");
ABSL_FLAG(std::string, run_dir_parent, "", "Where the private run directory goes (default /tmp).");
ABSL_FLAG(bool, verbose, false, "Announce every started process with its pid and command.");

namespace tokenrail {
namespace launch {
namespace {

constexpr char kUsage[] =
    "tokenrail-launch [flags] -- COMMAND [ARGS...]\n"
    "  Runs a tokenrail job: one tokenraild per node (node 0's hosts the coordinator) and\n"
    "  COMMAND once per rank, with TOKENRAIL_SOCKET, TOKENRAIL_LOCAL_RANK, TOKENRAIL_NODE_ID,\n"
    "  TOKENRAIL_JOB_ID, RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE set.\n"
    "  Example: tokenrail-launch --nodes 2 --ranks-per-node 2 --netns -- ./my_rank\n"
    "  Flag names accept dashes or underscores (--ranks-per-node = --ranks_per_node).";

// abseil flag names use underscores; the documented spelling uses dashes.
// Only flag names before "--" are rewritten: the command stays untouched.
std::vector<char*> NormalizeFlagNames(int argc, char** argv, std::vector<std::string>* storage) {
  storage->reserve(argc);
  std::vector<char*> out;
  bool in_command = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (!in_command && arg == "--") {
      in_command = true;
    } else if (!in_command && i > 0 && arg.size() > 2 && arg[0] == '-' && arg[1] == '-') {
      const size_t end = std::min(arg.find('='), arg.size());
      for (size_t k = 2; k < end; ++k) {
        if (arg[k] == '-') arg[k] = '_';
      }
    }
    storage->push_back(std::move(arg));
    out.push_back(storage->back().data());
  }
  return out;
}

absl::StatusOr<uint64_t> ParseBytes(absl::string_view text) {
  std::string t = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  uint64_t mult = 1;
  if (absl::EndsWith(t, "IB")) t.resize(t.size() - 2);
  if (!t.empty() && (t.back() == 'K' || t.back() == 'M' || t.back() == 'G')) {
    mult = t.back() == 'K' ? 1ull << 10 : t.back() == 'M' ? 1ull << 20 : 1ull << 30;
    t.pop_back();
  }
  uint64_t v = 0;
  if (!absl::SimpleAtoi(t, &v) || v == 0 || v > (1ull << 44) / mult) {
    return absl::InvalidArgumentError(absl::StrCat("--arena_bytes='", text, "' is not a size"));
  }
  return v * mult;
}

absl::Duration SecondsFlag(double s) { return absl::Milliseconds(static_cast<int64_t>(s * 1000)); }

int Main(int argc, char** argv) {
  std::vector<std::string> storage;
  std::vector<char*> normalized = NormalizeFlagNames(argc, argv, &storage);
  std::vector<char*> positional =
      InitMain(static_cast<int>(normalized.size()), normalized.data(), kUsage);

  PrefixingSink sink(STDOUT_FILENO, STDERR_FILENO);
  auto usage_error = [&sink](const absl::Status& s) {
    sink.Line("launch", Stream::kStderr, absl::StrCat("error: ", s.message()));
    return kExitUsage;
  };

  LaunchOptions o;
  o.command.assign(positional.begin() + 1, positional.end());
  ClusterFlags cf;
  cf.cluster = absl::GetFlag(FLAGS_cluster);
  cf.coordinator = absl::GetFlag(FLAGS_coordinator);
  cf.nodes = absl::GetFlag(FLAGS_nodes);
  cf.ranks_per_node = absl::GetFlag(FLAGS_ranks_per_node);
  cf.job_id = absl::GetFlag(FLAGS_job_id);
  absl::StatusOr<ClusterPlacement> placement = ResolveCluster(CurrentEnvironment(), cf);
  if (!placement.ok()) return usage_error(placement.status());
  o.placement = *placement;

  o.netns = absl::GetFlag(FLAGS_netns);
  o.job_name = absl::GetFlag(FLAGS_job_name);
  o.experts = absl::GetFlag(FLAGS_experts);
  o.top_k = absl::GetFlag(FLAGS_top_k);
  o.max_nodes_per_token = absl::GetFlag(FLAGS_max_nodes_per_token);
  o.daemon_path = absl::GetFlag(FLAGS_daemon);
  if (o.daemon_path.empty()) o.daemon_path = FindTokenraild();
  o.transports = absl::GetFlag(FLAGS_transports);
  o.transport_params = absl::GetFlag(FLAGS_transport_params);
  if (!absl::GetFlag(FLAGS_arena_bytes).empty()) {
    absl::StatusOr<uint64_t> bytes = ParseBytes(absl::GetFlag(FLAGS_arena_bytes));
    if (!bytes.ok()) return usage_error(bytes.status());
    o.arena_bytes = *bytes;
  }
  o.heartbeat_interval_ms = absl::GetFlag(FLAGS_heartbeat_interval_ms);
  o.heartbeat_timeout_ms = absl::GetFlag(FLAGS_heartbeat_timeout_ms);
  if (!absl::GetFlag(FLAGS_daemon_flagfile).empty()) {
    o.daemon_flags.push_back(absl::StrCat("--flagfile=", absl::GetFlag(FLAGS_daemon_flagfile)));
  }
  o.bind_host = absl::GetFlag(FLAGS_bind_host);
  o.coordinator_listen = absl::GetFlag(FLAGS_coordinator_listen);
  o.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  o.no_auth = absl::GetFlag(FLAGS_no_auth);
  o.client.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  if (!o.client.tls_ca_file.empty()) {
    o.daemon_flags.push_back(absl::StrCat("--tls_ca=", o.client.tls_ca_file));
  }
  o.timeout = SecondsFlag(absl::GetFlag(FLAGS_timeout));
  o.startup_timeout = SecondsFlag(absl::GetFlag(FLAGS_startup_timeout));
  o.failure_grace = SecondsFlag(absl::GetFlag(FLAGS_failure_grace));
  o.kill_grace = SecondsFlag(absl::GetFlag(FLAGS_kill_grace));
  o.stop_timeout = SecondsFlag(absl::GetFlag(FLAGS_stop_timeout));
  o.run_dir_parent = absl::GetFlag(FLAGS_run_dir_parent);
  o.verbose = absl::GetFlag(FLAGS_verbose);
  if (absl::Status s = ValidateOptions(o); !s.ok()) return usage_error(s);

  Launcher launcher(std::move(o), &sink);
  return launcher.Run();
}

}  // namespace
}  // namespace launch
}  // namespace tokenrail

int main(int argc, char** argv) { return tokenrail::launch::Main(argc, argv); }
