#include "runtime/arena/layout.h"

#include "absl/strings/str_cat.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

}  // namespace

absl::StatusOr<ArenaLayout> ComputeArenaLayout(uint64_t total_bytes, int local_ranks) {
  if (local_ranks < 1 || local_ranks > kMaxLocalRanks) {
    return absl::InvalidArgumentError(
        absl::StrCat("arena: local rank count ", local_ranks, " is outside 1..", kMaxLocalRanks));
  }
  ArenaLayout l;
  l.total_bytes = total_bytes;
  l.local_ranks = static_cast<uint32_t>(local_ranks);
  l.control_offset = RoundUp(sizeof(ArenaHeader), kArenaPage);
  l.command_slots = RoundUp(sizeof(RankControl), kArenaPage);
  l.completion_slots = l.command_slots + uint64_t{kCommandEntries} * sizeof(Command);
  l.notify_slots = l.completion_slots + uint64_t{kCompletionEntries} * sizeof(Completion);
  l.control_stride =
      RoundUp(l.notify_slots + uint64_t{kNotifyEntries} * sizeof(NotificationEntry), kArenaPage);
  l.heap_offset = l.control_offset + local_ranks * l.control_stride;
  const uint64_t minimum = l.heap_offset + local_ranks * kArenaPage;
  if (total_bytes < minimum || total_bytes % kArenaPage != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("arena: ", total_bytes, " bytes cannot serve ", local_ranks,
                     " ranks (need a multiple of ", kArenaPage, " bytes and at least ", minimum,
                     ": ", l.heap_offset, " of rings plus one page of heap per rank)"));
  }
  l.heap_stride = (total_bytes - l.heap_offset) / local_ranks / kArenaPage * kArenaPage;
  return l;
}

}  // namespace runtime
}  // namespace tokenrail
