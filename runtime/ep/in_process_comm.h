// InProcessWorld: a job of N x R ranks as threads of one process, giving
// each rank an EpComm with the RankClient's semantics (comm.h): symmetric
// regions in per-rank heaps (mmap'd, zero-filled), local peers' copies
// directly addressable, and puts executed by a delivery thread in post order
// (memcpy, then the notification, then the completion), optionally delayed
// to expose code that reuses a source before its put completed. Collectives
// are real (they wait for every rank, bounded by their deadline). Fail(s)
// makes every rank's comm report s (the first one passed), as a dead rank
// would.
//
// For the engine's single-process tests: the wire protocol, the channels,
// chunking and flow control run exactly as between processes; only the
// transport underneath differs.
//
// Thread safety: one thread per rank's comm (as with a RankClient); Fail and
// the accessors from any thread.
#ifndef TOKENRAIL_RUNTIME_EP_IN_PROCESS_COMM_H_
#define TOKENRAIL_RUNTIME_EP_IN_PROCESS_COMM_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/ep/comm.h"

namespace tokenrail {
namespace ep {

class InProcessWorld {
 public:
  struct Options {
    int nodes = 1;
    int ranks_per_node = 1;
    size_t heap_bytes = size_t{64} << 20;  // per rank (virtual; touched lazily)
    absl::Duration put_delay;              // added before each put executes
  };
  explicit InProcessWorld(Options options);
  ~InProcessWorld();
  InProcessWorld(const InProcessWorld&) = delete;
  InProcessWorld& operator=(const InProcessWorld&) = delete;

  int world_size() const { return options_.nodes * options_.ranks_per_node; }
  EpComm* comm(int rank);
  // The job fails: every comm's status() (and calls) return `status`.
  void Fail(const absl::Status& status);
  // What rank's engine last published (PublishEpCounters).
  uint64_t direct_bytes(int rank) const;
  std::vector<uint64_t> tokens_per_expert(int rank) const;

 private:
  class Comm;
  struct PendingPut {
    int src_rank;
    uint64_t id;
    const char* src;
    int dst_rank;
    char* dst;
    size_t len;
    uint32_t tag;
    absl::Time not_before;
  };
  struct Notifications {
    absl::Mutex mu;
    std::deque<CommNotification> queue ABSL_GUARDED_BY(mu);
    uint64_t completed_below ABSL_GUARDED_BY(mu) = 1;
  };

  void Deliver();
  // Every rank contributes `value`; returns them all (by rank) or the
  // failure / DeadlineExceeded.
  absl::StatusOr<std::vector<uint64_t>> Gather(int rank, uint64_t value, absl::Time deadline);
  absl::StatusOr<CommRegion> Allocate(int rank, size_t size, absl::Time deadline);
  char* heap(int rank) const { return heaps_[static_cast<size_t>(rank)]; }
  absl::Status failure() const;

  const Options options_;
  std::vector<char*> heaps_;
  std::vector<std::unique_ptr<Comm>> comms_;
  std::vector<std::unique_ptr<Notifications>> notes_;

  mutable absl::Mutex mu_;
  absl::Status failed_ ABSL_GUARDED_BY(mu_);
  // Collectives: generation g gathers values[rank]; results kept per g.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> values_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<uint64_t>> results_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> rank_generation_ ABSL_GUARDED_BY(mu_);
  // Regions: offset and size by id (every heap has the same layout).
  std::vector<std::pair<size_t, size_t>> regions_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> allocations_ ABSL_GUARDED_BY(mu_);  // per rank
  size_t heap_top_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> direct_bytes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<uint64_t>> tokens_per_expert_ ABSL_GUARDED_BY(mu_);

  absl::Mutex put_mu_;
  std::deque<PendingPut> puts_ ABSL_GUARDED_BY(put_mu_);
  bool stop_ ABSL_GUARDED_BY(put_mu_) = false;
  std::thread delivery_;
};

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_IN_PROCESS_COMM_H_
