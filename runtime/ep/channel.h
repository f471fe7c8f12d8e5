// Intra-node channels: single-producer single-consumer rings of fixed-size
// slots in the CONSUMER's symmetric region, written by the producer with
// direct stores through the shared node arena (no daemon involved).
//
// Counters: head (slots published by the producer) and tail (slots released
// by the consumer) are 64-bit positions that never wrap, in the consumer's
// region on separate cache lines. The producer writes slots, then
// release-stores head; the consumer acquire-loads head, reads, then
// release-stores tail. Both sides cache the other's counter and reread it
// only when the cache says full/empty. After publishing, each side bumps the
// other's EngineBell so a sleeping engine wakes up.
//
// A channel is a continuous stream across operations: operation i+1's
// messages simply follow operation i's, so a fast producer never overwrites
// what a slow consumer has not read, and nothing is reset between operations.
//
// Trust: the other side is another process. A counter that is impossible
// (tail ahead of head, head more than `slots` ahead of tail) is DataLoss.
//
// Thread safety: one writer object and one reader object per ring, each used
// by one thread (the engines of the two ranks).
#ifndef TOKENRAIL_RUNTIME_EP_CHANNEL_H_
#define TOKENRAIL_RUNTIME_EP_CHANNEL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/ep/buffer_plan.h"

namespace tokenrail {
namespace ep {

// Bumps the event count and rings the doorbell of the engine that owns `b`.
void WakeEngine(EngineBell* b);

class ChannelWriter {
 public:
  ChannelWriter() = default;
  // `counters` and `slots` are in the consumer's region; `consumer` is the
  // consumer's bell. `name` ("channel 2->3") names the ring in errors.
  ChannelWriter(RingCounters* counters, char* slots, size_t slot_bytes, uint64_t slots_count,
                EngineBell* consumer, std::string name);

  // Slots that may be written now (rereads tail when the cache says full).
  absl::StatusOr<uint64_t> Free();
  // The i-th slot after the last committed one (i < Free()).
  char* Slot(uint64_t i) const { return slots_ + ((head_ + i) % count_) * slot_bytes_; }
  // Takes n written slots into the stream (visible after Publish).
  void Commit(uint64_t n) { head_ += n; }
  // Makes committed slots visible and wakes the consumer (no-op if none).
  void Publish();
  // Writes a message of `len` bytes spanning ceil(len / slot) slots
  // (possibly wrapping), commits and publishes it. False when the ring has no
  // room for it now.
  absl::StatusOr<bool> WriteMessage(const char* data, size_t len);

  const std::string& name() const { return name_; }

 private:
  absl::Status RefreshTail();

  RingCounters* counters_ = nullptr;
  char* slots_ = nullptr;
  size_t slot_bytes_ = 0;
  uint64_t count_ = 1;
  EngineBell* consumer_ = nullptr;
  std::string name_;
  uint64_t head_ = 0;       // committed
  uint64_t published_ = 0;  // visible to the consumer
  uint64_t tail_ = 0;       // cached
};

class ChannelReader {
 public:
  ChannelReader() = default;
  // `counters` and `slots` are in this (the consumer's) region; `producer`
  // is the producer's bell.
  ChannelReader(RingCounters* counters, const char* slots, size_t slot_bytes, uint64_t slots_count,
                EngineBell* producer, std::string name);

  // Slots ready to read (rereads head when the cache says empty).
  absl::StatusOr<uint64_t> Available();
  const char* Slot(uint64_t i) const { return slots_ + ((tail_ + i) % count_) * slot_bytes_; }
  // Frees n read slots (visible to the producer after Publish).
  void Release(uint64_t n) { tail_ += n; }
  void Publish();
  // Reads a message of `len` bytes (ceil(len / slot) slots), releases and
  // publishes them. False when it has not fully arrived yet.
  absl::StatusOr<bool> ReadMessage(size_t len, std::string* out);

  const std::string& name() const { return name_; }

 private:
  absl::Status RefreshHead();

  RingCounters* counters_ = nullptr;
  const char* slots_ = nullptr;
  size_t slot_bytes_ = 0;
  uint64_t count_ = 1;
  EngineBell* producer_ = nullptr;
  std::string name_;
  uint64_t tail_ = 0;       // released
  uint64_t published_ = 0;  // visible to the producer
  uint64_t head_ = 0;       // cached
};

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_CHANNEL_H_
