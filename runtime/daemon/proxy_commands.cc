// Proxy: validating and executing rank commands, completions and local
// notification delivery.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "runtime/daemon/proxy.h"

namespace tokenrail {
namespace runtime {
namespace {
constexpr char kLog[] = "proxy";

// Checks [off, off + len) against a region without overflowing.
bool InRegion(const RegionInfo& r, uint64_t off, uint64_t len) {
  return off <= r.size && len <= r.size - off;
}

}  // namespace

absl::Status Proxy::ValidatePut(const Command& c, const RegionInfo** src,
                                const RegionInfo** dst) const {
  const uint32_t regions = region_count_.load(std::memory_order_acquire);
  if (c.src_region >= regions) {
    return absl::InvalidArgumentError(
        absl::StrCat("source region ", c.src_region, " is not allocated (", regions, " regions)"));
  }
  if (c.dst_region >= regions) {
    return absl::InvalidArgumentError(absl::StrCat("destination region ", c.dst_region,
                                                   " is not allocated (", regions, " regions)"));
  }
  *src = &regions_[c.src_region];
  *dst = &regions_[c.dst_region];
  if (!InRegion(**src, c.src_offset, c.length)) {
    return absl::InvalidArgumentError(absl::StrCat("source range [", c.src_offset, ", +", c.length,
                                                   ") exceeds region ", c.src_region, " of ",
                                                   (*src)->size, " bytes"));
  }
  if (!InRegion(**dst, c.dst_offset, c.length)) {
    return absl::InvalidArgumentError(absl::StrCat("destination range [", c.dst_offset, ", +",
                                                   c.length, ") exceeds region ", c.dst_region,
                                                   " of ", (*dst)->size, " bytes"));
  }
  const int world = config_.nodes * config_.ranks_per_node;
  if (c.dst_rank < 0 || c.dst_rank >= world) {
    return absl::InvalidArgumentError(
        absl::StrCat("destination rank ", c.dst_rank, " is outside 0..", world - 1));
  }
  if (c.tag > kMaxTag) {
    return absl::InvalidArgumentError(absl::StrCat("tag ", c.tag, " exceeds ", kMaxTag));
  }
  return absl::OkStatus();
}

void Proxy::Execute(int r, const Command& c) {
  Slot& s = slots_[static_cast<size_t>(r)];
  if (arena_.failed()) {
    // The job is over: answer everything with the failure, touch nothing.
    Complete(r, s.generation, c.id, arena_.failure());
    return;
  }
  switch (static_cast<CommandOp>(c.op)) {
    case CommandOp::kNop:
      Complete(r, s.generation, c.id, absl::OkStatus());
      return;
    case CommandOp::kPut: {
      const RegionInfo* src = nullptr;
      const RegionInfo* dst = nullptr;
      absl::Status valid = ValidatePut(c, &src, &dst);
      if (!valid.ok()) {
        TR_VLOG(1, kLog) << "local rank " << r << " command " << c.id << ": " << valid;
        Complete(r, s.generation, c.id, valid);
        return;
      }
      if (c.dst_rank / config_.ranks_per_node == config_.node_id) {
        PutIntra(r, c, *src, *dst);
      } else {
        PutInter(r, c, *src, *dst);
      }
      return;
    }
  }
  Complete(r, s.generation, c.id,
           absl::InvalidArgumentError(absl::StrCat("unknown command op ", int{c.op})));
}

void Proxy::PutIntra(int r, const Command& c, const RegionInfo& src, const RegionInfo& dst) {
  const int dst_local = c.dst_rank % config_.ranks_per_node;
  // Offsets were validated against the daemon's region table, and regions
  // lie inside every heap: both ranges are inside the arena. memmove: a put
  // to oneself may overlap.
  std::memmove(arena_.heap(dst_local) + dst.offset + c.dst_offset,
               arena_.heap(r) + src.offset + c.src_offset, c.length);
  Notify(dst_local, {config_.node_id * config_.ranks_per_node + r, c.tag, c.length});
  AtomicCounters& k = *counters_[static_cast<size_t>(r)];
  k.puts.fetch_add(1, std::memory_order_relaxed);
  k.bytes_intra.fetch_add(c.length, std::memory_order_relaxed);
  intra_puts_.fetch_add(1, std::memory_order_relaxed);
  intra_bytes_.fetch_add(c.length, std::memory_order_relaxed);
  Complete(r, slots_[static_cast<size_t>(r)].generation, c.id, absl::OkStatus());
}

void Proxy::PutInter(int r, const Command& c, const RegionInfo& src, const RegionInfo& dst) {
  Slot& s = slots_[static_cast<size_t>(r)];
  const int dst_node = c.dst_rank / config_.ranks_per_node;
  const int dst_local = c.dst_rank % config_.ranks_per_node;
  Peer* peer = PeerOf(dst_node);
  if (peer == nullptr) {
    Complete(r, s.generation, c.id,
             absl::FailedPreconditionError(absl::StrCat("node ", dst_node, " is not connected")));
    return;
  }
  if (!peer->failed.ok()) {
    Complete(r, s.generation, c.id, peer->failed);
    return;
  }
  const uint64_t src_off = arena_.layout().heap_at(r) + src.offset + c.src_offset;
  const uint64_t dst_off = peer->node->layout.heap_at(dst_local) + dst.offset + c.dst_offset;
  absl::StatusOr<transport::Ticket> ticket =
      peer->node->endpoint->Put(fabric_->arena_region(), src_off, *peer->node->arena, dst_off,
                                c.length, EncodeImm(r, dst_local, c.tag));
  if (!ticket.ok()) {
    Complete(r, s.generation, c.id, ticket.status());
    if (!peer->node->endpoint->status().ok()) FailPeer(*peer, peer->node->endpoint->status());
    return;
  }
  peer->in_flight.push_back({*ticket, r, s.generation, c.id});
  ++in_flight_total_;
  in_flight_.store(in_flight_total_, std::memory_order_relaxed);
  AtomicCounters& k = *counters_[static_cast<size_t>(r)];
  k.puts.fetch_add(1, std::memory_order_relaxed);
  k.bytes_inter.fetch_add(c.length, std::memory_order_relaxed);
  inter_puts_.fetch_add(1, std::memory_order_relaxed);
  inter_bytes_.fetch_add(c.length, std::memory_order_relaxed);
}

void Proxy::Complete(int r, uint32_t generation, uint64_t id, const absl::Status& status) {
  Slot& s = slots_[static_cast<size_t>(r)];
  if (!s.active || s.broken || s.generation != generation) return;  // detached since
  Completion done{};
  done.id = id;
  done.code = static_cast<int32_t>(status.code());
  const size_t n = std::min(status.message().size(), sizeof(done.message));
  std::memcpy(done.message, status.message().data(), n);
  done.message_length = static_cast<uint32_t>(n);
  const RingResult res = s.completions.TryPush(done);
  if (res != RingResult::kOk) {
    // A rank that respects its credits always leaves room.
    BreakRank(r, absl::DataLossError(absl::StrCat("local rank ", r,
                                                  res == RingResult::kFull
                                                      ? " posted more commands than its "
                                                        "completion credits"
                                                      : " corrupted its completion ring")));
    return;
  }
  s.ring_completion_bell = true;
}

void Proxy::Notify(int dst_local, const NotificationEntry& n) {
  Slot& s = slots_[static_cast<size_t>(dst_local)];
  if (!s.active || s.broken) {
    TR_LOG_ONCE(WARNING, kLog) << "dropping a notification for local rank " << dst_local
                               << ", which is not attached";
    return;
  }
  counters_[static_cast<size_t>(dst_local)]->notifications.fetch_add(1, std::memory_order_relaxed);
  notifications_delivered_.fetch_add(1, std::memory_order_relaxed);
  if (s.overflow.empty()) {
    const RingResult res = s.notifications.TryPush(n);
    if (res == RingResult::kOk) {
      s.ring_notify_bell = true;
      return;
    }
    if (res == RingResult::kCorrupt) {
      BreakRank(dst_local, absl::DataLossError(absl::StrCat("local rank ", dst_local,
                                                            " corrupted its notification ring")));
      return;
    }
  }
  // The rank is not polling fast enough: keep order by queueing behind.
  s.overflow.push_back(n);
}

size_t Proxy::FlushOverflow() {
  size_t moved = 0;
  overflow_pending_ = false;
  for (int r = 0; r < config_.ranks_per_node; ++r) {
    Slot& s = slots_[static_cast<size_t>(r)];
    if (!s.overflow.empty()) overflow_pending_ = true;
    while (!s.overflow.empty()) {
      const RingResult res = s.notifications.TryPush(s.overflow.front());
      if (res != RingResult::kOk) break;
      s.overflow.pop_front();
      s.ring_notify_bell = true;
      ++moved;
    }
  }
  return moved;
}

}  // namespace runtime
}  // namespace tokenrail
