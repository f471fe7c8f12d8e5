// The engine behind an EpBuffer (internal): the rank's symmetric region and
// every channel and stream in it (the Wiring), the operation queue, and the
// thread that runs the operations one after the other.
//
// Progress model: one engine thread per rank plays every role of the running
// operation (source, forwarder, receiver) through non-blocking steps, so a
// role that waits (for ring space, a credit, a peer's data) never stops the
// others. Peers wake it through its EngineBell; inter-node notifications are
// polled (the daemon rings the client's bell, not ours), so while it waits on
// remote data it sleeps in short slices.
//
// Deadlock freedom (why every wait ends): every ring and stream carries one
// logical flow in a fixed order, and every consumer either drains
// unconditionally (dispatch receivers write into unbounded outputs;
// forwarders' outputs are those receivers) or needs, for its next item, only
// the next item of flows whose producers depend on nothing it holds (combine:
// each part of a token is the head of a flow dedicated to that (producer,
// source) pair).
//
// Thread safety: Submit/stats/status from any thread; everything else on the
// engine thread.
#ifndef TOKENRAIL_RUNTIME_EP_ENGINE_H_
#define TOKENRAIL_RUNTIME_EP_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/ep/buffer.h"
#include "runtime/ep/buffer_plan.h"
#include "runtime/ep/channel.h"
#include "runtime/ep/comm.h"
#include "runtime/ep/config.h"
#include "runtime/ep/plan.h"
#include "runtime/ep/stream.h"

namespace tokenrail {
namespace ep {

// Shared state behind a DispatchHandle.
struct DispatchHandle::State {
  uint64_t buffer_id = 0;
  mutable absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::Status status ABSL_GUARDED_BY(mu);
  // Written by the engine before `done`, read-only afterwards.
  std::shared_ptr<const DispatchPlan> plan;
  PooledBytes x;
  std::vector<float> x_scales;
  std::vector<float> weights;
  DispatchOutput output;
  EpOpStats stats;

  void Finish(absl::Status s) {
    absl::MutexLock lock(&mu);
    status = std::move(s);
    done = true;
  }
};

struct CombineHandle::State {
  mutable absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::Status status ABSL_GUARDED_BY(mu);
  PooledBytes y;  // [tokens x hidden] floats
  int64_t elements = 0;
  EpOpStats stats;

  void Finish(absl::Status s) {
    absl::MutexLock lock(&mu);
    status = std::move(s);
    done = true;
  }
};

// Every channel and stream of this rank, built once at creation.
struct Wiring {
  EpComm* comm = nullptr;
  EpConfig config;
  BufferPlan plan;
  uint32_t hash = 0;
  CommTopology topo;
  int me = 0, node = 0, local = 0;
  int R = 1, N = 1, W = 1, P = 0, S = 1, epr = 1;
  CommRegion region;
  EngineBell* bell = nullptr;  // mine

  std::vector<ChannelWriter> fwd_out;        // [j]: me -> j, in j's region
  std::vector<ChannelReader> fwd_in;         // [p]: p -> me
  std::vector<ChannelWriter> rev_out;        // [l * S + s]: me -> l, sub-ring s, in l's region
  std::vector<ChannelReader> rev_in;         // [j * S + s]: j -> me, sub-ring s
  std::vector<OutboundStream> d_out, c_out;  // [q]
  std::vector<InboundStream> d_in, c_in;     // [q]
  PutTracker puts;
  // Output memory, recycled across operations (handles return it).
  std::shared_ptr<BytePool> pool = std::make_shared<BytePool>();

  // Cumulative direct-store counters (channels), by the operations.
  uint64_t intra_bytes = 0;
  uint64_t intra_records = 0;
  uint64_t self_bytes = 0;

  int PeerRank(int q) const { return plan.PeerRank(me, q); }
  int PeerIndex(int rank) const { return plan.PeerIndex(me, rank); }
  // Counts a channel write of `bytes` to local rank j.
  void CountIntra(int j, uint64_t bytes, uint64_t records) {
    if (j == local) {
      self_bytes += bytes;
    } else {
      intra_bytes += bytes;
      intra_records += records;
    }
  }
  // Posts every inbound stream's queued credits; true when none is left.
  absl::StatusOr<bool> ReturnCredits();
  // Snapshot of the byte counters (op stats are differences of two).
  EpOpStats Counters() const;
};

// One queued operation. Start, Step and Complete run on the engine thread.
class Op {
 public:
  virtual ~Op() = default;
  virtual absl::Status Start(Wiring& w) = 0;
  // One round of non-blocking work; true when something moved.
  virtual absl::StatusOr<bool> Step(Wiring& w) = 0;
  virtual bool done() const = 0;
  // Publishes the result (or `status` when not OK) to the handle.
  virtual void Complete(const absl::Status& status, Wiring& w, const EpOpStats& stats) = 0;
  // What it is waiting for (for DeadlineExceeded and hang diagnostics).
  virtual std::string Describe() const = 0;
  // Adds this completed operation to the buffer's cumulative counters
  // (operation counts, tokens per expert); bytes are added by the engine.
  virtual void AddStats(EpStats* stats) const = 0;
  // Ops that run a blocking collective instead of steps (Barrier).
  virtual bool blocking() const { return false; }
  virtual absl::Status RunBlocking(Wiring& w) { return absl::OkStatus(); }

  uint32_t op_seq = 0;
};

class Engine {
 public:
  // Collective: allocates and initializes the region, barriers, starts the
  // thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(EpComm* comm, const EpConfig& config);
  ~Engine();  // stops the thread; queued operations complete with Cancelled

  // Numbers and queues `op`; the sticky failure instead when failed (the
  // op is then completed with it).
  absl::Status Submit(std::unique_ptr<Op> op);
  uint64_t id() const { return id_; }
  const Wiring& wiring() const { return w_; }
  EpStats stats() const;
  absl::Status status() const;
  // What the running operation waits for, refreshed while it is stalled
  // (empty when idle).
  std::string Progress() const;

 private:
  Engine();
  void Run();
  absl::Status Execute(Op& op);
  // Notifications and put completions; sets *progress when any arrived.
  absl::Status PollComm(bool* progress);
  // Polls until a peer bumps our events past `seen` (the first kSpinNs after
  // progress), then sleeps on the bell for a slice.
  void Idle(uint64_t seen, int64_t* spun_ns);
  // Before the engine goes away: waits (bounded) until every chunk it sent
  // was credited back and every put completed, so that no notification
  // meant for it reaches a later buffer on the same rank client.
  void Quiesce();

  Wiring w_;
  const uint64_t id_;

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Op>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failed_ ABSL_GUARDED_BY(mu_);
  uint32_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::atomic<bool> stopping_{false};

  mutable absl::Mutex stats_mu_;
  EpStats stats_ ABSL_GUARDED_BY(stats_mu_);
  std::string progress_ ABSL_GUARDED_BY(stats_mu_);

  std::thread thread_;
};

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_ENGINE_H_
