#include "runtime/daemon/fabric.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "transport/registry.h"

namespace tokenrail {
namespace runtime {
namespace {
constexpr char kLog[] = "daemon";
}  // namespace

absl::StatusOr<std::unique_ptr<Fabric>> Fabric::Create(const std::string& filter,
                                                       const transport::TransportOptions& options,
                                                       const Arena& arena) {
  transport::Requirements req;
  req.inter_node = true;
  TR_ASSIGN_OR_RETURN(std::vector<transport::Capabilities> candidates,
                      transport::SelectBackends(req, filter, options));
  std::unique_ptr<Fabric> f(new Fabric());
  f->backend_ = candidates.front().backend;
  TR_ASSIGN_OR_RETURN(f->context_, transport::CreateContext(f->backend_, options));
  TR_ASSIGN_OR_RETURN(f->arena_region_, f->context_->RegisterMemory(arena.base(), arena.size(),
                                                                    transport::MemoryKind::kHost));
  absl::StatusOr<std::string> key = f->arena_region_->PackRemoteKey();
  if (!key.ok()) {
    return Annotate(key.status(),
                    absl::StrCat("transport ", f->backend_,
                                 " cannot expose the registered arena as a put target"));
  }
  f->arena_key_ = *std::move(key);
  TR_LOG(INFO, kLog) << "inter-node transport " << f->backend_ << " (registered " << arena.size()
                     << " arena bytes)";
  return f;
}

Fabric::~Fabric() {
  // Endpoints and remote regions before the registration and the context.
  for (PeerNode& p : peers_) {
    p.arena.reset();
    p.endpoint.reset();
  }
  peers_.clear();
  arena_region_.reset();
  context_.reset();
}

absl::Status Fabric::ConnectPeers(std::vector<PeerSpec> peers, int local_ranks,
                                  absl::Time deadline) {
  std::sort(peers.begin(), peers.end(),
            [](const PeerSpec& a, const PeerSpec& b) { return a.node_id < b.node_id; });
  for (const PeerSpec& spec : peers) {
    PeerNode node;
    node.node_id = spec.node_id;
    node.name = absl::StrCat("node ", spec.node_id,
                             spec.hostname.empty() ? "" : absl::StrCat(" (", spec.hostname, ")"));
    if (spec.address.empty() || spec.arena_key.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(node.name, " published no ", backend_,
                       " address or arena key (its daemon runs another inter-node transport?)"));
    }
    TR_ASSIGN_OR_RETURN(node.layout, ComputeArenaLayout(spec.arena_bytes, local_ranks));
    TR_LOG(INFO, kLog) << "connecting to " << node.name << " over " << backend_;
    absl::StatusOr<std::unique_ptr<transport::Endpoint>> ep =
        context_->Connect(spec.address, deadline);
    if (!ep.ok()) return Annotate(ep.status(), absl::StrCat("connecting to ", node.name));
    node.endpoint = *std::move(ep);
    absl::StatusOr<std::unique_ptr<transport::RemoteRegion>> remote =
        node.endpoint->UnpackRemoteKey(spec.arena_key);
    if (!remote.ok()) {
      return Annotate(remote.status(), absl::StrCat("arena key of ", node.name));
    }
    node.arena = *std::move(remote);
    if (node.arena->size() != spec.arena_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(node.name, " published an arena of ",
                                                     spec.arena_bytes, " bytes but its key covers ",
                                                     node.arena->size()));
    }
    peer_index_[spec.node_id] = peers_.size();
    peers_.push_back(std::move(node));
  }
  return absl::OkStatus();
}

PeerNode* Fabric::peer(int node_id) {
  auto it = peer_index_.find(node_id);
  return it == peer_index_.end() ? nullptr : &peers_[it->second];
}

}  // namespace runtime
}  // namespace tokenrail
