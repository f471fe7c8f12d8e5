// The node arena's binary layout: one memfd per node, created by tokenraild
// and mapped by the daemon and every local rank (and registered whole with
// the inter-node transport, so a peer daemon can put into any rank's heap).
//
//   offset 0               ArenaHeader: magic, version, sizes, the proxy
//                          doorbell, the job failure record
//   control_offset         RankControl x local_ranks (control_stride apart):
//                          command ring (rank -> daemon), completion ring and
//                          notification ring (daemon -> rank), their doorbells
//   heap_offset            per-rank heaps, heap_stride apart (equal shares)
//
// Symmetric allocation: every AllocateSymmetric gives the same offset inside
// every rank's heap on every node, so (rank, region, offset) addresses any
// rank's copy. The layout is a pure function of (total_bytes, local_ranks)
// and the compiled ring sizes, so a daemon computes a peer's layout from the
// peer's arena size, and a rank checks the header it mapped against it.
//
// Every struct here lives in shared memory: trivially copyable or atomic,
// fixed size, no pointers.
#ifndef TOKENRAIL_RUNTIME_ARENA_LAYOUT_H_
#define TOKENRAIL_RUNTIME_ARENA_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "runtime/arena/doorbell.h"
#include "runtime/arena/ring.h"

namespace tokenrail {
namespace runtime {

inline constexpr uint64_t kArenaMagic = 0x31414e4552415254ull;  // "TRARENA1"
inline constexpr uint32_t kArenaVersion = 1;
inline constexpr uint64_t kArenaPage = 4096;
// Symmetric regions start on this boundary inside a heap.
inline constexpr uint64_t kRegionAlignment = 256;

// Ring sizes (entries, powers of two). The command and completion rings have
// the same size: a rank posts only while it has a free completion credit, so
// the daemon can always complete what it consumed.
inline constexpr uint32_t kCommandEntries = 1024;
inline constexpr uint32_t kCompletionEntries = kCommandEntries;
inline constexpr uint32_t kNotifyEntries = 4096;

// Largest tag a put may carry: the inter-node immediate has 16 bits for it.
inline constexpr uint32_t kMaxTag = 0xffff;
// Ranks per node addressable by the 8-bit fields of the immediate.
inline constexpr int kMaxLocalRanks = 255;

enum class CommandOp : uint8_t { kNop = 1, kPut = 2 };

// Rank -> daemon. One fixed 64-byte slot.
struct Command {
  uint64_t id;  // rank-chosen, 1, 2, 3, ... (echoed in the completion)
  uint8_t op;   // CommandOp
  uint8_t reserved0[3];
  uint32_t tag;      // kPut: < 65536
  int32_t dst_rank;  // kPut: global rank
  uint32_t src_region;
  uint32_t dst_region;
  uint32_t reserved1;
  uint64_t src_offset;
  uint64_t dst_offset;
  uint64_t length;
  uint64_t reserved2;
};
static_assert(sizeof(Command) == 64, "command layout");

// Daemon -> rank: one per consumed command, possibly out of post order
// (inter-node puts complete when the transport says so).
struct Completion {
  uint64_t id;
  int32_t code;  // absl::StatusCode; 0 = OK
  uint32_t message_length;
  char message[112];
};
static_assert(sizeof(Completion) == 128, "completion layout");

// Daemon -> destination rank: a put's data is visible.
struct NotificationEntry {
  int32_t src_rank;  // global rank of the poster
  uint32_t tag;
  uint64_t length;
};
static_assert(sizeof(NotificationEntry) == 16, "notification layout");

// The job's failure as this node's daemon learned it. Written once by the
// daemon (state 0 -> 1 -> 2); readers trust the fields only in state 2.
struct FailureRecord {
  std::atomic<uint32_t> state;
  int32_t code;  // absl::StatusCode
  int32_t node_id;
  int32_t global_rank;
  uint32_t message_length;
  char message[1004];
};
static_assert(sizeof(FailureRecord) == 1024, "failure record layout");
inline constexpr uint32_t kFailureUnset = 0;
inline constexpr uint32_t kFailureWriting = 1;
inline constexpr uint32_t kFailurePublished = 2;

struct ArenaHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t local_ranks;
  uint64_t total_bytes;
  uint64_t control_offset;
  uint64_t control_stride;
  uint64_t heap_offset;
  uint64_t heap_stride;
  uint32_t command_entries;
  uint32_t completion_entries;
  uint32_t notify_entries;
  int32_t node_id;
  int32_t daemon_pid;
  // Rung by ranks after posting a command; the proxy sleeps on it when idle.
  alignas(kCacheLine) Doorbell proxy_bell;
  alignas(kCacheLine) FailureRecord failure;
};

// Counters a rank's expert-parallel engine publishes for the daemon's
// statistics (RankStats in GetStats and heartbeats): bytes it moved by direct
// stores into local peers' memory, which the proxy never sees, and tokens
// received per local expert (the first kMaxEpStatsExperts). Written by the
// rank under a sequence lock (`seq` odd while writing), read by the daemon,
// which uses them for reporting only. Every field is an atomic, so a torn
// read is detected, never undefined.
inline constexpr int kMaxEpStatsExperts = 256;
struct RankEpStats {
  std::atomic<uint64_t> seq;
  std::atomic<uint64_t> direct_bytes_intra_node;
  std::atomic<uint32_t> experts;
  std::atomic<uint64_t> tokens_per_expert[kMaxEpStatsExperts];
};

struct RankControl {
  RingIndexes commands;
  RingIndexes completions;
  alignas(kCacheLine) Doorbell completion_bell;
  alignas(kCacheLine) RingIndexes notifications;
  alignas(kCacheLine) Doorbell notify_bell;
  // Pid of the attached rank process, 0 when detached (informational).
  alignas(kCacheLine) std::atomic<int32_t> attached_pid;
  alignas(kCacheLine) RankEpStats ep_stats;
};
// The command slots start on the page after RankControl: adding ep_stats
// kept that offset (and so the arena layout) unchanged.
static_assert(sizeof(RankControl) <= kArenaPage, "RankControl must fit one page");

// Offsets of one arena. Computed, never read from shared memory.
struct ArenaLayout {
  uint64_t total_bytes = 0;
  uint32_t local_ranks = 0;
  uint64_t control_offset = 0;
  uint64_t control_stride = 0;
  // Inside a RankControl block.
  uint64_t command_slots = 0;
  uint64_t completion_slots = 0;
  uint64_t notify_slots = 0;
  uint64_t heap_offset = 0;
  uint64_t heap_stride = 0;

  uint64_t control_at(int local_rank) const { return control_offset + local_rank * control_stride; }
  uint64_t heap_at(int local_rank) const { return heap_offset + local_rank * heap_stride; }
};

// The layout for an arena of `total_bytes` serving `local_ranks` ranks.
// InvalidArgument when the ranks are out of 1..kMaxLocalRanks or the arena
// leaves less than one page of heap per rank (the message says how much is
// needed).
absl::StatusOr<ArenaLayout> ComputeArenaLayout(uint64_t total_bytes, int local_ranks);

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_ARENA_LAYOUT_H_
