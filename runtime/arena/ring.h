// Single-producer/single-consumer rings of fixed-size entries in shared
// memory (the arena), used between a rank and its daemon in both directions.
//
// Layout: a RingIndexes block (head written only by the producer, tail only
// by the consumer, each on its own cache line) and an array of `entries`
// slots, a power of two. Indices are 64-bit positions that never wrap in
// practice; a slot is positions & (entries - 1).
//
// Memory order: the producer writes the slot, then release-stores head; the
// consumer acquire-loads head, copies the slot out, then release-stores tail,
// which hands the slot back. Each side caches the other's index and rereads
// it only when its cached value says full (producer) or empty (consumer), so
// a steady stream moves only the slot lines and the occasional index line.
//
// Trust: the two sides are different processes and the daemon must survive a
// broken rank. Slot addresses are always masked into the array, entries are
// copied out before they are looked at, and an index that is impossible
// (consumer ahead of producer, or producer more than `entries` ahead) is
// reported as kCorrupt instead of being followed.
//
// Thread safety: one producer object and one consumer object per ring, each
// used by one thread at a time; they may run concurrently in different
// processes.
#ifndef TOKENRAIL_RUNTIME_ARENA_RING_H_
#define TOKENRAIL_RUNTIME_ARENA_RING_H_

#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace tokenrail {
namespace runtime {

inline constexpr size_t kCacheLine = 64;

struct RingIndexes {
  alignas(kCacheLine) std::atomic<uint64_t> head;  // producer position
  alignas(kCacheLine) std::atomic<uint64_t> tail;  // consumer position
};
static_assert(sizeof(RingIndexes) == 2 * kCacheLine, "ring index layout");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared atomics must be lock-free");

enum class RingResult { kOk, kFull, kEmpty, kCorrupt };

template <typename T>
class RingProducer {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  RingProducer() = default;
  // Starts at the ring's current head (zero after ResetRing).
  RingProducer(RingIndexes* idx, T* slots, uint32_t entries)
      : idx_(idx),
        slots_(slots),
        entries_(entries),
        head_(idx->head.load(std::memory_order_relaxed)),
        cached_tail_(idx->tail.load(std::memory_order_acquire)) {}

  // Publishes `v`; kFull when no slot is free, kCorrupt when the consumer's
  // index is impossible.
  RingResult TryPush(const T& v) {
    if (head_ - cached_tail_ >= entries_) {
      const RingResult r = RefreshTail();
      if (r != RingResult::kOk) return r;
      if (head_ - cached_tail_ >= entries_) return RingResult::kFull;
    }
    std::memcpy(static_cast<void*>(&slots_[head_ & (entries_ - 1)]), &v, sizeof(T));
    ++head_;
    idx_->head.store(head_, std::memory_order_release);
    return RingResult::kOk;
  }

  // Entries pushed and not yet consumed (rereads the consumer's index).
  uint64_t InFlight() {
    RefreshTail();
    return head_ - cached_tail_;
  }
  uint64_t position() const { return head_; }

 private:
  RingResult RefreshTail() {
    const uint64_t tail = idx_->tail.load(std::memory_order_acquire);
    if (tail > head_ || head_ - tail > entries_) return RingResult::kCorrupt;
    cached_tail_ = tail;
    return RingResult::kOk;
  }

  RingIndexes* idx_ = nullptr;
  T* slots_ = nullptr;
  uint64_t entries_ = 1;
  uint64_t head_ = 0;
  uint64_t cached_tail_ = 0;
};

template <typename T>
class RingConsumer {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  RingConsumer() = default;
  RingConsumer(RingIndexes* idx, T* slots, uint32_t entries)
      : idx_(idx),
        slots_(slots),
        entries_(entries),
        tail_(idx->tail.load(std::memory_order_relaxed)),
        cached_head_(tail_) {}

  // Copies the oldest entry into `out` and frees its slot.
  RingResult TryPop(T* out) {
    if (tail_ == cached_head_) {
      const RingResult r = RefreshHead();
      if (r != RingResult::kOk) return r;
      if (tail_ == cached_head_) return RingResult::kEmpty;
    }
    std::memcpy(static_cast<void*>(out), &slots_[tail_ & (entries_ - 1)], sizeof(T));
    ++tail_;
    idx_->tail.store(tail_, std::memory_order_release);
    return RingResult::kOk;
  }

  // True when an entry is waiting (or the ring is corrupt: the caller's next
  // TryPop reports it). Cheap enough for spin loops.
  bool HasData() {
    if (tail_ != cached_head_) return true;
    if (RefreshHead() != RingResult::kOk) return true;
    return tail_ != cached_head_;
  }

 private:
  RingResult RefreshHead() {
    const uint64_t head = idx_->head.load(std::memory_order_acquire);
    if (head < tail_ || head - tail_ > entries_) return RingResult::kCorrupt;
    cached_head_ = head;
    return RingResult::kOk;
  }

  RingIndexes* idx_ = nullptr;
  T* slots_ = nullptr;
  uint64_t entries_ = 1;
  uint64_t tail_ = 0;
  uint64_t cached_head_ = 0;
};

// Empties a ring. Only while neither side uses it (before an attach).
inline void ResetRing(RingIndexes* idx) {
  idx->head.store(0, std::memory_order_relaxed);
  idx->tail.store(0, std::memory_order_release);
}

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_ARENA_RING_H_
