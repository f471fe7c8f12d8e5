// The node arena (layout.h): a sealed memfd mapped MAP_SHARED by the daemon
// (Create) and by each local rank (Map, from the fd the daemon sent with
// SCM_RIGHTS).
//
// Ownership: an Arena owns its fd and its mapping; the mapping is released
// first. Ring handles returned by the accessors point into the mapping and
// must not outlive the Arena.
//
// Thread safety: the accessors are const pointer arithmetic and may be used
// from any thread. PublishFailure may be called from any thread of the daemon
// (the first call wins). Ring producer/consumer objects follow ring.h.
#ifndef TOKENRAIL_RUNTIME_ARENA_ARENA_H_
#define TOKENRAIL_RUNTIME_ARENA_ARENA_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fd.h"
#include "runtime/arena/layout.h"
#include "runtime/arena/ring.h"

namespace tokenrail {
namespace runtime {

// A consistent copy of a rank's RankEpStats.
struct EpStatsSnapshot {
  uint64_t direct_bytes_intra_node = 0;
  std::vector<uint64_t> tokens_per_expert;
};
// Rank side: publishes (sequence lock; no syscall). `experts` above
// kMaxEpStatsExperts keeps the first kMaxEpStatsExperts.
void WriteEpStats(RankEpStats& stats, uint64_t direct_bytes_intra_node,
                  const uint64_t* tokens_per_expert, int experts);
// Daemon side: false when no consistent copy was read in a few tries (the
// rank keeps rewriting, or scribbled an odd sequence number).
bool ReadEpStats(const RankEpStats& stats, EpStatsSnapshot* out);

// What a failure names. -1 = not known / not applicable.
struct FailureOrigin {
  int node_id = -1;
  int global_rank = -1;
};

class Arena {
 public:
  // Daemon side: creates, seals (no shrink/grow: a rank cannot truncate the
  // file under the daemon's mapping) and initializes a `total_bytes` arena.
  static absl::StatusOr<std::unique_ptr<Arena>> Create(uint64_t total_bytes, int local_ranks,
                                                       int node_id);
  // Rank side: maps an arena received from the daemon and validates the
  // header against the file and the layout this binary computes.
  // InvalidArgument (bad seals, size or header) or FailedPrecondition
  // (version / layout of another build).
  static absl::StatusOr<std::unique_ptr<Arena>> Map(UniqueFd fd, int expected_local_ranks);

  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  int fd() const { return fd_.get(); }
  char* base() const { return base_; }
  uint64_t size() const { return layout_.total_bytes; }
  const ArenaLayout& layout() const { return layout_; }
  int local_ranks() const { return static_cast<int>(layout_.local_ranks); }

  ArenaHeader& header() const { return *reinterpret_cast<ArenaHeader*>(base_); }
  RankControl& control(int local_rank) const {
    return *reinterpret_cast<RankControl*>(base_ + layout_.control_at(local_rank));
  }
  char* heap(int local_rank) const { return base_ + layout_.heap_at(local_rank); }
  uint64_t heap_bytes() const { return layout_.heap_stride; }

  Command* command_slots(int r) const {
    return reinterpret_cast<Command*>(base_ + layout_.control_at(r) + layout_.command_slots);
  }
  Completion* completion_slots(int r) const {
    return reinterpret_cast<Completion*>(base_ + layout_.control_at(r) + layout_.completion_slots);
  }
  NotificationEntry* notify_slots(int r) const {
    return reinterpret_cast<NotificationEntry*>(base_ + layout_.control_at(r) +
                                                layout_.notify_slots);
  }

  RingProducer<Command> command_producer(int r) const {
    return {&control(r).commands, command_slots(r), kCommandEntries};
  }
  RingConsumer<Command> command_consumer(int r) const {
    return {&control(r).commands, command_slots(r), kCommandEntries};
  }
  RingProducer<Completion> completion_producer(int r) const {
    return {&control(r).completions, completion_slots(r), kCompletionEntries};
  }
  RingConsumer<Completion> completion_consumer(int r) const {
    return {&control(r).completions, completion_slots(r), kCompletionEntries};
  }
  RingProducer<NotificationEntry> notify_producer(int r) const {
    return {&control(r).notifications, notify_slots(r), kNotifyEntries};
  }
  RingConsumer<NotificationEntry> notify_consumer(int r) const {
    return {&control(r).notifications, notify_slots(r), kNotifyEntries};
  }

  // Empties local rank `r`'s rings (daemon, before handing the slot to a
  // newly attached rank).
  void ResetRank(int r) const;

  // Daemon: records the job failure (first call wins; later calls return
  // false and change nothing) and wakes every sleeper in the arena.
  bool PublishFailure(const absl::Status& status, FailureOrigin origin) const;
  // OK, or the published failure (with its original code and message).
  absl::Status failure() const;
  bool failed() const {
    return header().failure.state.load(std::memory_order_acquire) == kFailurePublished;
  }
  // Who the published failure names; meaningful only when failed().
  FailureOrigin failure_origin() const;

  // Wakes every doorbell in the arena (failure, shutdown).
  void WakeAll() const;

 private:
  Arena(UniqueFd fd, char* base, ArenaLayout layout)
      : fd_(std::move(fd)), base_(base), layout_(layout) {}

  UniqueFd fd_;
  char* base_;  // mapping of layout_.total_bytes, unmapped in the destructor
  ArenaLayout layout_;
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_ARENA_ARENA_H_
