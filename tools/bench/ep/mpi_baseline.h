// Orchestrator side of the MPI_Alltoallv baseline: runs the plan's MPI cases
// under mpirun (Debian's OpenMPI) on this machine and returns every rank's
// record.
//
// Command (root needs --allow-run-as-root; 4 processes on 2 cores need
// --oversubscribe; binding is left to the OS like the tokenrail ranks'):
//   mpirun [--allow-run-as-root] --oversubscribe -np W --bind-to none
//          --mca pml ob1 --mca btl vader,self  ep_mpi_rank ep-plan:...
// pml ob1 + btl vader pins OpenMPI to its shared-memory transport (single
// copy through CMA), the same medium as tokenrail's intra-node path.
// OpenMPI's own output goes to stderr, prefixed "[mpi] ".
//
// Blocking; run from the thread that owns the process (it forks).
#ifndef TOKENRAIL_TOOLS_BENCH_EP_MPI_BASELINE_H_
#define TOKENRAIL_TOOLS_BENCH_EP_MPI_BASELINE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

struct MpiRunOptions {
  std::string mpirun;     // empty: "mpirun" from PATH
  std::string rank_path;  // ep_mpi_rank; empty: launch::FindProgram's
  absl::Duration timeout = absl::Minutes(10);
};

// The mpirun command line for `plan` (exposed for tests and the report).
std::vector<std::string> MpiCommand(const EpPlan& plan, const std::string& mpirun,
                                    const std::string& rank_path);

// Runs it; the records the ranks printed ("TR_EP_ROW {json}"), in rank
// order per case. Unavailable when mpirun or ep_mpi_rank is missing,
// Internal naming the exit status when mpirun fails, DeadlineExceeded after
// the timeout (the job is killed).
absl::StatusOr<std::vector<Record>> RunMpiBaseline(const EpPlan& plan,
                                                   const MpiRunOptions& options);

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_MPI_BASELINE_H_
