#include "transport/shm/ring.h"

#include <cstring>
#include <new>

#include "absl/numeric/bits.h"
#include "absl/strings/str_cat.h"
#include "transport/shm/options.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

constexpr uint64_t kChannelMagic = 0x4c4e4843'4d485354ull;  // "TSHMCHNL"
constexpr uint32_t kChannelVersion = 2;                     // 2: the armed word
constexpr uint32_t kRecordMagic = 0x2147534d;               // "MSG!"
constexpr size_t kRecordHeader = 8;

constexpr uint32_t kMinNotifyEntries = 2;
constexpr uint32_t kMaxNotifyEntries = 1u << 24;
constexpr uint64_t kMinMessageBytes = 2 * (kMaxMessageSize + 64);
constexpr uint64_t kMaxMessageBytes = 1ull << 30;

// First two cache lines of a channel. Sizes are written once by the creator
// before the fd is shared; the attacher copies and validates them.
struct ChannelSizes {
  uint64_t magic;
  uint32_t version;
  uint32_t notify_entries;
  uint64_t message_bytes;
  uint64_t total_bytes;
};

struct ChannelHeader {
  ChannelSizes sizes;
  // Written by the creator only; read by the producer (see Channel).
  alignas(kCacheLine) std::atomic<uint64_t> revocations;
  std::atomic<uint64_t> announced;
  // Set by the creator, cleared by the producer that wakes it. Beside the
  // words the producer reads on every put anyway.
  std::atomic<uint32_t> armed;
};
static_assert(sizeof(ChannelHeader) == 2 * kCacheLine, "channel header layout");

struct Layout {
  size_t slots;
  size_t indexes;
  size_t bytes;
  size_t total;
};

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

Layout LayoutFor(uint32_t notify_entries, uint64_t message_bytes) {
  Layout l;
  l.slots = sizeof(ChannelHeader);
  l.indexes = RoundUp(l.slots + size_t{notify_entries} * sizeof(NotifySlot), kCacheLine);
  l.bytes = l.indexes + sizeof(RingIndexes);
  l.total = l.bytes + message_bytes;
  return l;
}

absl::Status CheckSizes(uint32_t notify_entries, uint64_t message_bytes, absl::string_view what) {
  if (notify_entries < kMinNotifyEntries || notify_entries > kMaxNotifyEntries ||
      !absl::has_single_bit(notify_entries)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": notification ring of ", notify_entries, " entries is not a power of two in [",
        kMinNotifyEntries, ", ", kMaxNotifyEntries, "]"));
  }
  if (message_bytes < kMinMessageBytes || message_bytes > kMaxMessageBytes ||
      !absl::has_single_bit(message_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": message ring of ", message_bytes,
                                                   " bytes is not a power of two in [",
                                                   kMinMessageBytes, ", ", kMaxMessageBytes, "]"));
  }
  return absl::OkStatus();
}

// Copies between linear memory and the ring at `pos`, wrapping at the end.
void CopyIn(char* ring, uint64_t capacity, uint64_t pos, const char* src, size_t n) {
  const size_t at = pos & (capacity - 1);
  const size_t first = std::min<size_t>(n, capacity - at);
  std::memcpy(ring + at, src, first);
  std::memcpy(ring, src + first, n - first);
}

void CopyOut(const char* ring, uint64_t capacity, uint64_t pos, char* dst, size_t n) {
  const size_t at = pos & (capacity - 1);
  const size_t first = std::min<size_t>(n, capacity - at);
  std::memcpy(dst, ring + at, first);
  std::memcpy(dst + first, ring, n - first);
}

}  // namespace

void InitNotifySlots(NotifySlot* slots, uint32_t entries) {
  for (uint32_t i = 0; i < entries; ++i) {
    NotifySlot* s = new (&slots[i]) NotifySlot;
    s->seq.store(i, std::memory_order_relaxed);
    s->imm = 0;
    s->length = 0;
  }
  std::atomic_thread_fence(std::memory_order_release);
}

uint64_t MessageRecordSize(size_t length) { return kRecordHeader + RoundUp(length, 8); }

bool MessageProducer::TryPush(absl::string_view message) {
  const uint64_t need = MessageRecordSize(message.size());
  if (capacity_ - (head_ - cached_tail_) < need) {
    cached_tail_ = idx_->tail.load(std::memory_order_acquire);
    const uint64_t used = head_ - cached_tail_;
    // A tail ahead of head or a full ring both mean "not now"; writes below
    // stay inside the ring whatever the consumer wrote.
    if (used > capacity_ || capacity_ - used < need) return false;
  }
  const uint32_t header[2] = {static_cast<uint32_t>(message.size()), kRecordMagic};
  CopyIn(bytes_, capacity_, head_, reinterpret_cast<const char*>(header), kRecordHeader);
  CopyIn(bytes_, capacity_, head_ + kRecordHeader, message.data(), message.size());
  head_ += need;
  idx_->head.store(head_, std::memory_order_release);
  return true;
}

absl::StatusOr<bool> MessageConsumer::TryPop(std::string* out) {
  if (cached_head_ == tail_) {
    cached_head_ = idx_->head.load(std::memory_order_acquire);
    if (cached_head_ == tail_) return false;
  }
  const uint64_t used = cached_head_ - tail_;
  if (used > capacity_ || used < kRecordHeader || used % 8 != 0) {
    return absl::DataLossError(absl::StrCat("shm: corrupt message ring: head ", cached_head_,
                                            ", tail ", tail_, ", capacity ", capacity_));
  }
  uint32_t header[2];
  CopyOut(bytes_, capacity_, tail_, reinterpret_cast<char*>(header), kRecordHeader);
  const uint64_t record = MessageRecordSize(header[0]);
  if (header[1] != kRecordMagic || header[0] > kMaxMessageSize || record > used) {
    return absl::DataLossError(absl::StrCat("shm: corrupt message record at ", tail_, ": length ",
                                            header[0], ", magic 0x", absl::Hex(header[1]), ", ",
                                            used, " bytes queued"));
  }
  out->resize(header[0]);
  CopyOut(bytes_, capacity_, tail_ + kRecordHeader, out->data(), header[0]);
  tail_ += record;
  idx_->tail.store(tail_, std::memory_order_release);
  return true;
}

absl::StatusOr<Channel> Channel::Create(uint32_t notify_entries, uint64_t message_bytes) {
  if (absl::Status s = CheckSizes(notify_entries, message_bytes, "shm channel"); !s.ok()) {
    return s;
  }
  const Layout l = LayoutFor(notify_entries, message_bytes);
  Channel c;
  auto file = CreateSharedFile("tokenrail-shm-channel", l.total);
  if (!file.ok()) return file.status();
  c.file_ = *std::move(file);
  auto* h = new (c.file_.map.data()) ChannelHeader;
  h->sizes = ChannelSizes{kChannelMagic, kChannelVersion, notify_entries, message_bytes, l.total};
  h->revocations.store(0, std::memory_order_relaxed);
  h->announced.store(0, std::memory_order_relaxed);
  h->armed.store(0, std::memory_order_relaxed);
  auto* idx = new (c.file_.map.data() + l.indexes) RingIndexes;
  idx->head.store(0, std::memory_order_relaxed);
  idx->tail.store(0, std::memory_order_relaxed);
  InitNotifySlots(reinterpret_cast<NotifySlot*>(c.file_.map.data() + l.slots), notify_entries);
  c.Bind(notify_entries, message_bytes);
  return c;
}

absl::StatusOr<Channel> Channel::Attach(int fd, absl::string_view what) {
  Channel c;
  auto map = MapPeerFile(fd, std::nullopt, what);
  if (!map.ok()) return map.status();
  c.file_.map = *std::move(map);
  if (c.file_.map.size() < sizeof(ChannelHeader)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", c.file_.map.size(), " bytes cannot hold a channel header"));
  }
  // Copy the fields once: the peer could change them after validation.
  ChannelSizes h;
  std::memcpy(&h, c.file_.map.data(), sizeof(h));
  if (h.magic != kChannelMagic || h.version != kChannelVersion) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a tokenrail shm channel (magic 0x",
                                                   absl::Hex(h.magic), ", version ", h.version,
                                                   ")"));
  }
  if (absl::Status s = CheckSizes(h.notify_entries, h.message_bytes, what); !s.ok()) return s;
  const Layout l = LayoutFor(h.notify_entries, h.message_bytes);
  if (l.total != c.file_.map.size() || h.total_bytes != l.total) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": file has ", c.file_.map.size(),
                                                   " bytes, header says ", h.total_bytes,
                                                   ", layout needs ", l.total));
  }
  c.Bind(h.notify_entries, h.message_bytes);
  return c;
}

void Channel::Bind(uint32_t notify_entries, uint64_t message_bytes) {
  const Layout l = LayoutFor(notify_entries, message_bytes);
  char* base = file_.map.data();
  notify_entries_ = notify_entries;
  message_bytes_ = message_bytes;
  slots_ = reinterpret_cast<NotifySlot*>(base + l.slots);
  indexes_ = reinterpret_cast<RingIndexes*>(base + l.indexes);
  bytes_ = base + l.bytes;
  revocations_ = &reinterpret_cast<ChannelHeader*>(base)->revocations;
  announced_ = &reinterpret_cast<ChannelHeader*>(base)->announced;
  armed_ = &reinterpret_cast<ChannelHeader*>(base)->armed;
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
