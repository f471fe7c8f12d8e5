// ShmEndpoint: the data path (puts, tickets, notifications, messages, waits).
// The side channel, keys and failure handling are in endpoint_control.cc.
#include "transport/shm/endpoint.h"

#include <atomic>
#include <cstring>

#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "transport/shm/context.h"
#include "transport/shm/options.h"
#include "transport/shm/wait.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

uint64_t NextEndpointSerial() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// True when [offset, offset + length) lies inside `size` bytes, without
// overflow.
bool InRange(size_t offset, size_t length, size_t size) {
  return offset <= size && length <= size - offset;
}

}  // namespace

ShmEndpoint::ShmEndpoint(ShmContext* ctx, AddressInfo peer, SocketChannel sock, Channel inbound,
                         Channel outbound)
    : serial_(NextEndpointSerial()),
      ctx_(ctx),
      peer_(std::move(peer)),
      peer_label_(absl::StrCat("peer '", peer_.name, "' (pid ", peer_.pid, ")")),
      sock_(std::move(sock)),
      inbound_(std::move(inbound)),
      outbound_(std::move(outbound)),
      notify_out_(outbound_.notify_producer()),
      notify_in_(inbound_.notify_consumer()),
      message_out_(outbound_.message_producer()),
      message_in_(inbound_.message_consumer()) {}

ShmEndpoint::~ShmEndpoint() {
  if (ctx_ != nullptr) ctx_->DetachEndpoint(this);
}

absl::StatusOr<Ticket> ShmEndpoint::Put(const MemoryRegion& src, size_t src_offset,
                                        const RemoteRegion& dst, size_t dst_offset, size_t length,
                                        uint32_t imm) {
  if (ABSL_PREDICT_FALSE(!status_.ok())) return status_;
  const auto* remote = dynamic_cast<const ShmRemoteRegion*>(&dst);
  if (remote == nullptr || remote->endpoint_serial() != serial_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shm: put destination was not unpacked on this endpoint (to ", peer_label_, ")"));
  }
  if (src.kind() != MemoryKind::kHost) {
    return absl::InvalidArgumentError("shm: put source must be host memory");
  }
  if (!InRange(src_offset, length, src.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm: put source range offset ", src_offset, " length ", length,
                     " exceeds the source region of ", src.size(), " bytes"));
  }
  if (!InRange(dst_offset, length, dst.size())) {
    return absl::InvalidArgumentError(absl::StrCat("shm: put destination range offset ", dst_offset,
                                                   " length ", length, " exceeds remote region ",
                                                   remote->region().id, " of ", dst.size(),
                                                   " bytes at ", peer_label_));
  }
  // One cached load; differs only after the peer released a region.
  if (ABSL_PREDICT_FALSE(outbound_.revocations().load(std::memory_order_acquire) !=
                         revocations_seen_)) {
    TR_RETURN_IF_ERROR(SyncRevocations());
  }
  if (ABSL_PREDICT_FALSE(remote->region().revoked)) {
    return absl::InvalidArgumentError(absl::StrCat("shm: remote region ", remote->region().id,
                                                   " is no longer registered at ", peer_label_,
                                                   "; nothing was written"));
  }
  if (length != 0) {
    std::memcpy(remote->data() + dst_offset, static_cast<const char*>(src.data()) + src_offset,
                length);
  }
  PushNotification(imm, length);
  // A caller that only puts must still notice a dead peer: check the side
  // channel every kPutsPerService puts or kBytesPerService bytes, whichever
  // comes first (one syscall against megabytes of memcpy).
  bytes_since_service_ += length;
  if (ABSL_PREDICT_FALSE(++puts_since_service_ == kPutsPerService ||
                         bytes_since_service_ >= kBytesPerService)) {
    puts_since_service_ = 0;
    bytes_since_service_ = 0;
    Service();
  }
  return ++last_ticket_;
}

void ShmEndpoint::PushNotification(uint32_t imm, uint64_t length) {
  if (ABSL_PREDICT_TRUE(queued_notifications_.empty()) && notify_out_.TryPush(imm, length)) {
    WakePeer();
    return;
  }
  queued_notifications_.push_back(Notification{imm, static_cast<size_t>(length)});
  DrainNotifications();
}

void ShmEndpoint::WakePeer() {
  // Pairs with the fence in ShmContext::ArmEventFd: our ring store before
  // this load, its armed store before its ring check.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::atomic<uint32_t>& armed = outbound_.armed();
  if (ABSL_PREDICT_TRUE(armed.load(std::memory_order_relaxed) == 0)) return;
  if (armed.exchange(0, std::memory_order_relaxed) == 0) return;  // one wake per arming
  const absl::Status s = sock_.Send(FrameType::kWake, "");
  if (!s.ok()) Fail(PeerError(s));
}

void ShmEndpoint::DrainNotifications() {
  bool moved = false;
  while (!queued_notifications_.empty()) {
    const Notification& n = queued_notifications_.front();
    if (!notify_out_.TryPush(n.imm, n.length)) break;
    queued_notifications_.pop_front();
    moved = true;
  }
  if (moved) WakePeer();
}

void ShmEndpoint::DrainMessages() {
  bool moved = false;
  while (!queued_messages_.empty()) {
    if (!message_out_.TryPush(queued_messages_.front())) break;
    queued_messages_.pop_front();
    moved = true;
  }
  if (moved) WakePeer();
}

absl::StatusOr<bool> ShmEndpoint::IsComplete(Ticket ticket) {
  if (!status_.ok()) return status_;
  if (ticket == 0 || ticket > last_ticket_) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm: ticket ", ticket, " was never posted on the endpoint to ", peer_label_,
                     " (last ticket ", last_ticket_, ")"));
  }
  // The memcpy finished inside Put: every posted put is locally complete.
  return true;
}

absl::Status ShmEndpoint::WaitComplete(Ticket ticket, absl::Time deadline) {
  return IsComplete(ticket).status();
}

absl::Status ShmEndpoint::Flush(absl::Time deadline) {
  return Wait(deadline, "flush", [this] {
    DrainNotifications();
    return queued_notifications_.empty();
  });
}

absl::StatusOr<size_t> ShmEndpoint::PollNotifications(Notification* out, size_t max) {
  if (!status_.ok()) return status_;
  if (out == nullptr && max > 0) {
    return absl::InvalidArgumentError("shm: PollNotifications needs an output array");
  }
  size_t n = 0;
  while (n < max && notify_in_.TryPop(&out[n])) ++n;
  if (n == 0) IdlePoll();
  return n;
}

absl::StatusOr<Notification> ShmEndpoint::WaitNotification(absl::Time deadline) {
  Notification n;
  TR_RETURN_IF_ERROR(
      Wait(deadline, "waiting for a notification", [&] { return notify_in_.TryPop(&n); }));
  return n;
}

absl::Status ShmEndpoint::SendMessage(absl::string_view message) {
  if (!status_.ok()) return status_;
  if (message.size() > kMaxMessageSize) {
    return absl::InvalidArgumentError(absl::StrCat("shm: message of ", message.size(),
                                                   " bytes exceeds the limit of ", kMaxMessageSize,
                                                   " bytes"));
  }
  if (queued_messages_.empty() && message_out_.TryPush(message)) {
    WakePeer();
    return absl::OkStatus();
  }
  queued_messages_.emplace_back(message);
  DrainMessages();
  return absl::OkStatus();
}

absl::StatusOr<bool> ShmEndpoint::PollMessage(std::string* out) {
  if (!status_.ok()) return status_;
  if (out == nullptr) return absl::InvalidArgumentError("shm: PollMessage needs an output string");
  absl::StatusOr<bool> got = message_in_.TryPop(out);
  if (!got.ok()) {
    Fail(Annotate(got.status(), absl::StrCat("messages from ", peer_label_)));
    return status_;
  }
  if (!*got) IdlePoll();
  return *got;
}

absl::StatusOr<std::string> ShmEndpoint::WaitMessage(absl::Time deadline) {
  std::string out;
  TR_RETURN_IF_ERROR(Wait(deadline, "waiting for a message", [&] {
    absl::StatusOr<bool> got = message_in_.TryPop(&out);
    if (got.ok()) return *got;
    Fail(Annotate(got.status(), absl::StrCat("messages from ", peer_label_)));
    return false;
  }));
  return out;
}

void ShmEndpoint::IdlePoll() {
  if (ABSL_PREDICT_FALSE(++idle_polls_ == kIdlePollsPerService)) {
    idle_polls_ = 0;
    if (ctx_ != nullptr) (void)ctx_->ProgressAll();
  }
}

absl::Status ShmEndpoint::Wait(absl::Time deadline, absl::string_view what,
                               absl::FunctionRef<bool()> ready) {
  Backoff backoff(ctx_ != nullptr ? ctx_->shm_options().spin : absl::ZeroDuration());
  while (true) {
    if (ABSL_PREDICT_FALSE(!status_.ok())) return status_;
    if (ready()) return absl::OkStatus();
    if (backoff.Next()) {
      // ctx_ is non-null here: DetachContext fails the endpoint.
      (void)ctx_->ProgressAll();
      if (!status_.ok()) return status_;
      if (ready()) return absl::OkStatus();
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("shm: ", what, " on the endpoint to ", peer_label_, " timed out"));
      }
    }
  }
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
