#include "tools/bench/ep/mpi_exchange.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "runtime/ep/numeric.h"
#include "tools/bench/align.h"

namespace tokenrail {
namespace bench {
namespace ep_bench {
namespace {

// Where a record's FP8 tile scales start: after {token, rank, idx[k], w[k]}.
size_t ScalesOffset(int top_k) { return 8 + 8 * static_cast<size_t>(top_k); }

size_t RowBytes(ep::DType dtype, int64_t hidden) {
  return static_cast<size_t>(hidden) * ep::DTypeSize(dtype);
}

template <typename T>
void Grow(std::vector<T>* v, size_t n) {
  if (v->size() < n) v->resize(n);
}

// Converts a float row to `dtype` at `out`.
void StoreRow(const float* row, int64_t n, ep::DType dtype, void* out) {
  if (dtype == ep::DType::kBFloat16) {
    ep::FloatToBf16(row, n, static_cast<uint16_t*>(out));
  } else {
    std::memcpy(out, row, static_cast<size_t>(n) * sizeof(float));
  }
}

}  // namespace

absl::Status StatusFromMpi(int code, absl::string_view call) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  return absl::InternalError(
      absl::StrCat(call, " failed: ", len > 0 ? std::string(text, len) : "unknown MPI error",
                   " (MPI error ", code, ")"));
}

MpiExchange::MpiExchange(MPI_Comm comm, const MpiExchangeOptions& options, int rank)
    : comm_(comm), o_(options), rank_(rank), world_(options.topology.world_size()) {}

MpiExchange::~MpiExchange() {
  if (partial_type_ != MPI_DATATYPE_NULL) MPI_Type_free(&partial_type_);
  if (record_type_ != MPI_DATATYPE_NULL) MPI_Type_free(&record_type_);
}

absl::StatusOr<std::unique_ptr<MpiExchange>> MpiExchange::Create(
    MPI_Comm comm, const MpiExchangeOptions& options) {
  TR_RETURN_IF_ERROR(ep::Validate(options.topology));
  if (options.top_k < 1 || options.top_k > ep::kMaxTopK || options.hidden < 1 ||
      options.align < 1) {
    return absl::InvalidArgumentError(absl::StrCat("mpi exchange: top_k=", options.top_k,
                                                   " hidden=", options.hidden,
                                                   " align=", options.align));
  }
  const auto f32_or_bf16 = [](ep::DType d) {
    return d == ep::DType::kFloat32 || d == ep::DType::kBFloat16;
  };
  if (!f32_or_bf16(options.output_dtype) || !f32_or_bf16(options.combine_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mpi exchange: output dtype ", ep::DTypeName(options.output_dtype), " and combine dtype ",
        ep::DTypeName(options.combine_dtype), " must be fp32 or bf16"));
  }
  TR_RETURN_IF_ERROR(
      StatusFromMpi(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler"));
  int size = 0, rank = 0;
  TR_RETURN_IF_ERROR(StatusFromMpi(MPI_Comm_size(comm, &size), "MPI_Comm_size"));
  TR_RETURN_IF_ERROR(StatusFromMpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank"));
  if (size != options.topology.world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("mpi exchange: communicator of ", size,
                                                   " processes for topology ",
                                                   ep::ToString(options.topology)));
  }
  std::unique_ptr<MpiExchange> x(new MpiExchange(comm, options, rank));
  TR_RETURN_IF_ERROR(x->Init());
  return x;
}

absl::Status MpiExchange::Init() {
  // The record layout of the header comment: the same size as tokenrail's
  // dispatch record (plan.h StatedDispatchRecordBytes), so both move the
  // same bytes per token.
  size_t header = ScalesOffset(o_.top_k);
  if (o_.dispatch_dtype == ep::DType::kFp8E4M3) {
    header += static_cast<size_t>(ep::Fp8TilesPerRow(o_.hidden)) * sizeof(float);
  }
  header_bytes_ = RoundUp(header, 16);
  record_bytes_ = RoundUp(header_bytes_ + RowBytes(o_.dispatch_dtype, o_.hidden), 16);
  partial_bytes_ = RowBytes(o_.combine_dtype, o_.hidden);
  if (record_bytes_ > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("mpi exchange: record of ", record_bytes_, " bytes exceeds MPI's int count"));
  }
  TR_RETURN_IF_ERROR(
      StatusFromMpi(MPI_Type_contiguous(static_cast<int>(record_bytes_), MPI_BYTE, &record_type_),
                    "MPI_Type_contiguous(record)"));
  TR_RETURN_IF_ERROR(StatusFromMpi(MPI_Type_commit(&record_type_), "MPI_Type_commit(record)"));
  TR_RETURN_IF_ERROR(
      StatusFromMpi(MPI_Type_contiguous(static_cast<int>(partial_bytes_), MPI_BYTE, &partial_type_),
                    "MPI_Type_contiguous(partial)"));
  TR_RETURN_IF_ERROR(StatusFromMpi(MPI_Type_commit(&partial_type_), "MPI_Type_commit(partial)"));
  send_counts_.assign(world_, 0);
  recv_counts_.assign(world_, 0);
  send_displs_.assign(world_, 0);
  recv_displs_.assign(world_, 0);
  record_.resize(record_bytes_);
  return absl::OkStatus();
}

void MpiExchange::PackToken(int64_t t, const void* x, ep::DType x_dtype, const int32_t* idx,
                            const float* w, char* record) const {
  const int k = o_.top_k;
  const int64_t H = o_.hidden;
  const int32_t head[2] = {static_cast<int32_t>(t), 0};
  std::memcpy(record, head, sizeof(head));
  std::memcpy(record + 8, idx + t * k, 4 * static_cast<size_t>(k));
  std::memcpy(record + 8 + 4 * k, w + t * k, 4 * static_cast<size_t>(k));
  char* payload = record + header_bytes_;
  const char* row = static_cast<const char*>(x) + t * RowBytes(x_dtype, H);
  switch (o_.dispatch_dtype) {
    case ep::DType::kFp8E4M3: {
      float* scales = reinterpret_cast<float*>(record + ScalesOffset(k));
      uint8_t* q = reinterpret_cast<uint8_t*>(payload);
      // Callers hand finite inputs (validated when the workload was made).
      if (x_dtype == ep::DType::kBFloat16) {
        (void)ep::QuantizeRowFp8FromBf16(reinterpret_cast<const uint16_t*>(row), H, q, scales);
      } else {
        (void)ep::QuantizeRowFp8(reinterpret_cast<const float*>(row), H, q, scales);
      }
      break;
    }
    case ep::DType::kBFloat16:
      if (x_dtype == ep::DType::kBFloat16) {
        std::memcpy(payload, row, RowBytes(x_dtype, H));
      } else {
        ep::FloatToBf16(reinterpret_cast<const float*>(row), H,
                        reinterpret_cast<uint16_t*>(payload));
      }
      break;
    case ep::DType::kFloat32:
      if (x_dtype == ep::DType::kFloat32) {
        std::memcpy(payload, row, RowBytes(x_dtype, H));
      } else {
        ep::Bf16ToFloat(reinterpret_cast<const uint16_t*>(row), H,
                        reinterpret_cast<float*>(payload));
      }
      break;
  }
}

absl::Status MpiExchange::Dispatch(int64_t tokens, const void* x, ep::DType x_dtype,
                                   const int32_t* topk_idx, const float* topk_weights) {
  if (x_dtype != ep::DType::kBFloat16 && x_dtype != ep::DType::kFloat32) {
    return absl::InvalidArgumentError(
        absl::StrCat("mpi dispatch: input dtype ", ep::DTypeName(x_dtype), " (fp32 or bf16)"));
  }
  const int k = o_.top_k;
  TR_RETURN_IF_ERROR(ep::ComputeLayout(o_.topology, k, tokens,
                                       absl::MakeConstSpan(topk_idx, tokens * k), &layout_));
  tokens_ = tokens;
  for (int r = 0; r < world_; ++r) send_counts_[r] = layout_.tokens_per_rank[r];
  TR_RETURN_IF_ERROR(StatusFromMpi(
      MPI_Alltoall(send_counts_.data(), 1, MPI_INT, recv_counts_.data(), 1, MPI_INT, comm_),
      "MPI_Alltoall(counts)"));
  int64_t sent = 0, received = 0;
  for (int r = 0; r < world_; ++r) {
    send_displs_[r] = static_cast<int>(sent);
    recv_displs_[r] = static_cast<int>(received);
    sent += send_counts_[r];
    received += recv_counts_[r];
  }
  if (received > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("mpi dispatch: ", received, " records"));
  }
  Grow(&send_buf_, static_cast<size_t>(sent) * record_bytes_);
  Grow(&recv_buf_, static_cast<size_t>(received) * record_bytes_);

  // Pack: one record per (token, destination rank); FP8 quantized once.
  dispatch_bytes_ = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    bool packed = false;
    for (int r = 0; r < world_; ++r) {
      const int32_t slot = layout_.rank_slot(t, r);
      if (slot < 0) continue;
      char* dst = send_buf_.data() + (static_cast<size_t>(send_displs_[r]) + slot) * record_bytes_;
      if (!packed) {
        PackToken(t, x, x_dtype, topk_idx, topk_weights, record_.data());
        packed = true;
      }
      std::memcpy(dst, record_.data(), record_bytes_);
      if (r != rank_) dispatch_bytes_ += record_bytes_;
    }
  }
  TR_RETURN_IF_ERROR(
      StatusFromMpi(MPI_Alltoallv(send_buf_.data(), send_counts_.data(), send_displs_.data(),
                                  record_type_, recv_buf_.data(), recv_counts_.data(),
                                  recv_displs_.data(), record_type_, comm_),
                    "MPI_Alltoallv(dispatch)"));
  Unpack();
  return absl::OkStatus();
}

void MpiExchange::Unpack() {
  const int k = o_.top_k;
  const int64_t H = o_.hidden;
  const int experts = o_.topology.experts_per_rank();
  const int first = o_.topology.first_expert_of_rank(rank_);
  const int64_t received = recv_displs_[world_ - 1] + recv_counts_[world_ - 1];
  const auto idx_of = [&](const char* rec, int j) {
    int32_t e;
    std::memcpy(&e, rec + 8 + 4 * j, 4);
    return e;
  };
  const auto mine = [&](int32_t e) { return e >= first && e < first + experts; };

  // Pass 1: rows per local expert, block offsets (padded to align).
  expert_counts_.assign(experts, 0);
  for (int64_t i = 0; i < received; ++i) {
    const char* rec = recv_buf_.data() + i * record_bytes_;
    for (int j = 0; j < k; ++j) {
      const int32_t e = idx_of(rec, j);
      if (mine(e)) ++expert_counts_[e - first];
    }
  }
  std::vector<int64_t> cursor(experts + 1, 0);
  for (int le = 0; le < experts; ++le) {
    cursor[le + 1] = cursor[le] + (expert_counts_[le] + o_.align - 1) / o_.align * o_.align;
  }
  rows_ = cursor[experts];
  src_rank_.assign(rows_, -1);
  src_token_.assign(rows_, -1);
  weight_.assign(rows_, 0.0f);
  local_expert_.resize(rows_);
  for (int le = 0; le < experts; ++le) {
    for (int64_t i = cursor[le]; i < cursor[le + 1]; ++i) local_expert_[i] = le;
  }
  const size_t out_row = RowBytes(o_.output_dtype, H);
  Grow(&out_x_, static_cast<size_t>(rows_) * out_row);
  if (o_.align > 1) {
    // Padding rows are zeros (only they: real rows are overwritten below).
    for (int le = 0; le < experts; ++le) {
      const int64_t pad_begin = cursor[le] + expert_counts_[le];
      std::memset(out_x_.data() + pad_begin * out_row, 0,
                  static_cast<size_t>(cursor[le + 1] - pad_begin) * out_row);
    }
  }
  record_rows_begin_.assign(received + 1, 0);
  record_rows_.clear();

  // Pass 2: sources in rank order, tokens in order: exactly the (source
  // rank, token) order inside every expert block.
  std::vector<float> deq(H);
  std::vector<char> converted(out_row);
  std::vector<std::pair<int32_t, int64_t>> rows;  // (local expert, row) of one record
  for (int src = 0; src < world_; ++src) {
    for (int64_t n = 0; n < recv_counts_[src]; ++n) {
      const int64_t i = recv_displs_[src] + n;
      const char* rec = recv_buf_.data() + i * record_bytes_;
      int32_t token;
      std::memcpy(&token, rec, 4);
      const char* payload = rec + header_bytes_;
      // The row in the output dtype, converted once per record.
      const void* row = payload;
      if (o_.dispatch_dtype == ep::DType::kFp8E4M3) {
        const float* scales = reinterpret_cast<const float*>(rec + ScalesOffset(k));
        const uint8_t* q = reinterpret_cast<const uint8_t*>(payload);
        ep::DequantizeRowFp8(q, scales, H, deq.data());
        StoreRow(deq.data(), H, o_.output_dtype, converted.data());
        row = converted.data();
      } else if (o_.dispatch_dtype != o_.output_dtype) {
        if (o_.dispatch_dtype == ep::DType::kBFloat16) {
          ep::Bf16ToFloat(reinterpret_cast<const uint16_t*>(payload), H, deq.data());
        } else {
          std::memcpy(deq.data(), payload, H * sizeof(float));
        }
        StoreRow(deq.data(), H, o_.output_dtype, converted.data());
        row = converted.data();
      }
      rows.clear();
      for (int j = 0; j < k; ++j) {
        const int32_t e = idx_of(rec, j);
        if (!mine(e)) continue;
        const int le = e - first;
        const int64_t r = cursor[le]++;
        float w;
        std::memcpy(&w, rec + 8 + 4 * k + 4 * j, 4);
        src_rank_[r] = src;
        src_token_[r] = token;
        weight_[r] = w;
        std::memcpy(out_x_.data() + r * out_row, row, out_row);
        rows.emplace_back(le, r);
      }
      std::sort(rows.begin(), rows.end());
      for (const auto& lr : rows) record_rows_.push_back(lr.second);
      record_rows_begin_[i + 1] = static_cast<int64_t>(record_rows_.size());
    }
  }
}

DispatchView MpiExchange::view() const {
  DispatchView v;
  v.rows = rows_;
  v.src_rank = absl::MakeConstSpan(src_rank_.data(), rows_);
  v.src_token = absl::MakeConstSpan(src_token_.data(), rows_);
  v.local_expert = absl::MakeConstSpan(local_expert_.data(), rows_);
  v.weight = absl::MakeConstSpan(weight_.data(), rows_);
  v.expert_counts = expert_counts_;
  v.x = out_x_.data();
  v.x_dtype = o_.output_dtype;
  v.x_stride = o_.hidden;
  return v;
}

absl::Status MpiExchange::Combine(const void* expert_out, ep::DType dtype) {
  if (dtype != ep::DType::kBFloat16 && dtype != ep::DType::kFloat32) {
    return absl::InvalidArgumentError(
        absl::StrCat("mpi combine: expert output dtype ", ep::DTypeName(dtype)));
  }
  const int64_t H = o_.hidden;
  const int64_t received = recv_displs_[world_ - 1] + recv_counts_[world_ - 1];
  const int64_t sent = send_displs_[world_ - 1] + send_counts_[world_ - 1];
  Grow(&partial_send_, static_cast<size_t>(received) * partial_bytes_);
  Grow(&partial_recv_, static_cast<size_t>(sent) * partial_bytes_);
  const size_t in_row = RowBytes(dtype, H);

  // Partials in receive order: the reverse exchange's send layout is the
  // dispatch's receive layout.
  std::vector<float> acc(H), out(H);
  combine_bytes_ = 0;
  for (int src = 0; src < world_; ++src) {
    for (int64_t n = 0; n < recv_counts_[src]; ++n) {
      const int64_t i = recv_displs_[src] + n;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t p = record_rows_begin_[i]; p < record_rows_begin_[i + 1]; ++p) {
        const int64_t r = record_rows_[p];
        const float w = weight_[r];
        const char* row = static_cast<const char*>(expert_out) + r * in_row;
        if (dtype == ep::DType::kBFloat16) {
          ep::Bf16ToFloat(reinterpret_cast<const uint16_t*>(row), H, out.data());
        } else {
          std::memcpy(out.data(), row, in_row);
        }
        for (int64_t c = 0; c < H; ++c) acc[c] = acc[c] + w * out[c];
      }
      StoreRow(acc.data(), H, o_.combine_dtype, partial_send_.data() + i * partial_bytes_);
      if (src != rank_) combine_bytes_ += partial_bytes_;
    }
  }
  TR_RETURN_IF_ERROR(
      StatusFromMpi(MPI_Alltoallv(partial_send_.data(), recv_counts_.data(), recv_displs_.data(),
                                  partial_type_, partial_recv_.data(), send_counts_.data(),
                                  send_displs_.data(), partial_type_, comm_),
                    "MPI_Alltoallv(combine)"));

  // The source reduces: ascending rank order, FP32.
  y_.assign(static_cast<size_t>(tokens_ * H), 0.0f);
  for (int64_t t = 0; t < tokens_; ++t) {
    float* yt = y_.data() + t * H;
    for (int r = 0; r < world_; ++r) {
      const int32_t slot = layout_.rank_slot(t, r);
      if (slot < 0) continue;
      const char* p =
          partial_recv_.data() + (static_cast<size_t>(send_displs_[r]) + slot) * partial_bytes_;
      if (o_.combine_dtype == ep::DType::kBFloat16) {
        ep::Bf16ToFloat(reinterpret_cast<const uint16_t*>(p), H, out.data());
      } else {
        std::memcpy(out.data(), p, partial_bytes_);
      }
      for (int64_t c = 0; c < H; ++c) yt[c] = yt[c] + out[c];
    }
  }
  return absl::OkStatus();
}

}  // namespace ep_bench
}  // namespace bench
}  // namespace tokenrail
