// What one rank knows about one dispatch's routing: built by the dispatch
// (source part on the caller's thread, forwarder and receiver parts by the
// engine as counts and records arrive), then immutable and shared by the
// dispatch handle, every combine that uses it, and later dispatches that
// reuse the layout (their routing is identical by contract, checked).
//
// Part codes: a token's destinations, and the producers of its combine
// parts, are own-node local ranks j (code j, 0..R-1) and remote peers q
// (code R + q; hierarchical: the rail rank of another node, flat: a rank of
// another node). Per token they are sorted by the destination's global
// rank: the order in which combine adds the parts, which makes results
// bitwise reproducible.
#ifndef TOKENRAIL_RUNTIME_EP_PLAN_H_
#define TOKENRAIL_RUNTIME_EP_PLAN_H_

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "runtime/ep/layout.h"

namespace tokenrail {
namespace ep {

// Compressed rows: entries of item i are values[offsets[i] .. offsets[i+1]).
template <typename T>
struct Csr {
  std::vector<int64_t> offsets{0};
  std::vector<T> values;

  size_t size() const { return offsets.size() - 1; }
  int64_t begin(size_t i) const { return offsets[i]; }
  int64_t end(size_t i) const { return offsets[i + 1]; }
  void CloseItem() { offsets.push_back(static_cast<int64_t>(values.size())); }
};

struct DispatchPlan {
  // ---- as a source ----
  int64_t tokens = 0;
  std::vector<int32_t> topk_idx;  // [tokens * top_k], for the reuse check
  Layout layout;
  Csr<int32_t> dests;                    // per token: part codes, by destination global rank
  std::vector<int32_t> records_to_peer;  // [P]

  // ---- as a forwarder (hierarchical): records from remote peer q, in
  // order, and the local ranks each went to (ascending) ----
  struct Forward {
    std::vector<int32_t> tokens;
    Csr<uint8_t> ranks;
  };
  std::vector<Forward> forward;  // [P]

  // ---- as a receiver ----
  int64_t rows = 0;
  std::vector<int32_t> expert_counts;   // [experts_per_rank] real rows
  std::vector<int64_t> expert_offsets;  // [experts_per_rank + 1] padded blocks
  std::vector<int32_t> row_src_rank;    // [rows]; -1 on padding rows
  std::vector<int32_t> row_src_token;
  std::vector<int32_t> row_local_expert;
  std::vector<int32_t> row_topk_slot;
  // Tokens received from each source rank, in the source's token order,
  // each with its rows here (ascending, i.e. by local expert).
  struct FromSource {
    std::vector<int32_t> tokens;
    Csr<int64_t> rows;
  };
  std::vector<FromSource> from;             // [world]
  std::vector<int64_t> channel_records_in;  // [R] records on channel p -> me
  std::vector<int64_t> peer_records_in;     // [P] flat: records from peer q
  int64_t received_tokens = 0;
};

// Output memory (expert rows, combine results) is large and per operation:
// fresh allocations of tens of MiB are mmap'd and page-faulted (and zeroed
// by the kernel) on every operation, which costs more than moving the data.
// A BytePool keeps buffers that handles released and hands them out again.
class BytePool;

// 64-byte aligned, uninitialized bytes, returned to their pool (if any, and
// if it still exists) on destruction.
class PooledBytes {
 public:
  PooledBytes() = default;
  ~PooledBytes() { Release(); }
  PooledBytes(PooledBytes&& o) noexcept { *this = std::move(o); }
  PooledBytes& operator=(PooledBytes&& o) noexcept;
  PooledBytes(const PooledBytes&) = delete;
  PooledBytes& operator=(const PooledBytes&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // False when the allocation failed.
  bool ok() const { return size_ == 0 || data_ != nullptr; }

 private:
  friend class BytePool;
  void Release();

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
  std::weak_ptr<BytePool> pool_;
};

// Thread-safe. Keeps at most kMaxFree released buffers.
class BytePool : public std::enable_shared_from_this<BytePool> {
 public:
  static constexpr size_t kMaxFree = 8;
  ~BytePool();
  // At least `n` bytes: the smallest free buffer that holds them without
  // wasting more than half, else a new one.
  PooledBytes Get(size_t n);
  // Called by PooledBytes.
  void Return(uint8_t* data, size_t capacity);

 private:
  absl::Mutex mu_;
  std::multimap<size_t, uint8_t*> free_ ABSL_GUARDED_BY(mu_);  // capacity -> memory
};

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_PLAN_H_
