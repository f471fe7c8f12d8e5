// The daemon's inter-node transport: one context of the best backend the
// filter allows that reaches other hosts (UCX by default), the whole arena
// registered with it, and one endpoint per peer daemon with the peer's arena
// unpacked as a put target.
//
// Nothing here knows a backend by name: selection goes through the registry
// (capabilities + the user's filter) and peers are matched by the backend
// name they published next to their address.
//
// Threading: as the transport (transport.h): one thread at a time. The
// daemon's start-up thread creates and connects it, then hands it to the
// proxy thread, which alone uses it afterwards.
#ifndef TOKENRAIL_RUNTIME_DAEMON_FABRIC_H_
#define TOKENRAIL_RUNTIME_DAEMON_FABRIC_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/arena/arena.h"
#include "runtime/arena/layout.h"
#include "transport/transport.h"

namespace tokenrail {
namespace runtime {

// What a peer published through the coordinator.
struct PeerSpec {
  int node_id = -1;
  std::string hostname;
  std::string backend;
  std::string address;    // Context::address() of `backend`
  std::string arena_key;  // MemoryRegion::PackRemoteKey() of its arena
  uint64_t arena_bytes = 0;
};

struct PeerNode {
  int node_id = -1;
  std::string name;  // "node 1 (host)" for messages
  std::unique_ptr<transport::Endpoint> endpoint;
  std::unique_ptr<transport::RemoteRegion> arena;
  ArenaLayout layout;  // computed from the peer's arena size
};

class Fabric {
 public:
  // Picks the first backend SelectBackends({inter_node}, filter) returns,
  // creates its context with `options` and registers the whole arena. The
  // registry's NotFound (listing why each backend was rejected) when none
  // qualifies.
  static absl::StatusOr<std::unique_ptr<Fabric>> Create(const std::string& filter,
                                                        const transport::TransportOptions& options,
                                                        const Arena& arena);
  ~Fabric();

  const std::string& backend() const { return backend_; }
  std::string address() const { return context_->address(); }
  const std::string& arena_key() const { return arena_key_; }
  transport::Context& context() { return *context_; }
  const transport::MemoryRegion& arena_region() const { return *arena_region_; }

  // Connects to every peer in `peers` (all nodes but this one), in node-id
  // order: with every daemon walking the pairs in the same global order, no
  // two daemons wait on each other in a cycle. Unpacks each peer's arena key
  // and checks its size against the layout for `local_ranks`.
  // FailedPrecondition when a peer published no address for this backend.
  absl::Status ConnectPeers(std::vector<PeerSpec> peers, int local_ranks, absl::Time deadline);

  std::vector<PeerNode>& peers() { return peers_; }
  // nullptr when `node_id` is not a connected peer.
  PeerNode* peer(int node_id);

 private:
  Fabric() = default;

  std::string backend_;
  // Declaration order = reverse teardown order: endpoints and remote regions
  // first, then the local registration, then the context.
  std::unique_ptr<transport::Context> context_;
  std::unique_ptr<transport::MemoryRegion> arena_region_;
  std::string arena_key_;
  std::vector<PeerNode> peers_;
  std::map<int, size_t> peer_index_;
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_DAEMON_FABRIC_H_
