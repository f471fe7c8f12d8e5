#include "runtime/arena/arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr int kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

absl::StatusOr<char*> MapShared(int fd, uint64_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    return StatusFromErrno(errno, absl::StrCat("arena: mmap of ", size, " bytes"));
  }
  return static_cast<char*>(p);
}

// Compares one header field with the value this binary computes.
absl::Status Expect(absl::string_view field, uint64_t got, uint64_t want) {
  if (got == want) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("arena: header field ", field, " is ", got, ", this client expects ", want,
                   " (daemon and client built from different versions?)"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Arena>> Arena::Create(uint64_t total_bytes, int local_ranks,
                                                     int node_id) {
  TR_ASSIGN_OR_RETURN(ArenaLayout layout, ComputeArenaLayout(total_bytes, local_ranks));
  UniqueFd fd(::memfd_create("tokenrail-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return StatusFromErrno(errno, "arena: memfd_create");
  if (::ftruncate(fd.get(), static_cast<off_t>(total_bytes)) != 0) {
    return StatusFromErrno(errno, absl::StrCat("arena: ftruncate to ", total_bytes, " bytes"));
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, kSeals) != 0) {
    return StatusFromErrno(errno, "arena: sealing the memfd");
  }
  TR_ASSIGN_OR_RETURN(char* base, MapShared(fd.get(), total_bytes));
  std::unique_ptr<Arena> arena(new Arena(std::move(fd), base, layout));

  // The memfd is zero-filled: atomics and rings start at zero. Only the
  // identifying fields need writing.
  ArenaHeader& h = *new (base) ArenaHeader;
  h.magic = kArenaMagic;
  h.version = kArenaVersion;
  h.local_ranks = static_cast<uint32_t>(local_ranks);
  h.total_bytes = total_bytes;
  h.control_offset = layout.control_offset;
  h.control_stride = layout.control_stride;
  h.heap_offset = layout.heap_offset;
  h.heap_stride = layout.heap_stride;
  h.command_entries = kCommandEntries;
  h.completion_entries = kCompletionEntries;
  h.notify_entries = kNotifyEntries;
  h.node_id = node_id;
  h.daemon_pid = static_cast<int32_t>(::getpid());
  for (int r = 0; r < local_ranks; ++r) new (base + layout.control_at(r)) RankControl;
  return arena;
}

absl::StatusOr<std::unique_ptr<Arena>> Arena::Map(UniqueFd fd, int expected_local_ranks) {
  const int seals = ::fcntl(fd.get(), F_GET_SEALS);
  if (seals < 0) return StatusFromErrno(errno, "arena: reading the seals of the received fd");
  if ((seals & F_SEAL_SHRINK) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "arena: received fd is not sealed against shrinking (seals 0x", absl::Hex(seals), ")"));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return StatusFromErrno(errno, "arena: fstat");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < sizeof(ArenaHeader)) {
    return absl::InvalidArgumentError(
        absl::StrCat("arena: received file has ", size, " bytes, less than a header"));
  }
  TR_ASSIGN_OR_RETURN(ArenaLayout layout, ComputeArenaLayout(size, expected_local_ranks));
  TR_ASSIGN_OR_RETURN(char* base, MapShared(fd.get(), size));
  std::unique_ptr<Arena> arena(new Arena(std::move(fd), base, layout));
  const ArenaHeader& h = arena->header();
  if (h.magic != kArenaMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat("arena: bad magic 0x", absl::Hex(h.magic), " (not a tokenrail arena)"));
  }
  TR_RETURN_IF_ERROR(Expect("version", h.version, kArenaVersion));
  TR_RETURN_IF_ERROR(Expect("local_ranks", h.local_ranks, layout.local_ranks));
  TR_RETURN_IF_ERROR(Expect("total_bytes", h.total_bytes, size));
  TR_RETURN_IF_ERROR(Expect("control_offset", h.control_offset, layout.control_offset));
  TR_RETURN_IF_ERROR(Expect("control_stride", h.control_stride, layout.control_stride));
  TR_RETURN_IF_ERROR(Expect("heap_offset", h.heap_offset, layout.heap_offset));
  TR_RETURN_IF_ERROR(Expect("heap_stride", h.heap_stride, layout.heap_stride));
  TR_RETURN_IF_ERROR(Expect("command_entries", h.command_entries, kCommandEntries));
  TR_RETURN_IF_ERROR(Expect("completion_entries", h.completion_entries, kCompletionEntries));
  TR_RETURN_IF_ERROR(Expect("notify_entries", h.notify_entries, kNotifyEntries));
  return arena;
}

Arena::~Arena() {
  if (base_ != nullptr) ::munmap(base_, layout_.total_bytes);
}

void Arena::ResetRank(int r) const {
  RankControl& c = control(r);
  ResetRing(&c.commands);
  ResetRing(&c.completions);
  ResetRing(&c.notifications);
  WriteEpStats(c.ep_stats, 0, nullptr, 0);  // a new rank starts from zero
}

void WriteEpStats(RankEpStats& stats, uint64_t direct_bytes_intra_node,
                  const uint64_t* tokens_per_expert, int experts) {
  const int n = std::min(std::max(experts, 0), kMaxEpStatsExperts);
  const uint64_t s = stats.seq.load(std::memory_order_relaxed) & ~uint64_t{1};
  stats.seq.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  stats.direct_bytes_intra_node.store(direct_bytes_intra_node, std::memory_order_relaxed);
  stats.experts.store(static_cast<uint32_t>(n), std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) {
    stats.tokens_per_expert[i].store(tokens_per_expert[i], std::memory_order_relaxed);
  }
  stats.seq.store(s + 2, std::memory_order_release);
}

bool ReadEpStats(const RankEpStats& stats, EpStatsSnapshot* out) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    const uint64_t s1 = stats.seq.load(std::memory_order_acquire);
    if (s1 & 1) continue;
    out->direct_bytes_intra_node = stats.direct_bytes_intra_node.load(std::memory_order_relaxed);
    const uint32_t n =
        std::min<uint32_t>(stats.experts.load(std::memory_order_relaxed), kMaxEpStatsExperts);
    out->tokens_per_expert.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      out->tokens_per_expert[i] = stats.tokens_per_expert[i].load(std::memory_order_relaxed);
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (stats.seq.load(std::memory_order_relaxed) == s1) return true;
  }
  return false;
}

bool Arena::PublishFailure(const absl::Status& status, FailureOrigin origin) const {
  FailureRecord& f = header().failure;
  uint32_t expected = kFailureUnset;
  if (!f.state.compare_exchange_strong(expected, kFailureWriting, std::memory_order_acq_rel)) {
    return false;
  }
  f.code = static_cast<int32_t>(status.ok() ? absl::StatusCode::kUnavailable : status.code());
  f.node_id = origin.node_id;
  f.global_rank = origin.global_rank;
  const size_t n = std::min(status.message().size(), sizeof(f.message));
  std::memcpy(f.message, status.message().data(), n);
  f.message_length = static_cast<uint32_t>(n);
  f.state.store(kFailurePublished, std::memory_order_release);
  WakeAll();
  return true;
}

absl::Status Arena::failure() const {
  const FailureRecord& f = header().failure;
  if (f.state.load(std::memory_order_acquire) != kFailurePublished) return absl::OkStatus();
  const size_t n = std::min<size_t>(f.message_length, sizeof(f.message));
  int code = f.code;
  // The record is in memory a rank can write: keep the code canonical.
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<int>(absl::StatusCode::kUnavailable);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), absl::string_view(f.message, n));
}

FailureOrigin Arena::failure_origin() const {
  const FailureRecord& f = header().failure;
  return {f.node_id, f.global_rank};
}

void Arena::WakeAll() const {
  RingDoorbellAll(header().proxy_bell);
  for (int r = 0; r < local_ranks(); ++r) {
    RingDoorbellAll(control(r).completion_bell);
    RingDoorbellAll(control(r).notify_bell);
  }
}

}  // namespace runtime
}  // namespace tokenrail
