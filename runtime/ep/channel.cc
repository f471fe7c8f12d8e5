#include "runtime/ep/channel.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tokenrail {
namespace ep {

void WakeEngine(EngineBell* b) {
  b->events.fetch_add(1, std::memory_order_release);
  runtime::RingDoorbell(b->bell);
}

ChannelWriter::ChannelWriter(RingCounters* counters, char* slots, size_t slot_bytes,
                             uint64_t slots_count, EngineBell* consumer, std::string name)
    : counters_(counters),
      slots_(slots),
      slot_bytes_(slot_bytes),
      count_(slots_count),
      consumer_(consumer),
      name_(std::move(name)),
      head_(counters->head.load(std::memory_order_relaxed)),
      published_(head_),
      tail_(counters->tail.load(std::memory_order_acquire)) {}

absl::Status ChannelWriter::RefreshTail() {
  const uint64_t tail = counters_->tail.load(std::memory_order_acquire);
  if (tail > published_ || published_ - tail > count_ || tail < tail_) {
    return absl::DataLossError(absl::StrCat(name_, ": consumer position ", tail,
                                            " is impossible (published ", published_, ", ring of ",
                                            count_, ")"));
  }
  tail_ = tail;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ChannelWriter::Free() {
  if (head_ - tail_ >= count_) {
    absl::Status s = RefreshTail();
    if (!s.ok()) return s;
  }
  return count_ - (head_ - tail_);
}

void ChannelWriter::Publish() {
  if (published_ == head_) return;
  published_ = head_;
  counters_->head.store(head_, std::memory_order_release);
  WakeEngine(consumer_);
}

absl::StatusOr<bool> ChannelWriter::WriteMessage(const char* data, size_t len) {
  const uint64_t n = (len + slot_bytes_ - 1) / slot_bytes_;
  absl::StatusOr<uint64_t> free = Free();
  if (!free.ok()) return free.status();
  if (*free < n) {
    // Free() only rereads when full; look again for a multi-slot message.
    absl::Status s = RefreshTail();
    if (!s.ok()) return s;
    if (count_ - (head_ - tail_) < n) return false;
  }
  for (uint64_t i = 0; i < n; ++i) {
    const size_t off = i * slot_bytes_;
    std::memcpy(Slot(i), data + off, std::min(slot_bytes_, len - off));
  }
  Commit(n);
  Publish();
  return true;
}

ChannelReader::ChannelReader(RingCounters* counters, const char* slots, size_t slot_bytes,
                             uint64_t slots_count, EngineBell* producer, std::string name)
    : counters_(counters),
      slots_(slots),
      slot_bytes_(slot_bytes),
      count_(slots_count),
      producer_(producer),
      name_(std::move(name)),
      tail_(counters->tail.load(std::memory_order_relaxed)),
      published_(tail_),
      head_(counters->head.load(std::memory_order_acquire)) {}

absl::Status ChannelReader::RefreshHead() {
  const uint64_t head = counters_->head.load(std::memory_order_acquire);
  if (head < tail_ || head - published_ > count_ || head < head_) {
    return absl::DataLossError(absl::StrCat(name_, ": producer position ", head,
                                            " is impossible (consumed ", tail_, ", ring of ",
                                            count_, ")"));
  }
  head_ = head;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ChannelReader::Available() {
  if (head_ == tail_) {
    absl::Status s = RefreshHead();
    if (!s.ok()) return s;
  }
  return head_ - tail_;
}

void ChannelReader::Publish() {
  if (published_ == tail_) return;
  published_ = tail_;
  counters_->tail.store(tail_, std::memory_order_release);
  WakeEngine(producer_);
}

absl::StatusOr<bool> ChannelReader::ReadMessage(size_t len, std::string* out) {
  const uint64_t n = (len + slot_bytes_ - 1) / slot_bytes_;
  if (head_ - tail_ < n) {
    absl::Status s = RefreshHead();
    if (!s.ok()) return s;
    if (head_ - tail_ < n) return false;
  }
  out->resize(len);
  for (uint64_t i = 0; i < n; ++i) {
    const size_t off = i * slot_bytes_;
    std::memcpy(out->data() + off, Slot(i), std::min(slot_bytes_, len - off));
  }
  Release(n);
  Publish();
  return true;
}

}  // namespace ep
}  // namespace tokenrail
