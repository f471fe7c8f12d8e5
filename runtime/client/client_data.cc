// RankClient's data path: commands on the arena's rings, completions and
// notifications, futex-backed waits. No syscalls while the daemon keeps up.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "runtime/client/client.h"

namespace tokenrail {
namespace runtime {
namespace {

// Longest futex sleep between liveness and deadline checks.
constexpr int64_t kSleepSliceNs = 5'000'000;

absl::StatusCode CanonicalCode(int32_t code) {
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::StatusCode::kInternal;
  }
  return static_cast<absl::StatusCode>(code);
}

}  // namespace

template <typename Ready>
absl::Status RankClient::WaitFor(Doorbell& bell, Ready ready, absl::Time deadline,
                                 const char* what) {
  int64_t spin_ns = absl::ToInt64Nanoseconds(options_.spin);
  // Wake up for a failure too: PublishFailure rings every doorbell.
  auto wake = [&] { return ready() || !sticky_.ok() || arena_->failed(); };
  for (;;) {
    if (ready()) return absl::OkStatus();
    TR_RETURN_IF_ERROR(CheckAlive());
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat("timed out waiting for ", what));
    }
    SpinThenSleep(bell, wake, spin_ns, std::min(kSleepSliceNs, absl::ToInt64Nanoseconds(left)));
    spin_ns = 0;
  }
}

absl::Status RankClient::CheckRegion(const Region& r, size_t off, size_t len,
                                     const char* which) const {
  if (r.id >= regions_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("Put: ", which, " region id ", r.id,
                                                   " is not allocated (this rank has ",
                                                   regions_.size(), " regions)"));
  }
  const RegionInfo& info = regions_[r.id];
  if (r.size != info.size) {
    return absl::InvalidArgumentError(absl::StrCat("Put: ", which, " region ", r.id, " has ",
                                                   info.size, " bytes, the Region passed says ",
                                                   r.size));
  }
  if (off > info.size || len > info.size - off) {
    return absl::InvalidArgumentError(absl::StrCat("Put: ", which, " range [", off, ", ", off,
                                                   " + ", len, ") exceeds region ", r.id, " of ",
                                                   info.size, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status RankClient::Reap() {
  Completion c;
  for (;;) {
    const RingResult r = completions_.TryPop(&c);
    if (r == RingResult::kEmpty) return absl::OkStatus();
    if (r != RingResult::kOk) {
      return Fail(absl::DataLossError(absl::StrCat(daemon_name_, ": completion ring is corrupt")));
    }
    if (c.id == 0 || c.id >= next_id_ || Done(c.id)) {
      return Fail(
          absl::InternalError(absl::StrCat(daemon_name_, " completed unknown command ", c.id)));
    }
    ++reaped_;
    if (c.code != 0) {
      const size_t n = std::min<size_t>(c.message_length, sizeof(c.message));
      errors_.emplace(
          c.id, absl::Status(CanonicalCode(c.code),
                             absl::StrCat("put ", c.id, ": ", absl::string_view(c.message, n))));
    }
    if (c.id == completed_below_) {
      ++completed_below_;
      while (!completed_ahead_.empty() && *completed_ahead_.begin() == completed_below_) {
        completed_ahead_.erase(completed_ahead_.begin());
        ++completed_below_;
      }
    } else {
      completed_ahead_.insert(c.id);
    }
  }
}

bool RankClient::Done(uint64_t id) const {
  return id < completed_below_ || completed_ahead_.count(id) != 0;
}

absl::Status RankClient::Post(Command& cmd, uint64_t* id) {
  TR_RETURN_IF_ERROR(Reap());
  // One completion credit per command: the daemon can then always complete
  // what it consumes, and the command ring cannot overflow either.
  auto has_credit = [&] {
    (void)Reap();
    return next_id_ - 1 - reaped_ < kCommandEntries || !sticky_.ok();
  };
  if (!has_credit()) {
    TR_RETURN_IF_ERROR(WaitFor(arena_->control(topology_.local_rank).completion_bell, has_credit,
                               absl::Now() + options_.op_timeout, "a free command slot"));
    TR_RETURN_IF_ERROR(CheckAlive());
  }
  cmd.id = next_id_;
  if (commands_.TryPush(cmd) != RingResult::kOk) {
    return Fail(absl::DataLossError(
        absl::StrCat("command ring to ", daemon_name_, " is corrupt or full despite credits")));
  }
  ++next_id_;
  RingDoorbell(arena_->header().proxy_bell);
  *id = cmd.id;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> RankClient::Put(const Region& src, size_t src_off, int dst_rank,
                                         const Region& dst, size_t dst_off, size_t len,
                                         uint32_t tag) {
  TR_RETURN_IF_ERROR(CheckUsable());
  TR_RETURN_IF_ERROR(CheckRegion(src, src_off, len, "source"));
  if (dst_rank < 0 || dst_rank >= topology_.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("Put: destination rank ", dst_rank,
                                                   " is outside 0..", topology_.world_size - 1));
  }
  TR_RETURN_IF_ERROR(CheckRegion(dst, dst_off, len, "destination"));
  if (tag > kMaxTag) {
    return absl::InvalidArgumentError(
        absl::StrCat("Put: tag ", tag, " exceeds ", kMaxTag, " (tags have 16 bits)"));
  }
  Command c{};
  c.op = static_cast<uint8_t>(CommandOp::kPut);
  c.tag = tag;
  c.dst_rank = dst_rank;
  c.src_region = src.id;
  c.dst_region = dst.id;
  c.src_offset = src_off;
  c.dst_offset = dst_off;
  c.length = len;
  uint64_t id;
  TR_RETURN_IF_ERROR(Post(c, &id));
  return id;
}

absl::StatusOr<bool> RankClient::IsComplete(uint64_t id) {
  if (detached_) return absl::FailedPreconditionError("rank client is detached");
  if (id == 0 || id >= next_id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown put id ", id, " (ids issued so far: 1..", next_id_ - 1, ")"));
  }
  TR_RETURN_IF_ERROR(CheckAlive());
  TR_RETURN_IF_ERROR(Reap());
  if (!Done(id)) return false;
  auto it = errors_.find(id);
  if (it == errors_.end()) return true;
  absl::Status s = std::move(it->second);
  errors_.erase(it);
  return s;
}

absl::Status RankClient::WaitComplete(uint64_t id, absl::Time deadline) {
  TR_ASSIGN_OR_RETURN(bool done, IsComplete(id));
  if (done) return absl::OkStatus();
  TR_RETURN_IF_ERROR(WaitFor(
      arena_->control(topology_.local_rank).completion_bell,
      [&] {
        (void)Reap();
        return Done(id) || !sticky_.ok();
      },
      deadline, "a put to complete"));
  TR_ASSIGN_OR_RETURN(done, IsComplete(id));
  return done ? absl::OkStatus() : absl::InternalError("put not complete after its wait");
}

absl::Status RankClient::WaitAll(absl::Time deadline) {
  if (detached_) return absl::FailedPreconditionError("rank client is detached");
  TR_RETURN_IF_ERROR(WaitFor(
      arena_->control(topology_.local_rank).completion_bell,
      [&] {
        (void)Reap();
        return completed_below_ == next_id_ || !sticky_.ok();
      },
      deadline, "every put to complete"));
  TR_RETURN_IF_ERROR(CheckAlive());
  if (errors_.empty()) return absl::OkStatus();
  absl::Status first = errors_.begin()->second;
  const size_t more = errors_.size() - 1;
  errors_.clear();
  if (more == 0) return first;
  return absl::Status(first.code(),
                      absl::StrCat(first.message(), " (and ", more, " more puts failed)"));
}

absl::StatusOr<size_t> RankClient::PollNotifications(RankNotification* out, size_t max) {
  TR_RETURN_IF_ERROR(CheckUsable());
  size_t n = 0;
  NotificationEntry e;
  while (n < max) {
    const RingResult r = notifications_.TryPop(&e);
    if (r == RingResult::kEmpty) break;
    if (r != RingResult::kOk || e.src_rank < 0 || e.src_rank >= topology_.world_size) {
      return Fail(absl::DataLossError(absl::StrCat(
          daemon_name_, ": notification ring is corrupt (source rank ", e.src_rank, ")")));
    }
    out[n++] = RankNotification{e.src_rank, e.tag, static_cast<size_t>(e.length)};
  }
  return n;
}

absl::StatusOr<RankNotification> RankClient::WaitNotification(absl::Time deadline) {
  RankNotification n;
  for (;;) {
    TR_ASSIGN_OR_RETURN(size_t got, PollNotifications(&n, 1));
    if (got == 1) return n;
    TR_RETURN_IF_ERROR(WaitFor(
        arena_->control(topology_.local_rank).notify_bell, [&] { return notifications_.HasData(); },
        deadline, "a notification"));
  }
}

absl::Status RankClient::Ping(absl::Time deadline) {
  TR_RETURN_IF_ERROR(CheckUsable());
  Command c{};
  c.op = static_cast<uint8_t>(CommandOp::kNop);
  uint64_t id;
  TR_RETURN_IF_ERROR(Post(c, &id));
  return WaitComplete(id, deadline);
}

void* RankClient::LocalPeerData(const Region& region, int local_rank) const {
  if (region.id >= regions_.size() || local_rank < 0 || local_rank >= topology_.ranks_per_node) {
    return nullptr;
  }
  return arena_->heap(local_rank) + regions_[region.id].offset;
}

void RankClient::PublishEpStats(uint64_t direct_bytes_intra_node, const uint64_t* tokens_per_expert,
                                int experts) {
  WriteEpStats(arena_->control(topology_.local_rank).ep_stats, direct_bytes_intra_node,
               tokens_per_expert, experts);
}

}  // namespace runtime
}  // namespace tokenrail
