// tokenraild's configuration: one typed struct, filled once in main() from
// flags (or --flagfile, the config file) and passed down. Library code never
// reads flags or the environment.
#ifndef TOKENRAIL_RUNTIME_DAEMON_OPTIONS_H_
#define TOKENRAIL_RUNTIME_DAEMON_OPTIONS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/rpc/options.h"

namespace tokenrail {
namespace runtime {

struct DaemonOptions {
  // Job membership.
  int node_id = -1;
  std::string job_id;
  // Coordinator to join (HOST:PORT) and how to talk to it (token, TLS).
  std::string coordinator;
  rpc::ClientOptions coordinator_client;

  // NodeService listener (token and TLS files as for every server).
  rpc::ServerOptions node_server;

  // Rank socket; empty = /tmp/tokenrail-<job>-n<node>.sock.
  std::string socket_path;

  // Shared arena size in bytes (heaps + rings of every local rank).
  uint64_t arena_bytes = 256ull << 20;

  // Inter-node transport: registry filter ("ucx", "verbs,ucx", "^shm") and
  // backend parameters ("tls" -> "tcp", ...).
  std::string transports = "ucx";
  std::map<std::string, std::string> transport_params;

  // Heartbeat interval and timeout of a coordinator this process hosts
  // (--host_coordinator, --coordinator_only). A joining daemon beats as its
  // coordinator's JoinResponse says.
  absl::Duration heartbeat_interval = absl::Milliseconds(500);
  absl::Duration heartbeat_timeout = absl::Milliseconds(3000);

  // Leave and stop once every local rank attached and detached cleanly.
  bool exit_when_done = false;
  // How long a drain lets in-flight proxy work finish.
  absl::Duration drain_timeout = absl::Seconds(10);
  // How long start-up waits for every node to join and connect.
  absl::Duration join_timeout = absl::Minutes(2);
  // Upper bound of one collective (AllocateSymmetric / Barrier) across nodes.
  absl::Duration collective_timeout = absl::Hours(1);

  // Proxy pacing: how long the proxy keeps spinning after its last work
  // before sleeping, and its longest sleep while inter-node peers exist (it
  // must poll the network; with no peers it sleeps until a rank rings).
  absl::Duration proxy_spin = absl::Microseconds(100);
  absl::Duration proxy_max_poll_sleep = absl::Milliseconds(1);

  // The effective socket path.
  std::string SocketPath() const;
  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_DAEMON_OPTIONS_H_
