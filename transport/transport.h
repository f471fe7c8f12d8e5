// The tokenrail transport interface: one-sided puts with receiver
// notifications, small two-sided control messages, registered memory with
// serializable remote keys, connection from opaque address blobs.
//
// Objects and ownership
//   Context       one per process and backend (a UCX worker, a verbs PD+CQ, the
//                 shm listener). Created through the Registry (registry.h).
//   MemoryRegion  memory registered with (or allocated by) a Context. Its
//                 remote key is an opaque byte string a peer unpacks.
//   Endpoint      a connection to one peer Context. Created by Connect();
//                 both peers must call Connect() with each other's address.
//   RemoteRegion  a peer's region, unpacked from its remote key on an Endpoint.
// A Context must outlive its endpoints and regions; regions must outlive puts
// that use them. Destroying an Endpoint abandons its pending operations.
//
// Threading: a Context, its Endpoints and its regions are driven by one thread
// at a time (like a UCX worker in single-thread mode). Callers that share a
// context between threads serialize access themselves. Nothing here spawns
// threads that touch user memory.
//
// Progress and waiting: every call is non-blocking except Connect() and the
// Wait*/Flush calls, which take a deadline and return DeadlineExceeded when it
// passes. Work advances inside any call on the context, and in Progress().
//
// Ordering: notifications of puts on one endpoint are delivered in the order
// the puts were posted, and a notification is delivered only after its data is
// visible in the target region (write-with-immediate semantics). Control
// messages on one endpoint are delivered in order. There is no ordering between
// puts and control messages.
//
// Errors: a put outside a remote region, or with a key that does not name a
// live region of that peer, fails with InvalidArgument and touches no memory.
// When the peer dies or the connection breaks, the endpoint fails: the error
// (Unavailable, naming the peer) is sticky and every pending and later
// operation on it returns that error. Recovery is a new Connect().
#ifndef TOKENRAIL_TRANSPORT_TRANSPORT_H_
#define TOKENRAIL_TRANSPORT_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tokenrail {
namespace transport {

enum class MemoryKind { kHost, kCuda };

// What a backend can do, published through the registry for selection and
// for `tokenrail-bench info`.
struct Capabilities {
  std::string backend;               // registered name, e.g. "shm"
  bool intra_node = false;           // reaches processes on the same host
  bool inter_node = false;           // reaches other hosts
  bool gpu_memory = false;           // RegisterMemory(kCuda) works
  bool native_rma = false;           // puts are one-sided in hardware/shared memory
  double bandwidth_gbytes = 0;       // nominal per endpoint, GB/s, for ranking
  double latency_us = 0;             // nominal one-way small-put latency
  size_t max_put_size = 0;           // largest single put, bytes
  size_t max_message_size = 0;       // largest control message, bytes
  std::vector<std::string> devices;  // e.g. "memfd", "mlx5_0:1 (IB, 200 Gb/s)"
};

// Options common to every backend. Backend-specific settings travel as
// key=value `params` (like UCX's config variables); each backend parses them
// into its own typed options, rejects unknown keys with InvalidArgument and
// documents its keys in its registry entry.
struct TransportOptions {
  // Used for error messages and logs ("node1/rank3").
  std::string name = "tokenrail";
  // Default bound on Connect() when the caller passes no deadline.
  absl::Duration connect_timeout = absl::Seconds(30);
  std::map<std::string, std::string> params;
};

// Delivered to the receiver once per put, after the data is visible.
struct Notification {
  uint32_t imm = 0;   // the sender's immediate value
  size_t length = 0;  // bytes written by the put
};

class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
  void* data() const { return data_; }
  size_t size() const { return size_; }
  MemoryKind kind() const { return kind_; }

  // Serializable key a peer passes to Endpoint::UnpackRemoteKey. Fails with
  // FailedPrecondition if this region cannot be a put target on this backend.
  virtual absl::StatusOr<std::string> PackRemoteKey() const = 0;

 protected:
  MemoryRegion(void* data, size_t size, MemoryKind kind) : data_(data), size_(size), kind_(kind) {}

 private:
  void* data_;
  size_t size_;
  MemoryKind kind_;
};

class RemoteRegion {
 public:
  virtual ~RemoteRegion() = default;
  size_t size() const { return size_; }

 protected:
  explicit RemoteRegion(size_t size) : size_(size) {}

 private:
  size_t size_;
};

// Identifies a posted put; tickets increase by one per put on an endpoint.
using Ticket = uint64_t;

class Endpoint {
 public:
  virtual ~Endpoint() = default;

  // The peer's name (from its address blob), for messages.
  virtual const std::string& peer_name() const = 0;

  // Validates `key` (format, checksum, that it names a live region of this
  // peer) and returns a handle for puts. InvalidArgument when it does not.
  virtual absl::StatusOr<std::unique_ptr<RemoteRegion>> UnpackRemoteKey(absl::string_view key) = 0;

  // Posts a put of src[src_offset, +length) to dst[dst_offset, +length) and a
  // notification carrying `imm` to the peer. Non-blocking: `src` must stay
  // unchanged until the ticket completes. length == 0 is allowed (a pure
  // notification). Range errors are InvalidArgument and post nothing.
  virtual absl::StatusOr<Ticket> Put(const MemoryRegion& src, size_t src_offset,
                                     const RemoteRegion& dst, size_t dst_offset, size_t length,
                                     uint32_t imm) = 0;

  // True once the put with `ticket` completed (source reusable, data on its
  // way or delivered). Returns the sticky error if the endpoint failed.
  virtual absl::StatusOr<bool> IsComplete(Ticket ticket) = 0;
  virtual absl::Status WaitComplete(Ticket ticket, absl::Time deadline) = 0;

  // Waits until every put posted so far completed at the peer.
  virtual absl::Status Flush(absl::Time deadline) = 0;

  // Moves up to `max` notifications, in order, into `out`; returns how many.
  virtual absl::StatusOr<size_t> PollNotifications(Notification* out, size_t max) = 0;
  virtual absl::StatusOr<Notification> WaitNotification(absl::Time deadline) = 0;

  // Control messages of at most Capabilities::max_message_size bytes. The
  // payload is copied; delivery is in order.
  virtual absl::Status SendMessage(absl::string_view message) = 0;
  // Returns true and fills `out` when a message was waiting.
  virtual absl::StatusOr<bool> PollMessage(std::string* out) = 0;
  virtual absl::StatusOr<std::string> WaitMessage(absl::Time deadline) = 0;

  // OK, or the sticky error that failed this endpoint.
  virtual absl::Status status() const = 0;
};

class Context {
 public:
  virtual ~Context() = default;

  virtual const Capabilities& capabilities() const = 0;

  // Opaque, serializable address that peers pass to Connect().
  virtual std::string address() const = 0;

  // Establishes an endpoint to the peer whose address() is `peer_address`.
  // Both peers must call Connect with each other's address; blocks until the
  // pair is established or `deadline` passes. A malformed, corrupted or
  // version-mismatched address is InvalidArgument.
  virtual absl::StatusOr<std::unique_ptr<Endpoint>> Connect(absl::string_view peer_address,
                                                            absl::Time deadline) = 0;

  // Registers caller-owned memory (it must outlive the region).
  virtual absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* data, size_t size,
                                                                       MemoryKind kind) = 0;
  // Allocates memory the backend can always expose to peers (memfd on shm).
  // The region owns it.
  virtual absl::StatusOr<std::unique_ptr<MemoryRegion>> AllocateMemory(size_t size,
                                                                       MemoryKind kind) = 0;

  // Advances all endpoints without blocking.
  virtual absl::Status Progress() = 0;

  // A promise by the thread that drives this context that it calls
  // Progress() itself, as a progress loop does before it polls its
  // endpoints. The endpoints' polls (IsComplete, PollNotifications,
  // PollMessage) may then report only what earlier progress delivered
  // instead of progressing again, which saves backends whose progress costs
  // system calls (UCX over TCP: an epoll_wait each) several of them per
  // loop. Waits keep progressing. Backends whose polls are cheap ignore it.
  virtual void SetExplicitProgress(bool on) {}

  // ---- Sleeping until there is work (optional) ---------------------------
  // Lets the thread that drives a context sleep in poll(2)/epoll instead of
  // spinning on Progress(), and be woken when work arrives (like
  // ucp_worker_get_efd + ucp_worker_arm, or a verbs completion channel).
  //
  // EventFd(): a descriptor owned by the context, valid for its lifetime,
  // that the caller only polls for POLLIN (never reads, writes or closes
  // it). It becomes readable when the context may have new work: a peer's
  // put, notification or message, a local completion, a connection request,
  // a dead peer. -1 when the backend cannot signal: callers then poll.
  //
  // ArmEventFd(): call from the driving thread once polling everything it
  // waits for found nothing. It progresses the context once and returns
  // false when anything is pending (progress was made, or notifications or
  // messages wait on an endpoint): poll again instead of sleeping. true
  // means armed: any work that arrives from now on makes EventFd() readable,
  // so sleeping until it is readable (then calling Progress() or a Poll*
  // method) loses no wakeup. Readiness may be spurious (re-check, re-arm).
  // Non-blocking. Errors are the backend's (the context is unusable).
  // Backends without an event fd return false (never armed).
  virtual int EventFd() { return -1; }
  virtual absl::StatusOr<bool> ArmEventFd() { return false; }
};

}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_TRANSPORT_H_
