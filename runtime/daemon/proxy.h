// The daemon's proxy thread: turns rank commands (posted on the arena's
// command rings) into shared-memory copies and inter-node transport puts,
// delivers notifications and completions back through the arena.
//
// One thread does everything on the data path (the transport context is
// single-threaded, transport.h): per loop it serves every attached rank's
// command ring, advances the transport, moves incoming notifications into
// the destination ranks' rings, retires completed transport tickets, and
// retries notifications that found a full ring. While there is work, and
// for `spin` after it, the loop spins (the latency path: a rank's command is
// picked up without any syscall). Looking at the network costs syscalls, so
// while it is quiet (nothing in flight, no recent traffic) the spinning loop
// looks only every few rounds.
//
// Sleeping. Without peers the proxy sleeps on the arena's proxy doorbell,
// which ranks ring after posting. With peers it must also wake for the
// network: when the transport has an event fd (transport.h) the proxy arms
// it and sleeps in poll() on it and on a private eventfd; a bridge thread
// turns the proxy doorbell into a write of that eventfd while the proxy
// sleeps (a futex cannot be polled). The bridge stays parked while the proxy
// runs, so a busy proxy costs ranks no syscalls, and it keeps watching the
// doorbell across consecutive network wake-ups. Transports without an event
// fd are polled: sleeps are then capped at `max_poll_sleep`.
//
// Inter-node puts go from this arena to the peer daemon's arena at
// (destination rank's heap + region offset + dst_offset). The transport's
// 32-bit immediate carries {src local rank:8, dst local rank:8, tag:16}; the
// peer's proxy turns it into a notification for the destination rank.
//
// Validation: every field of every command is checked against the daemon's
// own region table and topology (never against shared memory a rank can
// write); a bad command fails alone with InvalidArgument. A rank that breaks
// the ring protocol (impossible indices, more commands than credits) is
// reported through `rank_broken` and ignored from then on.
//
// Thread safety: the public methods may be called from any thread; those
// that change rank state wait until the proxy thread applied the change.
#ifndef TOKENRAIL_RUNTIME_DAEMON_PROXY_H_
#define TOKENRAIL_RUNTIME_DAEMON_PROXY_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "runtime/arena/arena.h"
#include "runtime/arena/attach_protocol.h"
#include "runtime/daemon/fabric.h"

namespace tokenrail {
namespace runtime {

// The inter-node immediate.
inline uint32_t EncodeImm(int src_local, int dst_local, uint32_t tag) {
  return (static_cast<uint32_t>(src_local) << 24) | (static_cast<uint32_t>(dst_local) << 16) |
         (tag & 0xffff);
}
inline int ImmSrcLocal(uint32_t imm) { return static_cast<int>(imm >> 24); }
inline int ImmDstLocal(uint32_t imm) { return static_cast<int>((imm >> 16) & 0xff); }
inline uint32_t ImmTag(uint32_t imm) { return imm & 0xffff; }

struct ProxyConfig {
  int node_id = 0;
  int nodes = 1;
  int ranks_per_node = 1;
  absl::Duration spin = absl::Microseconds(100);
  absl::Duration max_poll_sleep = absl::Milliseconds(1);
};

struct ProxyCallbacks {
  // A local rank broke the ring protocol. Called on the proxy thread; must
  // not block.
  std::function<void(int local_rank, const absl::Status&)> rank_broken;
  // The endpoint to a peer daemon failed (sticky). Called once per peer on
  // the proxy thread; must not block.
  std::function<void(int node_id, const absl::Status&)> peer_failed;
};

struct RankCounters {
  uint64_t bytes_intra = 0;  // sent to ranks of this node
  uint64_t bytes_inter = 0;  // sent to other nodes
  uint64_t puts = 0;
  uint64_t notifications = 0;  // received
};

struct ProxyStats {
  uint64_t intra_node_puts = 0;
  uint64_t inter_node_puts = 0;
  uint64_t intra_node_bytes = 0;
  uint64_t inter_node_bytes = 0;
  uint64_t notifications_delivered = 0;
  uint64_t in_flight = 0;  // inter-node puts posted, not complete
  std::vector<RankCounters> ranks;
};

class Proxy {
 public:
  // `fabric` may be null (single-node job). Both must outlive the Proxy.
  Proxy(const Arena& arena, Fabric* fabric, ProxyConfig config, ProxyCallbacks callbacks);
  ~Proxy();  // Stop()
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  void Start();
  // Stops and joins the thread. In-flight inter-node puts are abandoned.
  void Stop();

  // Starts serving local rank `r` on freshly reset rings. Blocks until the
  // proxy thread applied it.
  void ActivateRank(int r);
  // Stops serving `r`; its later completions and notifications are dropped.
  void DeactivateRank(int r);
  // Publishes region `info` (ids are consecutive from 0). Any thread.
  void AddRegion(const RegionInfo& info);
  // Peer failures are expected from now on (the job is ending): stop
  // reporting them.
  void SetShuttingDown() { shutting_down_.store(true, std::memory_order_relaxed); }

  // Commands queued in active rings or in flight on the network.
  uint64_t Pending() const;
  ProxyStats Stats() const;

 private:
  struct InFlight {
    transport::Ticket ticket;
    int local_rank;
    uint32_t generation;
    uint64_t command_id;
  };
  struct Peer {
    PeerNode* node = nullptr;
    std::deque<InFlight> in_flight;
    absl::Status failed;
  };
  struct Slot {
    bool active = false;
    bool broken = false;
    uint32_t generation = 0;
    RingConsumer<Command> commands;
    RingProducer<Completion> completions;
    RingProducer<NotificationEntry> notifications;
    std::deque<NotificationEntry> overflow;  // ring was full; in order
    bool ring_completion_bell = false;
    bool ring_notify_bell = false;
  };
  struct AtomicCounters {
    std::atomic<uint64_t> bytes_intra{0}, bytes_inter{0}, puts{0}, notifications{0};
  };
  enum class OpKind { kActivate, kDeactivate };
  struct Op {
    OpKind kind;
    int rank;
  };

  void Run();
  // Idle: sleeps until a rank, an op or (with peers) the network has work,
  // or a bounded time passed. `poll_sleep_ns` is the back-off of the polled
  // modes. Returns false when it found work instead of sleeping.
  bool Sleep(int64_t* poll_sleep_ns);
  // Doubles a polled sleep, up to max_poll_sleep.
  void BackOff(int64_t* poll_sleep_ns) const;
  // Sleeps in poll() on the armed transport fd and the wake eventfd.
  void BlockOnNetwork(int64_t timeout_ns);
  // The bridge thread (see above).
  void Bridge();
  // Commands in active rings, from the shared indices: any thread.
  bool CommandsWaitingShared() const;
  void ApplyOps();
  void Apply(const Op& op);
  // Each returns the amount of work done (0 = idle).
  size_t ServeRank(int r);
  size_t ServeNetwork();
  size_t FlushOverflow();
  void RingBells();
  bool AnyCommandWaiting();

  void Execute(int r, const Command& c);
  absl::Status ValidatePut(const Command& c, const RegionInfo** src, const RegionInfo** dst) const;
  void PutIntra(int r, const Command& c, const RegionInfo& src, const RegionInfo& dst);
  void PutInter(int r, const Command& c, const RegionInfo& src, const RegionInfo& dst);
  void Complete(int r, uint32_t generation, uint64_t id, const absl::Status& status);
  void Notify(int dst_local, const NotificationEntry& n);
  void FailPeer(Peer& peer, const absl::Status& status);
  void BreakRank(int r, absl::Status status);
  Peer* PeerOf(int node_id);

  const Arena& arena_;
  Fabric* const fabric_;
  const ProxyConfig config_;
  const ProxyCallbacks callbacks_;

  // Region table: entries [0, region_count_) are immutable once published.
  std::unique_ptr<RegionInfo[]> regions_;
  std::atomic<uint32_t> region_count_{0};

  // Proxy-thread state.
  std::vector<Slot> slots_;
  std::vector<Peer> peers_;        // indexed like fabric_->peers()
  std::vector<int> peer_of_node_;  // node id -> index in peers_, -1 for self
  uint64_t in_flight_total_ = 0;
  bool overflow_pending_ = false;   // some notifications wait for ring space
  int64_t network_busy_until_ = 0;  // poll the network often until then
  int64_t next_busy_look_ = 0;      // meanwhile, the next look after an empty one
  uint32_t idle_rounds_ = 0;
  uint32_t rounds_since_look_ = 0;

  // Shared with other threads.
  std::vector<std::unique_ptr<AtomicCounters>> counters_;
  std::vector<std::unique_ptr<std::atomic<bool>>> active_;  // mirrors Slot::active
  std::atomic<uint64_t> intra_puts_{0}, inter_puts_{0}, intra_bytes_{0}, inter_bytes_{0},
      notifications_delivered_{0}, in_flight_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> ops_waiting_{false};

  // Sleeping on the network (fabric with an event fd and peers only).
  int net_fd_ = -1;
  UniqueFd wake_fd_;                      // eventfd the bridge writes
  std::atomic<uint32_t> blocked_{0};      // the proxy is (about to be) in poll()
  std::atomic<uint32_t> block_round_{0};  // bumped on every block
  Doorbell engage_;                       // parks the bridge while the proxy runs
  std::thread bridge_;
  absl::Mutex mu_;
  absl::CondVar ops_done_;
  std::deque<Op> ops_ ABSL_GUARDED_BY(mu_);
  uint64_t ops_submitted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ops_applied_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;  // started after bridge_, joined before it
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_DAEMON_PROXY_H_
