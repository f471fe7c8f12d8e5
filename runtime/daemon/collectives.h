// Job-wide collectives of the ranks (AllocateSymmetric, Barrier), run by the
// daemon: local ranks first, then a coordinator barrier among the daemons.
//
// Every local rank's k-th collective call belongs to round k. When all local
// ranks entered round k, the worker thread checks that they agree (same
// operation, same size), decides the node's outcome (for an allocation: the
// offset in the symmetric heap, or why it cannot fit), and allgathers that
// outcome through the coordinator (barrier "tokenrail/collective/<k>"). Every
// daemon then computes the same verdict from the same payloads: the first
// node's error in node order, else a mismatch between nodes (sizes named per
// node), else success. Only then is the region published to the proxy and
// every local rank answered. A job failure aborts the pending round and
// answers every later call with the failure.
//
// Thread safety: Enter/Abort from any thread; replies are delivered through
// the host callback on the worker thread.
#ifndef TOKENRAIL_RUNTIME_DAEMON_COLLECTIVES_H_
#define TOKENRAIL_RUNTIME_DAEMON_COLLECTIVES_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/arena/attach_protocol.h"

namespace tokenrail {
namespace runtime {

struct CollectivesHost {
  // Sends `reply` to local rank `r`'s connection `generation` (dropped if the
  // rank reconnected since).
  std::function<void(int r, uint64_t generation, const AttachMessage& reply)> reply;
  // Allgather among the nodes (participant = node id); payloads by node id.
  // Unset for a single-node job.
  std::function<absl::StatusOr<std::vector<std::string>>(
      const std::string& name, const std::string& payload, absl::Time deadline)>
      node_barrier;
  // Makes a new region usable by the proxy (before any rank learns of it).
  std::function<void(const RegionInfo&)> publish_region;
};

class Collectives {
 public:
  Collectives(int node_id, int nodes, int ranks_per_node, uint64_t heap_bytes,
              absl::Duration timeout, CollectivesHost host);
  ~Collectives();  // Stop()

  void Start();
  void Stop();

  // Local rank `r` (connection `generation`) called a collective; `request`
  // is its kAllocate or kBarrier message.
  void Enter(int r, uint64_t generation, const AttachMessage& request);
  // Fails the pending round and every later one with `status`.
  void Abort(const absl::Status& status);

  std::vector<RegionInfo> regions() const;
  uint64_t used_bytes() const;

 private:
  struct Entry {
    bool entered = false;
    uint64_t generation = 0;
    AttachMessage request;
  };
  struct Outcome {
    absl::Status status;
    uint32_t kind = 0;
    uint64_t size = 0;
    uint64_t offset = 0;
    RegionInfo region;  // the new region of a successful allocation
  };

  void Run();
  // Runs round `k` with the local entries; returns the verdict.
  Outcome Decide(uint64_t k, const std::vector<Entry>& entries);
  Outcome LocalOutcome(const std::vector<Entry>& entries) const;
  void ReplyAll(const std::vector<Entry>& entries, const Outcome& verdict);

  const int node_id_;
  const int nodes_;
  const int ranks_per_node_;
  const uint64_t heap_bytes_;
  const absl::Duration timeout_;
  const CollectivesHost host_;

  mutable absl::Mutex mu_;
  std::vector<uint64_t> rounds_entered_ ABSL_GUARDED_BY(mu_);  // per local rank
  std::map<uint64_t, std::vector<Entry>> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_round_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status aborted_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<RegionInfo> regions_ ABSL_GUARDED_BY(mu_);
  uint64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;  // first free heap byte
  std::thread thread_;
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_DAEMON_COLLECTIVES_H_
