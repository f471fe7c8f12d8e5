// What the expert-parallel engine needs from the runtime beneath it, as an
// interface: symmetric regions, direct access to the copies of LOCAL peers
// (every local rank maps the whole node arena: the NVLink-P2P analogue),
// proxy puts with notifications for everything that crosses nodes, and the
// job's sticky failure status.
//
// Implementations: RankComm (rank_comm.h) over runtime::RankClient, the real
// one; InProcessWorld (in_process_comm.h, tests) connects threads of one
// process so the engine's protocol can be tested without daemons.
//
// Semantics (those of RankClient, see runtime/client/client.h):
// - AllocateSymmetric and Barrier are collective over the job, in the same
//   order on every rank; a region has the same offset in every rank's heap.
//   The memory of a fresh region reads as zeros.
// - LocalPeerData(region, l) is local rank l's copy of `region` on this node
//   (l == own local rank gives region.data). Loads and stores to it are
//   ordinary shared-memory accesses; ordering is the caller's business
//   (release/acquire atomics).
// - Put copies [src_off, +len) of this rank's `src` into dst_rank's copy of
//   `dst` at dst_off, then notifies dst_rank with {src_rank, tag, len}.
//   Notifications from one source arrive in post order, each after its data.
//   IsComplete(id) turns true once the source range may be reused.
// - status() is OK or the sticky failure (Unavailable naming the dead rank or
//   node); after a failure every call returns it.
//
// Thread safety: one thread at a time (the engine thread once an EpBuffer
// owns it), like the RankClient beneath.
#ifndef TOKENRAIL_RUNTIME_EP_COMM_H_
#define TOKENRAIL_RUNTIME_EP_COMM_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tokenrail {
namespace ep {

struct CommTopology {
  int node = 0;
  int nodes = 1;
  int local_rank = 0;
  int ranks_per_node = 1;
  int global_rank = 0;
  int world_size = 1;
};

struct CommRegion {
  uint32_t id = 0;
  size_t size = 0;
  void* data = nullptr;  // this rank's copy
};

struct CommNotification {
  int src_rank = -1;
  uint32_t tag = 0;
  size_t length = 0;
};

// Counters the engine publishes for the runtime's statistics (GetStats): the
// bytes it moved by direct stores into other local ranks' memory (the daemon
// does not see them) and the tokens it received per local expert.
struct CommEpCounters {
  uint64_t direct_bytes_intra_node = 0;
  const uint64_t* tokens_per_expert = nullptr;  // [experts], cumulative
  int experts = 0;
};

class EpComm {
 public:
  virtual ~EpComm() = default;

  virtual const CommTopology& topology() const = 0;

  virtual absl::StatusOr<CommRegion> AllocateSymmetric(size_t bytes, absl::Time deadline) = 0;
  virtual absl::Status Barrier(absl::Time deadline) = 0;

  // Local rank `local_rank`'s copy of `region` (see above). nullptr when
  // local_rank is out of range.
  virtual void* LocalPeerData(const CommRegion& region, int local_rank) = 0;

  virtual absl::StatusOr<uint64_t> Put(const CommRegion& src, size_t src_off, int dst_rank,
                                       const CommRegion& dst, size_t dst_off, size_t len,
                                       uint32_t tag) = 0;
  // True once put `id` completed; its error if it failed.
  virtual absl::StatusOr<bool> IsComplete(uint64_t id) = 0;
  // Moves up to `max` notifications into `out`; returns how many. Also the
  // liveness probe: a dead local daemon or peer shows up here.
  virtual absl::StatusOr<size_t> PollNotifications(CommNotification* out, size_t max) = 0;
  // Puts that may be outstanding without Put blocking.
  virtual size_t max_outstanding_puts() const = 0;

  virtual absl::Status status() const = 0;

  // Publishes the engine's counters where the runtime reports statistics
  // from. Called by the engine thread after each operation. A comm without
  // such a place keeps nothing (the EpBuffer's own stats() still has them).
  virtual void PublishEpCounters(const CommEpCounters& counters) = 0;
};

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_COMM_H_
