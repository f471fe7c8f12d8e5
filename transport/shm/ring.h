// Lock-free single-producer/single-consumer rings in shared memory, and the
// channel that holds one direction of an endpoint.
//
// A channel is one sealed memfd created by the receiving side (so the
// receiver's options size its own buffering) and passed to the sender with
// SCM_RIGHTS. It holds:
//   header            sizes, and two counters the creator publishes about its
//                     own regions: revocations, and the id below which all
//                     its regions were announced (see endpoint.h)
//   notification ring fixed 16-byte slots {seq, imm, length}
//   message ring      a byte ring of framed variable-length records
//
// Sleeping consumer: the creator sets `armed` (see Channel::armed) before it
// sleeps on its event fd; a producer that publishes into a ring with
// `armed` set clears it and sends a wake frame on the side channel. Both
// sides order their store before their check with a seq_cst fence, so
// either the producer sees `armed` or the consumer sees the data.
//
// Notification ring: every slot carries a sequence word (Vyukov's bounded
// queue, specialized to one producer and one consumer). The producer of
// position p waits for seq == p, writes the payload and release-stores
// seq = p + 1; the consumer waits for seq == p + 1, reads and release-stores
// seq = p + entries. Each side polls only the slot it is about to use, so an
// 8-byte put plus its notification moves one cache line between the cores,
// with no shared head/tail words for both sides to bounce.
//
// Message ring: head (producer) and tail (consumer) on their own cache lines;
// each side caches the other's index and rereads it only when the cached
// value says the ring is full (producer) or empty (consumer). Records are
// {u32 length, u32 magic} + payload padded to 8 bytes; a record may wrap.
//
// Nothing read from shared memory is trusted for memory safety: every access
// is masked into the ring, and a consumer that finds a corrupt record reports
// DataLoss instead of reading past it.
//
// Thread safety: each producer and consumer object is used by one thread;
// the producer and the consumer of a ring may run concurrently (in different
// threads or processes).
#ifndef TOKENRAIL_TRANSPORT_SHM_RING_H_
#define TOKENRAIL_TRANSPORT_SHM_RING_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fd.h"
#include "transport/shm/mapping.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {
namespace shm {

inline constexpr size_t kCacheLine = 64;

struct NotifySlot {
  std::atomic<uint32_t> seq;
  uint32_t imm;
  uint64_t length;
};
static_assert(sizeof(NotifySlot) == 16, "notification slot layout");
static_assert(std::atomic<uint32_t>::is_always_lock_free &&
                  std::atomic<uint64_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free to work across processes");

struct RingIndexes {
  alignas(kCacheLine) std::atomic<uint64_t> head;  // written by the producer only
  alignas(kCacheLine) std::atomic<uint64_t> tail;  // written by the consumer only
};
static_assert(sizeof(RingIndexes) == 2 * kCacheLine, "ring index layout");

class NotifyProducer {
 public:
  NotifyProducer() = default;
  // `slots` holds `entries` (a power of two) slots initialized by InitNotifySlots.
  NotifyProducer(NotifySlot* slots, uint32_t entries) : slots_(slots), mask_(entries - 1) {}
  // Publishes {imm, length}; false when the ring is full. Release semantics:
  // everything written before the call is visible to the consumer that pops it.
  bool TryPush(uint32_t imm, uint64_t length) {
    NotifySlot& s = slots_[head_ & mask_];
    if (s.seq.load(std::memory_order_acquire) != static_cast<uint32_t>(head_)) return false;
    s.imm = imm;
    s.length = length;
    s.seq.store(static_cast<uint32_t>(head_ + 1), std::memory_order_release);
    ++head_;
    return true;
  }

 private:
  NotifySlot* slots_ = nullptr;
  uint64_t mask_ = 0;
  uint64_t head_ = 0;
};

class NotifyConsumer {
 public:
  NotifyConsumer() = default;
  NotifyConsumer(NotifySlot* slots, uint32_t entries)
      : slots_(slots), mask_(entries - 1), entries_(entries) {}
  // Pops one notification; false when the ring is empty.
  bool TryPop(Notification* out) {
    NotifySlot& s = slots_[tail_ & mask_];
    if (s.seq.load(std::memory_order_acquire) != static_cast<uint32_t>(tail_ + 1)) return false;
    out->imm = s.imm;
    out->length = static_cast<size_t>(s.length);
    s.seq.store(static_cast<uint32_t>(tail_ + entries_), std::memory_order_release);
    ++tail_;
    return true;
  }
  // True when TryPop would find a notification.
  bool HasData() const {
    return slots_[tail_ & mask_].seq.load(std::memory_order_acquire) ==
           static_cast<uint32_t>(tail_ + 1);
  }

 private:
  NotifySlot* slots_ = nullptr;
  uint64_t mask_ = 0;
  uint64_t entries_ = 0;
  uint64_t tail_ = 0;
};

// Prepares `entries` slots for first use (slot i expects producer position i).
void InitNotifySlots(NotifySlot* slots, uint32_t entries);

class MessageProducer {
 public:
  MessageProducer() = default;
  // `bytes` holds `capacity` (a power of two) bytes.
  MessageProducer(RingIndexes* idx, char* bytes, uint64_t capacity)
      : idx_(idx), bytes_(bytes), capacity_(capacity) {}
  // Appends one record; false when it does not fit now. `message` must be at
  // most kMaxMessageSize bytes (the caller checks).
  bool TryPush(absl::string_view message);

 private:
  RingIndexes* idx_ = nullptr;
  char* bytes_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t head_ = 0;
  uint64_t cached_tail_ = 0;
};

class MessageConsumer {
 public:
  MessageConsumer() = default;
  MessageConsumer(RingIndexes* idx, char* bytes, uint64_t capacity)
      : idx_(idx), bytes_(bytes), capacity_(capacity) {}
  // Moves the oldest record into `out` and returns true; false when empty;
  // DataLoss when the ring holds a malformed record (the producer is broken).
  absl::StatusOr<bool> TryPop(std::string* out);
  // True when the ring holds a record (or garbage TryPop will report).
  bool HasData() const { return idx_->head.load(std::memory_order_acquire) != tail_; }

 private:
  RingIndexes* idx_ = nullptr;
  char* bytes_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t tail_ = 0;
  uint64_t cached_head_ = 0;
};

// Byte size of a message record holding `length` payload bytes.
uint64_t MessageRecordSize(size_t length);

// One direction of an endpoint, mapped. Move-only.
class Channel {
 public:
  // Creates and initializes a channel; the creator is its consumer. fd() can
  // be passed to the producer.
  static absl::StatusOr<Channel> Create(uint32_t notify_entries, uint64_t message_bytes);
  // Maps a channel a peer created and validates its header against the file;
  // the attacher is its producer. `what` names it in errors.
  static absl::StatusOr<Channel> Attach(int fd, absl::string_view what);

  int fd() const { return file_.fd.get(); }
  uint32_t notify_entries() const { return notify_entries_; }
  uint64_t message_bytes() const { return message_bytes_; }

  NotifyProducer notify_producer() { return NotifyProducer(slots_, notify_entries_); }
  NotifyConsumer notify_consumer() { return NotifyConsumer(slots_, notify_entries_); }
  MessageProducer message_producer() { return MessageProducer(indexes_, bytes_, message_bytes_); }
  MessageConsumer message_consumer() { return MessageConsumer(indexes_, bytes_, message_bytes_); }

  // Count of region revocations the channel's creator has sent.
  std::atomic<uint64_t>& revocations() const { return *revocations_; }
  // Every region id of the creator below this value has been announced.
  std::atomic<uint64_t>& announced() const { return *announced_; }
  // Non-zero while the creator (the consumer) may sleep on its event fd and
  // wants a wake frame after the next publication (see above).
  std::atomic<uint32_t>& armed() const { return *armed_; }

 private:
  Channel() = default;
  // Sets the pointers from the mapping and the validated sizes.
  void Bind(uint32_t notify_entries, uint64_t message_bytes);

  SharedFile file_;  // fd valid only on the creating side
  uint32_t notify_entries_ = 0;
  uint64_t message_bytes_ = 0;
  NotifySlot* slots_ = nullptr;
  RingIndexes* indexes_ = nullptr;
  char* bytes_ = nullptr;
  std::atomic<uint64_t>* revocations_ = nullptr;
  std::atomic<uint64_t>* announced_ = nullptr;
  std::atomic<uint32_t>* armed_ = nullptr;
};

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_SHM_RING_H_
