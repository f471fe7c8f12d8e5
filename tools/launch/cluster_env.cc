#include "tools/launch/cluster_env.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/bytes.h"
#include "common/status.h"
#include "tools/launch/subprocess.h"

namespace tokenrail {
namespace launch {
namespace {

class EnvReader {
 public:
  explicit EnvReader(const std::vector<std::string>& env) : env_(env) {}
  bool Has(absl::string_view name) const { return !GetEnv(env_, name).empty(); }
  std::string Get(absl::string_view name) const { return GetEnv(env_, name); }
  // A required integer in [min, max].
  absl::StatusOr<int> Int(absl::string_view name, int min, int max) const {
    const std::string v = Get(name);
    if (v.empty()) return absl::InvalidArgumentError(absl::StrCat(name, " is not set"));
    int out = 0;
    if (!absl::SimpleAtoi(v, &out) || out < min || out > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, "='", v, "' is not an integer in ", min, "..", max));
    }
    return out;
  }
  // An optional integer; `fallback` when unset.
  absl::StatusOr<int> IntOr(absl::string_view name, int fallback, int min, int max) const {
    if (!Has(name)) return fallback;
    return Int(name, min, max);
  }

 private:
  const std::vector<std::string>& env_;
};

absl::Status ParseHostPort(absl::string_view text, absl::string_view what, std::string* host,
                           int* port) {
  const size_t colon = text.rfind(':');
  int p = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(text.substr(colon + 1), &p) || p < 1 || p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "='", text, "' is not HOST:PORT with a port in 1..65535"));
  }
  *host = std::string(text.substr(0, colon));
  *port = p;
  return absl::OkStatus();
}

// Slurm's per-node task count: SLURM_NTASKS_PER_NODE, else a uniform
// SLURM_TASKS_PER_NODE ("4(x2)" or "4"). Heterogeneous layouts are refused:
// every node must run the same number of ranks.
absl::StatusOr<int> SlurmTasksPerNode(const EnvReader& env) {
  if (env.Has("SLURM_NTASKS_PER_NODE")) return env.Int("SLURM_NTASKS_PER_NODE", 1, 255);
  const std::string v = env.Get("SLURM_TASKS_PER_NODE");
  if (v.empty()) return 1;
  int count = 0;
  for (absl::string_view item : absl::StrSplit(v, ',')) {
    const absl::string_view n = item.substr(0, item.find('('));
    int c = 0;
    if (!absl::SimpleAtoi(n, &c) || c < 1 || (count != 0 && c != count)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SLURM_TASKS_PER_NODE='", v, "': every node must run the same number of tasks"));
    }
    count = c;
  }
  return count;
}

absl::Status ResolveSlurm(const EnvReader& env, const ClusterFlags& flags, ClusterPlacement* p) {
  p->kind = ClusterKind::kSlurm;
  TR_ASSIGN_OR_RETURN(p->nodes, env.Int("SLURM_NNODES", 1, 1 << 20));
  TR_ASSIGN_OR_RETURN(p->node_id, env.Int("SLURM_NODEID", 0, p->nodes - 1));
  TR_ASSIGN_OR_RETURN(p->launchers_per_node, SlurmTasksPerNode(env));
  TR_ASSIGN_OR_RETURN(p->local_index, env.IntOr("SLURM_LOCALID", 0, 0, p->launchers_per_node - 1));
  const std::string job = env.Get("SLURM_JOB_ID");
  if (job.empty()) return absl::InvalidArgumentError("SLURM_JOB_ID is not set");
  if (flags.coordinator.empty()) {
    const std::string list =
        env.Has("SLURM_JOB_NODELIST") ? env.Get("SLURM_JOB_NODELIST") : env.Get("SLURM_NODELIST");
    if (list.empty()) {
      return absl::InvalidArgumentError(
          "neither --coordinator nor SLURM_JOB_NODELIST/SLURM_NODELIST is set");
    }
    TR_ASSIGN_OR_RETURN(p->coordinator_host, FirstSlurmHost(list));
    p->coordinator_port = SlurmDefaultPort(job);
  }
  std::string id = absl::StrCat("slurm-", job);
  if (env.Has("SLURM_STEP_ID")) absl::StrAppend(&id, "-", env.Get("SLURM_STEP_ID"));
  p->job_id = SanitizeJobId(id);
  return absl::OkStatus();
}

absl::Status ResolveTorchrun(const EnvReader& env, const ClusterFlags& flags, ClusterPlacement* p) {
  p->kind = ClusterKind::kTorchrun;
  TR_ASSIGN_OR_RETURN(const int world, env.Int("WORLD_SIZE", 1, 1 << 24));
  TR_ASSIGN_OR_RETURN(const int rank, env.Int("RANK", 0, world - 1));
  TR_ASSIGN_OR_RETURN(p->launchers_per_node, env.IntOr("LOCAL_WORLD_SIZE", 1, 1, 255));
  if (world % p->launchers_per_node != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WORLD_SIZE=", world, " is not a multiple of LOCAL_WORLD_SIZE=", p->launchers_per_node));
  }
  p->nodes = world / p->launchers_per_node;
  TR_ASSIGN_OR_RETURN(p->local_index, env.IntOr("LOCAL_RANK", rank % p->launchers_per_node, 0,
                                                p->launchers_per_node - 1));
  // torchrun numbers ranks node-major; GROUP_RANK, when set, is the node.
  TR_ASSIGN_OR_RETURN(p->node_id,
                      env.IntOr("GROUP_RANK", rank / p->launchers_per_node, 0, p->nodes - 1));
  if (p->node_id * p->launchers_per_node + p->local_index != rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RANK=", rank, " does not match node ", p->node_id, " x LOCAL_WORLD_SIZE=",
        p->launchers_per_node, " + LOCAL_RANK=", p->local_index, " (ranks must be node-major)"));
  }
  if (flags.coordinator.empty()) {
    if (!env.Has("MASTER_ADDR") || !env.Has("MASTER_PORT")) {
      return absl::InvalidArgumentError("neither --coordinator nor MASTER_ADDR/MASTER_PORT is set");
    }
    p->coordinator_host = env.Get("MASTER_ADDR");
    TR_ASSIGN_OR_RETURN(p->coordinator_port, env.Int("MASTER_PORT", 1, 65535));
  }
  // Same on every instance: the rendezvous id, else the master endpoint.
  std::string id = env.Get("TORCHELASTIC_RUN_ID");
  if (id.empty() || id == "none") {
    const std::string endpoint = flags.coordinator.empty()
                                     ? absl::StrCat(p->coordinator_host, ":", p->coordinator_port)
                                     : flags.coordinator;
    id = absl::StrCat(absl::Hex(Crc32c(endpoint), absl::kZeroPad8));
  }
  p->job_id = SanitizeJobId(absl::StrCat("torch-", id));
  return absl::OkStatus();
}

}  // namespace

std::string ClusterPlacement::Describe() const {
  const char* kind_name = kind == ClusterKind::kSlurm      ? "slurm"
                          : kind == ClusterKind::kTorchrun ? "torchrun"
                                                           : "local";
  return absl::StrCat(kind_name, ": node ", node_id, " of ", nodes, ", ", ranks_per_node,
                      " ranks per node, ",
                      per_rank() ? absl::StrCat("launcher ", local_index, " of ",
                                                launchers_per_node, " on this node (one rank each)")
                                 : "one launcher per node",
                      ", coordinator ", coordinator_host, ":", coordinator_port, ", job ", job_id);
}

absl::StatusOr<std::string> FirstSlurmHost(absl::string_view hostlist) {
  // The first item ends at a comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < hostlist.size(); ++end) {
    if (hostlist[end] == '[') ++depth;
    if (hostlist[end] == ']') --depth;
    if (hostlist[end] == ',' && depth == 0) break;
  }
  const absl::string_view item = hostlist.substr(0, end);
  const size_t open = item.find('[');
  if (open == absl::string_view::npos) {
    if (item.empty()) return absl::InvalidArgumentError("empty Slurm hostlist");
    return std::string(item);
  }
  const size_t close = item.find(']', open);
  if (close == absl::string_view::npos || close == open + 1) {
    return absl::InvalidArgumentError(absl::StrCat("malformed Slurm hostlist '", hostlist, "'"));
  }
  // "03-05,9" -> "03" (zero padding kept, as Slurm prints it).
  absl::string_view range = item.substr(open + 1, close - open - 1);
  range = range.substr(0, range.find_first_of(",-"));
  if (range.empty() || !std::all_of(range.begin(), range.end(), absl::ascii_isdigit)) {
    return absl::InvalidArgumentError(absl::StrCat("malformed Slurm hostlist '", hostlist, "'"));
  }
  return absl::StrCat(item.substr(0, open), range, item.substr(close + 1));
}

std::string SanitizeJobId(absl::string_view raw) {
  std::string out;
  for (char c : raw) {
    if (out.size() == 64) break;
    c = absl::ascii_tolower(static_cast<unsigned char>(c));
    out.push_back((absl::ascii_isdigit(c) || (c >= 'a' && c <= 'z') || c == '-') ? c : '-');
  }
  return out;
}

int SlurmDefaultPort(absl::string_view slurm_job_id) {
  return 20000 + static_cast<int>(Crc32c(slurm_job_id) % 10000);
}

absl::StatusOr<ClusterPlacement> ResolveCluster(const std::vector<std::string>& env_list,
                                                const ClusterFlags& flags) {
  const EnvReader env(env_list);
  ClusterPlacement p;
  std::string kind = flags.cluster;
  if (kind == "auto") {
    if (env.Has("SLURM_JOB_ID") && env.Has("SLURM_NODEID") && env.Has("SLURM_NNODES")) {
      kind = "slurm";
    } else if (env.Has("WORLD_SIZE") && env.Has("RANK") && env.Has("MASTER_ADDR")) {
      kind = "torchrun";
    } else {
      kind = "none";
    }
  }
  if (kind == "none") {
    p.nodes = flags.nodes > 0 ? flags.nodes : 1;
    p.ranks_per_node = flags.ranks_per_node > 0 ? flags.ranks_per_node : 1;
    p.job_id = flags.job_id;
    return p;
  }
  if (kind == "slurm") {
    TR_RETURN_IF_ERROR(Annotate(ResolveSlurm(env, flags, &p), "--cluster=slurm"));
  } else if (kind == "torchrun") {
    TR_RETURN_IF_ERROR(Annotate(ResolveTorchrun(env, flags, &p), "--cluster=torchrun"));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--cluster='", flags.cluster, "': expected none, auto, slurm or torchrun"));
  }
  if (!flags.coordinator.empty()) {
    TR_RETURN_IF_ERROR(ParseHostPort(flags.coordinator, "--coordinator", &p.coordinator_host,
                                     &p.coordinator_port));
  }
  if (flags.nodes > 0 && flags.nodes != p.nodes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nodes=", flags.nodes, " disagrees with the scheduler's ", p.nodes, " nodes"));
  }
  if (p.per_rank()) {
    p.ranks_per_node = p.launchers_per_node;
    if (flags.ranks_per_node > 0 && flags.ranks_per_node != p.ranks_per_node) {
      return absl::InvalidArgumentError(absl::StrCat("--ranks-per-node=", flags.ranks_per_node,
                                                     " disagrees with the ", p.launchers_per_node,
                                                     " launcher tasks per node (one rank each)"));
    }
  } else {
    if (flags.ranks_per_node <= 0) {
      return absl::InvalidArgumentError(
          "one launcher per node: --ranks-per-node says how many ranks each node runs");
    }
    p.ranks_per_node = flags.ranks_per_node;
  }
  if (!flags.job_id.empty()) p.job_id = flags.job_id;
  return p;
}

}  // namespace launch
}  // namespace tokenrail
