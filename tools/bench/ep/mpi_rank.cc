// ep_mpi_rank: one process of the MPI_Alltoallv baseline of
// `tokenrail-bench ep`, started by mpirun (the orchestrator runs
// `mpirun ... ep_mpi_rank ep-plan:...`). Runs every MPI case of the plan
// with the shared rank loop (rank_loop.h) and verifier (check.h); rank 0
// gathers every rank's record and prints them as "TR_EP_ROW {json}" lines on
// stdout (one write per line, so nothing interleaves), in rank order.
//
// Exit: 0 when every case ran (verification failures are reported in the
// records, not by the exit code); 1 with a message on stderr otherwise. An
// error on one rank aborts the whole MPI job (MPI_Abort) rather than leaving
// the others blocked in a collective.
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "tools/bench/ep/check.h"
#include "tools/bench/ep/mpi_exchange.h"
#include "tools/bench/ep/plan.h"
#include "tools/bench/ep/rank_loop.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

class MpiUnderTest : public ExchangeUnderTest {
 public:
  MpiUnderTest(MpiExchange& ex, const RankWorkload& in, ep::DType x_dtype)
      : ex_(ex), in_(in), x_dtype_(x_dtype) {}

  absl::Status Barrier() override {
    return StatusFromMpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }
  absl::Status Dispatch() override {
    const void* x = x_dtype_ == ep::DType::kFloat32 ? static_cast<const void*>(in_.x_f32.data())
                                                    : in_.x_bf16.data();
    TR_RETURN_IF_ERROR(
        ex_.Dispatch(in_.tokens, x, x_dtype_, in_.topk_idx.data(), in_.topk_weights.data()));
    counters_.intra_node += ex_.dispatch_bytes_sent();
    return absl::OkStatus();
  }
  absl::StatusOr<DispatchView> View() override { return ex_.view(); }
  absl::Status Combine(const void* expert_out, ep::DType dtype) override {
    TR_RETURN_IF_ERROR(ex_.Combine(expert_out, dtype));
    counters_.intra_node += ex_.combine_bytes_sent();
    return absl::OkStatus();
  }
  absl::StatusOr<absl::Span<const float>> Y() override { return ex_.y(); }
  ByteCounters Counters() override { return counters_; }

 private:
  MpiExchange& ex_;
  const RankWorkload& in_;
  ep::DType x_dtype_;
  ByteCounters counters_;
};

// Rank 0 prints every rank's line, in rank order.
absl::Status GatherAndPrint(const std::string& line, int rank, int world) {
  int len = static_cast<int>(line.size());
  std::vector<int> lens(world), displs(world);
  TR_RETURN_IF_ERROR(StatusFromMpi(
      MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Gather"));
  int total = 0;
  for (int r = 0; r < world; ++r) {
    displs[r] = total;
    total += rank == 0 ? lens[r] : 0;
  }
  std::string all(rank == 0 ? total : 0, '\0');
  TR_RETURN_IF_ERROR(StatusFromMpi(MPI_Gatherv(line.data(), len, MPI_CHAR, all.data(), lens.data(),
                                               displs.data(), MPI_CHAR, 0, MPI_COMM_WORLD),
                                   "MPI_Gatherv"));
  if (rank != 0) return absl::OkStatus();
  for (int r = 0; r < world; ++r) {
    const std::string text = absl::StrCat(kRowTag, all.substr(displs[r], lens[r]), "\n");
    if (::write(STDOUT_FILENO, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      return absl::InternalError("writing a result line to stdout failed");
    }
  }
  return absl::OkStatus();
}

absl::Status RunCaseOnRank(const EpPlan& plan, const CaseSpec& spec, int rank, int world) {
  CheckOptions co;
  co.dispatch_dtype = spec.dispatch_dtype;
  co.expert_dtype = spec.expert_dtype;
  co.combine_dtype = spec.combine_dtype;
  co.align = plan.align;
  TR_ASSIGN_OR_RETURN(std::unique_ptr<Checker> checker, Checker::Create(plan.workload, rank, co));
  MpiExchangeOptions mo;
  mo.topology = plan.workload.topology;
  mo.top_k = plan.workload.top_k;
  mo.hidden = plan.workload.hidden;
  mo.dispatch_dtype = spec.dispatch_dtype;
  mo.output_dtype = spec.expert_dtype;
  mo.combine_dtype = spec.combine_dtype;
  mo.align = plan.align;
  TR_ASSIGN_OR_RETURN(std::unique_ptr<MpiExchange> ex, MpiExchange::Create(MPI_COMM_WORLD, mo));
  const ep::DType x_dtype =
      spec.dispatch_dtype == ep::DType::kFloat32 ? ep::DType::kFloat32 : ep::DType::kBFloat16;
  MpiUnderTest under(*ex, checker->input(), x_dtype);
  TR_ASSIGN_OR_RETURN(Record r, RunCase(under, *checker, spec, plan, nullptr));
  r.Set("record_bytes", static_cast<int64_t>(ex->record_bytes()));
  return GatherAndPrint(r.ToJson(), rank, world);
}

absl::Status Run(int argc, char** argv) {
  if (argc != 2 || !IsPlanArgument(argv[1])) {
    return absl::InvalidArgumentError("usage: ep_mpi_rank ep-plan:HEX (started by mpirun)");
  }
  TR_ASSIGN_OR_RETURN(const EpPlan plan, DecodePlan(argv[1]));
  int rank = 0, world = 0;
  TR_RETURN_IF_ERROR(StatusFromMpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank"));
  TR_RETURN_IF_ERROR(StatusFromMpi(MPI_Comm_size(MPI_COMM_WORLD, &world), "MPI_Comm_size"));
  if (world != plan.workload.topology.world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("mpirun started ", world,
                                                   " processes for the plan's topology ",
                                                   ep::ToString(plan.workload.topology)));
  }
  for (const CaseSpec& spec : plan.cases) {
    if (spec.impl != Impl::kMpi) continue;
    TR_RETURN_IF_ERROR(Annotate(RunCaseOnRank(plan, spec, rank, world),
                                absl::StrCat("case ", spec.name, " on MPI rank ", rank)));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

int main(int argc, char** argv) {
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
    std::fprintf(stderr, "ep_mpi_rank: MPI_Init failed\n");
    return 1;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  const absl::Status s = tokenrail::bench::ep_bench::Run(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "ep_mpi_rank: %s\n", s.ToString().c_str());
    // Peers may be blocked in a collective: take the whole job down.
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  MPI_Finalize();
  return 0;
}
