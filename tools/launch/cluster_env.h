// Where this launcher instance sits in a multi-host job, from the variables
// a cluster scheduler sets: Slurm (srun) or torchrun-style (torchrun,
// Kubeflow PyTorchJob, any launcher exporting RANK/WORLD_SIZE/MASTER_ADDR).
//
// Two shapes, chosen by how many launcher instances run per node (P):
//  - per node (P = 1): one launcher per node starts the node's daemon and
//    its R = --ranks-per-node ranks. Slurm: `srun --ntasks-per-node=1`;
//    torchrun-style: RANK/WORLD_SIZE count nodes (as a PyTorchJob sets them
//    per pod).
//  - per rank (P > 1): the scheduler starts one launcher per rank
//    (`srun --ntasks-per-node=R`, or torchrun's workers with
//    LOCAL_WORLD_SIZE = R). The instance with local index 0 also starts the
//    node's daemon; every instance runs one rank, local rank = its index.
// Node 0's daemon (started by node 0's index-0 instance) hosts the
// coordinator at the coordinator address, and that instance creates the job.
// Everyone derives the same job id from the scheduler's job identity.
//
// Thread safety: pure functions of their inputs.
#ifndef TOKENRAIL_TOOLS_LAUNCH_CLUSTER_ENV_H_
#define TOKENRAIL_TOOLS_LAUNCH_CLUSTER_ENV_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace launch {

enum class ClusterKind { kLocal, kSlurm, kTorchrun };

// Explicit settings that override (and are checked against) the environment.
struct ClusterFlags {
  std::string cluster = "none";  // none | auto | slurm | torchrun
  std::string coordinator;       // HOST:PORT; overrides MASTER_ADDR/MASTER_PORT
  int ranks_per_node = 0;        // --ranks-per-node; 0: not given
  int nodes = 0;                 // --nodes; 0: not given
  std::string job_id;            // --job_id; empty: derived
};

struct ClusterPlacement {
  ClusterKind kind = ClusterKind::kLocal;
  int node_id = 0;
  int nodes = 1;
  int ranks_per_node = 1;
  // Launcher instances per node and this one's index among them.
  int launchers_per_node = 1;
  int local_index = 0;
  std::string coordinator_host;
  int coordinator_port = 0;
  std::string job_id;

  bool per_rank() const { return launchers_per_node > 1; }
  // This instance starts the node's daemon.
  bool starts_daemon() const { return local_index == 0; }
  // This instance's daemon hosts the coordinator and it creates the job.
  bool hosts_coordinator() const { return node_id == 0 && local_index == 0; }
  std::string Describe() const;
};

// Resolves the placement from `env` ("NAME=value" entries) and `flags`.
// kLocal when flags.cluster is "none" (or "auto" finds no scheduler).
// InvalidArgument naming the variable or flag when values are missing,
// malformed or inconsistent (e.g. WORLD_SIZE not a multiple of
// LOCAL_WORLD_SIZE, --nodes disagreeing with SLURM_NNODES).
absl::StatusOr<ClusterPlacement> ResolveCluster(const std::vector<std::string>& env,
                                                const ClusterFlags& flags);

// First host of a Slurm hostlist: "gpu[03-05,9],cpu1" -> "gpu03".
absl::StatusOr<std::string> FirstSlurmHost(absl::string_view hostlist);

// Lowercases and maps every character outside [a-z0-9-] to '-', keeping at
// most 64 characters: a valid job id.
std::string SanitizeJobId(absl::string_view raw);

// Default coordinator port for a Slurm job without --coordinator: derived
// from the job id, in 20000..29999, so every node computes the same one.
int SlurmDefaultPort(absl::string_view slurm_job_id);

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_CLUSTER_ENV_H_
