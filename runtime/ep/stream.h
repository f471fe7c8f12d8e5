// Inter-node streams: chunks of records moved by the daemon's proxy (puts
// with notifications), with credit-based flow control.
//
// An OutboundStream fills a staging chunk in this rank's region and puts it
// into slot (chunk number % chunks) of the peer's receive ring; the peer
// returns a credit (a small put tagged with the stream's credit kind and the
// number of slots freed) for every chunk it has consumed. A staging slot is
// refilled only once the put that read it has completed. Records of one
// operation never share a chunk with the next one's.
//
// An InboundStream learns of chunks from notifications (in post order, each
// after its data), parses and validates the header of the oldest one, hands
// out its records, and queues a credit when the caller is done with it.
//
// PutTracker counts the engine's outstanding puts (the rank client blocks
// beyond a limit, the engine never does) and retires completions in order.
//
// Thread safety: the engine thread only.
#ifndef TOKENRAIL_RUNTIME_EP_STREAM_H_
#define TOKENRAIL_RUNTIME_EP_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/ep/comm.h"
#include "runtime/ep/wire.h"

namespace tokenrail {
namespace ep {

class PutTracker {
 public:
  PutTracker() = default;
  void Init(EpComm* comm, size_t limit) {
    comm_ = comm;
    limit_ = limit;
  }
  // Retires completed puts from the front; the first error of a failed put.
  absl::Status Poll();
  bool CanPost() const { return ids_.size() < limit_; }
  absl::StatusOr<uint64_t> Put(const CommRegion& src, size_t src_off, int dst_rank,
                               const CommRegion& dst, size_t dst_off, size_t len, uint32_t tag);
  // True when put `id` (and every earlier one) has completed.
  bool Completed(uint64_t id) const { return ids_.empty() || id < ids_.front(); }
  size_t outstanding() const { return ids_.size(); }

 private:
  EpComm* comm_ = nullptr;
  size_t limit_ = 1;
  std::deque<uint64_t> ids_;  // increasing
};

// Bytes a stream moved, by purpose (what the benchmark reports). An inbound
// stream counts only its credits: the sender counts the rest.
struct StreamBytes {
  uint64_t records = 0;  // record bytes
  uint64_t record_count = 0;
  uint64_t metadata = 0;  // chunk headers and counts bodies
  uint64_t credits = 0;   // credit puts
  uint64_t chunks = 0;
};

class OutboundStream {
 public:
  struct Params {
    int peer_rank = -1;
    size_t stage_offset = 0;   // staging chunks in this rank's region
    size_t remote_offset = 0;  // receive ring in the peer's region
    size_t chunk_bytes = 0;
    uint32_t chunks = 1;
    uint32_t max_records = 1;  // per chunk
    size_t record_bytes = 0;
    TagKind data_kind = TagKind::kDispatchData;
    uint32_t config_hash = 0;
    std::string name;
  };
  void Init(const CommRegion* region, Params params);

  // Room for the next record of the open chunk, or nullptr when the open
  // chunk is full (Flush first) or its staging slot is still being read by
  // an earlier put.
  char* NextRecord(const PutTracker& puts);
  void CommitRecord() { ++records_; }
  bool full() const { return records_ == p_.max_records; }

  // Posts the open chunk (if it holds records) when a credit and a put slot
  // are free. True when nothing is left open.
  absl::StatusOr<bool> Flush(PutTracker& puts, uint32_t op_seq);
  // Posts a kCounts chunk (nothing may be open). False when it must wait
  // for a staging slot, a credit or a put slot.
  absl::StatusOr<bool> SendCounts(PutTracker& puts, uint32_t op_seq, const PeerCounts& counts);
  // Credits from the peer; DataLoss when it returns more than was sent.
  absl::Status AddCredits(uint32_t n);

  const StreamBytes& bytes() const { return bytes_; }
  const std::string& name() const { return p_.name; }
  // Every chunk sent has been credited back (the peer consumed it).
  bool drained() const { return credited_ == sent_ && records_ == 0; }

 private:
  bool CanPost(const PutTracker& puts) const {
    return sent_ - credited_ < p_.chunks && puts.CanPost();
  }
  char* StageSlot(uint64_t chunk) const;
  absl::Status Post(PutTracker& puts, ChunkKind kind, uint32_t op_seq, uint32_t records,
                    size_t body_bytes);

  const CommRegion* region_ = nullptr;
  Params p_;
  uint64_t sent_ = 0;                // chunks posted
  uint64_t credited_ = 0;            // chunks the peer has freed
  uint32_t records_ = 0;             // in the open chunk (number sent_)
  std::vector<uint64_t> stage_put_;  // put id that last read each staging slot (0: none)
  StreamBytes bytes_;
};

class InboundStream {
 public:
  struct Params {
    int peer_rank = -1;
    size_t ring_offset = 0;  // receive ring in this rank's region
    size_t chunk_bytes = 0;
    uint32_t chunks = 1;
    size_t record_bytes = 0;
    TagKind credit_kind = TagKind::kDispatchCredit;
    uint32_t config_hash = 0;
    std::string name;
  };
  void Init(const CommRegion* region, Params params);

  // A notification of `length` bytes from the peer. DataLoss when more
  // chunks arrive than the ring holds.
  absl::Status OnArrival(size_t length);

  // The oldest unconsumed chunk, validated; nullptr when none has arrived.
  // `op_seq` is the operation the caller is in: a chunk of another one is
  // DataLoss (the ranks disagree on the sequence of operations).
  absl::StatusOr<const ChunkHeader*> Current(uint32_t op_seq);
  const char* body() const { return body_; }
  const char* record(uint32_t i) const { return body_ + i * p_.record_bytes; }
  // Records of the current chunk already used by the caller.
  uint32_t cursor = 0;
  // Done with the current chunk: its slot goes back to the peer.
  void Finish();
  // Posts the queued credits, if any (false: no put slot now).
  absl::StatusOr<bool> ReturnCredits(PutTracker& puts, size_t credit_source, size_t credit_sink);

  const StreamBytes& bytes() const { return bytes_; }
  const std::string& name() const { return p_.name; }

 private:
  const CommRegion* region_ = nullptr;
  Params p_;
  std::deque<size_t> arrived_;  // lengths of notified, unconsumed chunks
  uint64_t consumed_ = 0;
  bool parsed_ = false;
  ChunkHeader header_{};
  const char* body_ = nullptr;
  uint32_t pending_credits_ = 0;
  StreamBytes bytes_;
};

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_STREAM_H_
