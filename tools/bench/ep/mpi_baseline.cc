#include "tools/bench/ep/mpi_baseline.h"

#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "tools/launch/launcher.h"
#include "tools/launch/output.h"
#include "tools/launch/run_dir.h"
#include "tools/launch/subprocess.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

// Collects result lines; forwards everything else to stderr, prefixed.
class MpiSink : public launch::OutputSink {
 public:
  MpiSink() : forward_(STDERR_FILENO, STDERR_FILENO) {}
  void Line(absl::string_view label, launch::Stream stream, absl::string_view line) override {
    if (stream == launch::Stream::kStdout) {
      absl::StatusOr<std::optional<Record>> r = Record::ParseTagged(kRowTag, line);
      if (!r.ok()) {
        if (error_.ok()) error_ = Annotate(r.status(), "an MPI rank's result line");
        return;
      }
      if (r->has_value()) {
        records_.push_back(std::move(**r));
        return;
      }
    }
    forward_.Line(label, launch::Stream::kStderr, line);
  }
  std::vector<Record>& records() { return records_; }
  const absl::Status& error() const { return error_; }

 private:
  launch::PrefixingSink forward_;
  std::vector<Record> records_;
  absl::Status error_;
};

}  // namespace

std::vector<std::string> MpiCommand(const EpPlan& plan, const std::string& mpirun,
                                    const std::string& rank_path) {
  std::vector<std::string> argv = {mpirun};
  if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
  for (const char* a : {"--oversubscribe", "-np"}) argv.push_back(a);
  argv.push_back(absl::StrCat(plan.workload.topology.world_size()));
  for (const char* a : {"--bind-to", "none", "--mca", "pml", "ob1", "--mca", "btl", "vader,self"}) {
    argv.push_back(a);
  }
  argv.push_back(rank_path);
  argv.push_back(EncodePlan(plan));
  return argv;
}

absl::StatusOr<std::vector<Record>> RunMpiBaseline(const EpPlan& plan,
                                                   const MpiRunOptions& options) {
  TR_RETURN_IF_ERROR(Validate(plan));
  const std::vector<std::string> env = launch::CurrentEnvironment();
  std::string mpirun = options.mpirun.empty() ? "mpirun" : options.mpirun;
  absl::StatusOr<std::string> resolved =
      launch::ResolveProgram(mpirun, launch::GetEnv(env, "PATH"));
  if (!resolved.ok()) {
    return absl::UnavailableError(
        absl::StrCat("the MPI baseline needs mpirun (Debian package openmpi-bin): ",
                     resolved.status().message()));
  }
  // OpenMPI derives an installation prefix from the directory mpirun was
  // started from: through the merged-/usr symlink /bin that prefix is "/",
  // which it refuses. The canonical path gives /usr.
  char real[PATH_MAX];
  if (::realpath(resolved->c_str(), real) != nullptr) *resolved = real;
  const std::string rank = options.rank_path.empty()
                               ? launch::FindProgram("ep_mpi_rank", "tools/bench/ep/ep_mpi_rank")
                               : options.rank_path;
  if (rank.empty() || ::access(rank.c_str(), X_OK) != 0) {
    return absl::UnavailableError(
        absl::StrCat("the MPI baseline's rank program ep_mpi_rank was not found (looked for '",
                     rank, "'; build //tools/bench/ep:ep_mpi_rank)"));
  }
  // A private directory (in /dev/shm: memory, like OpenMPI's default) for
  // OpenMPI's session directory and vader's shared-memory segments. Their
  // names derive from mpirun's pid, and in PID namespaces (Bazel's sandbox)
  // concurrent mpiruns have the same pids: sharing /tmp and /dev/shm they
  // failed MPI_Init ("No permission"), crashed in vader or hung. Removed
  // when this returns.
  TR_ASSIGN_OR_RETURN(std::unique_ptr<launch::RunDir> tmp, launch::RunDir::Create("/dev/shm"));
  launch::SpawnOptions so;
  so.argv = MpiCommand(plan, *resolved, rank);
  so.env = env;
  launch::SetEnv(&so.env, "TMPDIR", tmp->path());
  launch::SetEnv(&so.env, "OMPI_MCA_btl_vader_backing_directory", tmp->path());
  TR_ASSIGN_OR_RETURN(std::unique_ptr<launch::Subprocess> proc, launch::Subprocess::Spawn(so));

  MpiSink sink;
  launch::LineSplitter out("mpi", launch::Stream::kStdout, &sink);
  launch::LineSplitter err("mpi", launch::Stream::kStderr, &sink);
  const absl::Time deadline = absl::Now() + options.timeout;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    if (absl::Now() > deadline) {
      proc->Signal(SIGKILL);
      proc->WaitUntil(absl::Now() + absl::Seconds(5));
      return absl::DeadlineExceededError(absl::StrCat(
          "the MPI baseline did not finish within ", absl::FormatDuration(options.timeout),
          " (killed): ", absl::StrJoin(so.argv, " ").substr(0, 300)));
    }
    pollfd fds[2];
    nfds_t n = 0;
    if (out_open) fds[n++] = {proc->stdout_fd().get(), POLLIN, 0};
    if (err_open) fds[n++] = {proc->stderr_fd().get(), POLLIN, 0};
    ::poll(fds, n, 200);
    if (out_open && !out.DrainFrom(proc->stdout_fd().get())) out_open = false;
    if (err_open && !err.DrainFrom(proc->stderr_fd().get())) err_open = false;
  }
  if (!proc->WaitUntil(deadline)) {
    proc->Signal(SIGKILL);
    proc->WaitUntil(absl::Now() + absl::Seconds(5));
    return absl::DeadlineExceededError("mpirun closed its output but did not exit");
  }
  TR_RETURN_IF_ERROR(sink.error());
  if (!proc->succeeded()) {
    return absl::InternalError(absl::StrCat("the MPI baseline failed: mpirun ",
                                            launch::DescribeWaitStatus(proc->wait_status()),
                                            " (its output is above on stderr)"));
  }
  return std::move(sink.records());
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
