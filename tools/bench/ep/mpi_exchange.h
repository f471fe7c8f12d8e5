// The MPI_Alltoallv baseline of `tokenrail-bench ep`: the same dispatch and
// combine, written the way a user of MPI would write it (OpenMPI's shared
// memory between the processes of one node, like tokenrail's intra-node
// path), producing the same outputs in the same layout, so the benchmark
// verifies it with the same Checker and compares times in the same run.
//
// Dispatch (collective over the communicator):
//   1. layout: tokens per destination rank, one copy per rank (a token with
//      several experts on one rank is sent once), ep::ComputeLayout;
//   2. counts: MPI_Alltoall of the per-destination token counts;
//   3. pack: one record per (token, destination rank), grouped by
//      destination, tokens in order. Record = header {int32 token, int32 0,
//      int32 topk_idx[k], float topk_weights[k]; FP8: ceil(H/128) float tile
//      scales} padded to 16 bytes, then the payload (FP32 or BF16 row; FP8: H
//      E4M3 codes, quantized once per token), the whole padded to 16 bytes:
//      the size of tokenrail's dispatch record (plan.h
//      StatedDispatchRecordBytes), so both move the same bytes;
//   4. data: MPI_Alltoallv of the records (an MPI contiguous datatype of one
//      record, so counts are tokens, not bytes);
//   5. unpack into the expert-major layout of runtime/ep/reference.h: rows
//      grouped by local expert (padded to `align`), inside an expert by
//      (source rank, token); FP8 dequantized once per record.
// Combine:
//   6. each rank sums, per received record, its local experts' outputs
//      times their weights (FP32, ascending local expert) and converts the
//      partial to the combine dtype;
//   7. MPI_Alltoallv of the partials back (the reverse counts);
//   8. the source sums the partials of each token in ascending rank order
//      (FP32).
// Buffers grow to the largest shape seen and are reused across calls.
//
// Errors: the communicator is switched to MPI_ERRORS_RETURN; an MPI error
// becomes Internal naming the call and MPI's message (StatusFromMpi).
//
// Thread safety: one thread, like the MPI communicator it uses.
#ifndef TOKENRAIL_TOOLS_BENCH_EP_MPI_EXCHANGE_H_
#define TOKENRAIL_TOOLS_BENCH_EP_MPI_EXCHANGE_H_

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/ep/layout.h"
#include "runtime/ep/types.h"
#include "tools/bench/ep/check.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {

// MPI's error code as a Status naming the call (OK for MPI_SUCCESS).
absl::Status StatusFromMpi(int code, absl::string_view call);

struct MpiExchangeOptions {
  ep::EpTopology topology;  // world size == the communicator's size
  int top_k = 1;
  int64_t hidden = 0;
  ep::DType dispatch_dtype = ep::DType::kBFloat16;  // on the wire
  ep::DType output_dtype = ep::DType::kBFloat16;    // rows handed to the experts
  ep::DType combine_dtype = ep::DType::kBFloat16;   // on the wire
  int64_t align = 1;
};

class MpiExchange {
 public:
  // InvalidArgument for inconsistent options or a communicator whose size is
  // not the topology's world size.
  static absl::StatusOr<std::unique_ptr<MpiExchange>> Create(MPI_Comm comm,
                                                             const MpiExchangeOptions& options);
  ~MpiExchange();  // frees the MPI datatypes
  MpiExchange(const MpiExchange&) = delete;
  MpiExchange& operator=(const MpiExchange&) = delete;

  // x: [tokens x hidden] of x_dtype (kBFloat16 or kFloat32); topk_idx and
  // topk_weights: [tokens x top_k]. Collective.
  absl::Status Dispatch(int64_t tokens, const void* x, ep::DType x_dtype, const int32_t* topk_idx,
                        const float* topk_weights);
  // The last dispatch's output (valid until the next Dispatch).
  DispatchView view() const;

  // expert_out: [view().rows x hidden] of `dtype` (fp32 or bf16), row i the
  // output for dispatch row i. Collective.
  absl::Status Combine(const void* expert_out, ep::DType dtype);
  absl::Span<const float> y() const { return y_; }

  // Bytes this rank sent to other ranks (itself excluded) in the last
  // dispatch's data exchange and the last combine.
  uint64_t dispatch_bytes_sent() const { return dispatch_bytes_; }
  uint64_t combine_bytes_sent() const { return combine_bytes_; }
  size_t record_bytes() const { return record_bytes_; }

 private:
  MpiExchange(MPI_Comm comm, const MpiExchangeOptions& options, int rank);
  absl::Status Init();
  void PackToken(int64_t t, const void* x, ep::DType x_dtype, const int32_t* idx, const float* w,
                 char* record) const;
  void Unpack();

  MPI_Comm comm_;
  MpiExchangeOptions o_;
  int rank_;
  int world_;
  size_t record_bytes_ = 0;
  size_t header_bytes_ = 0;  // the payload's offset: the header padded to 16
  size_t partial_bytes_ = 0;
  MPI_Datatype record_type_ = MPI_DATATYPE_NULL;
  MPI_Datatype partial_type_ = MPI_DATATYPE_NULL;

  ep::Layout layout_;
  int64_t tokens_ = 0;
  std::vector<int> send_counts_, recv_counts_, send_displs_, recv_displs_;
  std::vector<char> send_buf_, recv_buf_;
  std::vector<char> record_;  // one packed record (scratch)

  // Dispatch output.
  int64_t rows_ = 0;
  std::vector<int32_t> src_rank_, src_token_, local_expert_;
  std::vector<float> weight_;
  std::vector<int32_t> expert_counts_;
  std::vector<char> out_x_;
  // Per received record (receive order): its rows, ascending local expert.
  std::vector<int64_t> record_rows_begin_;  // [received + 1]
  std::vector<int64_t> record_rows_;

  // Combine.
  std::vector<char> partial_send_, partial_recv_;
  std::vector<float> y_;

  uint64_t dispatch_bytes_ = 0;
  uint64_t combine_bytes_ = 0;
};

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_EP_MPI_EXCHANGE_H_
