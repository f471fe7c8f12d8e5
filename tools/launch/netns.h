// An emulated cluster network on one machine: one network namespace per node
// joined by veth pairs to a bridge that lives in its own "switch" namespace,
// so nothing is added to the host's network. Node i gets eth0 with
// 10.99.0.<i+1>/24 (a private range; each run has its own switch, so runs do
// not collide) plus loopback. Names are "<prefix>-sw" and "<prefix>-n<i>"
// with a per-run random prefix.
//
// Processes join a node with SpawnOptions::netns_path (subprocess.h). They
// still share memory with every other namespace, so transports that use
// shared memory between processes (UCX's default) must be restricted to TCP
// to make inter-node traffic cross the emulated network.
//
// Requires root (CAP_SYS_ADMIN and CAP_NET_ADMIN): CheckNetnsPrivileges() says
// so clearly. Built with iproute2 (`ip -batch`), one command per namespace.
//
// Thread safety: not thread-safe; one owner.
#ifndef TOKENRAIL_TOOLS_LAUNCH_NETNS_H_
#define TOKENRAIL_TOOLS_LAUNCH_NETNS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace launch {

class Janitor;

class NetnsCluster {
 public:
  static constexpr int kMaxNodes = 250;
  // The node's interface on the emulated network.
  static constexpr char kDevice[] = "eth0";

  // Every namespace a cluster with this prefix and node count uses (switch
  // first), for registering with the janitor before creation.
  static std::vector<std::string> NamespaceNames(absl::string_view prefix, int nodes);

  // Creates the switch, the node namespaces, bridge, veths and addresses.
  // Registers every name with `janitor` (may be null) before creating it. On
  // failure, whatever was created is deleted again.
  static absl::StatusOr<std::unique_ptr<NetnsCluster>> Create(absl::string_view prefix, int nodes,
                                                              Janitor* janitor);
  ~NetnsCluster();  // Destroy(); errors are logged
  NetnsCluster(const NetnsCluster&) = delete;
  NetnsCluster& operator=(const NetnsCluster&) = delete;

  int nodes() const { return nodes_; }
  const std::string& node_namespace(int node) const { return names_[node + 1]; }
  // /run/netns/<name>, for setns.
  std::string node_path(int node) const;
  // The node's eth0 address ("10.99.0.2" for node 1).
  static std::string NodeAddress(int node);

  // Deletes the namespaces (their veths and the bridge go with them).
  absl::Status Destroy();

 private:
  NetnsCluster(std::vector<std::string> names, int nodes)
      : names_(std::move(names)), nodes_(nodes) {}
  std::vector<std::string> names_;  // switch, then nodes
  int nodes_;
  bool destroyed_ = false;
};

// OK when this process may create network namespaces; PermissionDenied with
// what to do otherwise; NotFound when iproute2 is missing.
absl::Status CheckNetnsPrivileges();

// Deletes named network namespaces, skipping names that do not exist.
absl::Status DeleteNamespaces(const std::vector<std::string>& names);

// Path of the `ip` binary (PATH, then /usr/sbin, /sbin, /bin).
absl::StatusOr<std::string> IpBinary();

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_NETNS_H_
