// tokenraild: the node daemon (see daemon.h), optionally hosting the
// coordinator (--host_coordinator), or the coordinator alone
// (--coordinator_only). Flags, or a config file of flags (--flagfile=FILE).
//
// Signals: SIGTERM / SIGINT drain (stop attaching, let in-flight work finish
// within 10 s, leave the job) and exit 0. Exit codes: 0 drained or done,
// 1 the job failed (--exit_when_done) or start-up failed, 2 bad flags.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/init.h"
#include "common/logging.h"
#include "common/rpc/auth.h"
#include "common/rpc/client_flags.h"
#include "common/rpc/server.h"
#include "common/status.h"
#include "runtime/daemon/daemon.h"
#include "scheduler/coordinator/coordinator.h"

ABSL_FLAG(int, node_id, -1, "This node's id in the job, 0..nodes-1.");
ABSL_FLAG(std::string, job_id, "", "Job to join (created through JobService.CreateJob).");
ABSL_FLAG(bool, host_coordinator, false,
          "Also run the coordinator in this process (on --coordinator_listen) and join it.");
ABSL_FLAG(std::string, coordinator_listen, "127.0.0.1:0",
          "Where a hosted coordinator listens (HOST:PORT, port 0 picks one).");
ABSL_FLAG(bool, coordinator_only, false,
          "Run only the coordinator (on --coordinator_listen): no node, no arena.");
ABSL_FLAG(std::string, listen, "127.0.0.1:0", "NodeService bind address (HOST:PORT).");
ABSL_FLAG(std::string, socket, "", "Rank socket path (default /tmp/tokenrail-<job>-n<node>.sock).");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate for this process's gRPC servers.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(uint64_t, arena_bytes, 268435456,
          "Shared arena size in bytes (rank heaps and rings), a multiple of 4096.");
ABSL_FLAG(std::string, transports, "ucx",
          "Inter-node transport filter, like UCX_TLS: 'ucx', 'verbs,ucx', '^shm'.");
ABSL_FLAG(std::string, transport_params, "",
          "Backend parameters k=v,k=v (e.g. tls=tcp to keep emulated nodes on TCP).");
ABSL_FLAG(int64_t, heartbeat_interval_ms, 500, "Heartbeat interval of a hosted coordinator.");
ABSL_FLAG(int64_t, heartbeat_timeout_ms, 3000,
          "A node silent this long is dead (hosted coordinator; joining daemons use the "
          "coordinator's value).");
ABSL_FLAG(std::string, ready_file, "",
          "Written atomically once serving: node_port=P, coordinator_port=P (when hosting), "
          "socket=PATH.");
ABSL_FLAG(bool, exit_when_done, false,
          "Leave the job and exit once every local rank attached and detached cleanly.");

namespace tokenrail {
namespace {

constexpr char kLog[] = "tokenraild";
constexpr char kUsage[] =
    "tokenraild --node_id=N --job_id=ID (--coordinator=HOST:PORT | --host_coordinator) [flags]\n"
    "tokenraild --coordinator_only [--coordinator_listen=HOST:PORT] [flags]";

absl::StatusOr<std::map<std::string, std::string>> ParseParams(const std::string& text) {
  std::map<std::string, std::string> out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (kv.first.empty() || item.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--transport_params: '", item, "' is not key=value"));
    }
    out[kv.first] = kv.second;
  }
  return out;
}

absl::Status WriteReadyFile(const std::string& path, const std::string& contents) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << contents;
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ready file ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

// A client can reach a server bound to a wildcard address on loopback.
std::string DialableAddress(const std::string& bound, int port) {
  std::string host;
  int ignored;
  if (!rpc::ParseHostPort(bound, &host, &ignored).ok() || host.empty() || host == "0.0.0.0" ||
      host == "::" || host == "[::]") {
    host = "127.0.0.1";
  }
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  return absl::StrCat(host, ":", port);
}

// Blocks SIGTERM/SIGINT in every thread; one thread waits for them.
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  // Calls `on_signal` for each signal, on a detached thread.
  void Start(std::function<void(int)> on_signal) {
    std::thread([this, on_signal] {
      for (;;) {
        int sig = 0;
        if (sigwait(&set_, &sig) == 0) on_signal(sig);
      }
    }).detach();
  }

 private:
  sigset_t set_;
};

int Main(int argc, char** argv) {
  SignalWatcher signals;  // before any thread starts, so all inherit the mask
  InitMain(argc, argv, kUsage);

  absl::StatusOr<rpc::ClientOptions> client = rpc::ClientOptionsFromFlags();
  if (!client.ok()) {
    std::fprintf(stderr, "tokenraild: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  rpc::ServerOptions server;
  server.auth_token = client->auth_token;
  server.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  server.tls_key_file = absl::GetFlag(FLAGS_tls_key);

  coordinator::CoordinatorOptions copts;
  copts.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_interval_ms));
  copts.heartbeat_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_timeout_ms));
  std::unique_ptr<coordinator::CoordinatorServer> hosted;
  const bool coordinator_only = absl::GetFlag(FLAGS_coordinator_only);
  if (coordinator_only || absl::GetFlag(FLAGS_host_coordinator)) {
    rpc::ServerOptions cs = server;
    cs.listen_address = absl::GetFlag(FLAGS_coordinator_listen);
    cs.name = "coordinator";
    absl::StatusOr<std::unique_ptr<coordinator::CoordinatorServer>> started =
        coordinator::CoordinatorServer::Start(copts, cs);
    if (!started.ok()) {
      TR_LOG(ERROR, kLog) << "starting the coordinator: " << started.status();
      return started.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
    }
    hosted = *std::move(started);
    TR_LOG(INFO, kLog) << "coordinator listening on " << hosted->address();
  }

  if (coordinator_only) {
    absl::Notification stop;
    signals.Start([&](int sig) {
      TR_LOG(INFO, kLog) << "signal " << sig << ": stopping the coordinator";
      if (!stop.HasBeenNotified()) stop.Notify();
    });
    const std::string ready = absl::GetFlag(FLAGS_ready_file);
    if (!ready.empty()) {
      absl::Status s =
          WriteReadyFile(ready, absl::StrCat("coordinator_port=", hosted->port(), "\n"));
      if (!s.ok()) TR_LOG(ERROR, kLog) << s;
    }
    stop.WaitForNotification();
    hosted->Shutdown();
    return 0;
  }

  runtime::DaemonOptions o;
  o.node_id = absl::GetFlag(FLAGS_node_id);
  o.job_id = absl::GetFlag(FLAGS_job_id);
  if (hosted != nullptr) {
    o.coordinator = DialableAddress(hosted->address(), hosted->port());
  } else {
    absl::StatusOr<std::string> target = rpc::CoordinatorAddressFromFlags();
    if (!target.ok()) {
      std::fprintf(stderr, "tokenraild: %s (or --host_coordinator)\n",
                   std::string(target.status().message()).c_str());
      return 2;
    }
    o.coordinator = *target;
  }
  o.coordinator_client = *client;
  o.node_server = server;
  o.node_server.listen_address = absl::GetFlag(FLAGS_listen);
  o.socket_path = absl::GetFlag(FLAGS_socket);
  o.arena_bytes = absl::GetFlag(FLAGS_arena_bytes);
  o.transports = absl::GetFlag(FLAGS_transports);
  absl::StatusOr<std::map<std::string, std::string>> params =
      ParseParams(absl::GetFlag(FLAGS_transport_params));
  if (!params.ok()) {
    std::fprintf(stderr, "tokenraild: %s\n", std::string(params.status().message()).c_str());
    return 2;
  }
  o.transport_params = *std::move(params);
  o.heartbeat_interval = copts.heartbeat_interval;
  o.heartbeat_timeout = copts.heartbeat_timeout;
  o.exit_when_done = absl::GetFlag(FLAGS_exit_when_done);
  if (absl::Status s = o.Validate(); !s.ok()) {
    std::fprintf(stderr, "tokenraild: %s\n", std::string(s.message()).c_str());
    return 2;
  }

  runtime::Daemon daemon(o);
  std::atomic<bool> drained{false};
  signals.Start([&](int sig) {
    drained.store(true);
    daemon.RequestDrain(absl::StrCat("signal ", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
                        o.drain_timeout);
  });
  absl::Status started = daemon.Start();
  if (!started.ok()) {
    if (drained.load() && started.code() == absl::StatusCode::kCancelled) {
      TR_LOG(INFO, kLog) << started.message();
      return 0;
    }
    TR_LOG(ERROR, kLog) << "node " << o.node_id << " could not start: " << started;
    return 1;
  }
  const std::string ready = absl::GetFlag(FLAGS_ready_file);
  if (!ready.empty()) {
    std::string text = absl::StrCat("node_port=", daemon.node_port(), "\n");
    if (hosted != nullptr) absl::StrAppend(&text, "coordinator_port=", hosted->port(), "\n");
    absl::StrAppend(&text, "socket=", daemon.socket_path(), "\n");
    if (absl::Status s = WriteReadyFile(ready, text); !s.ok()) {
      TR_LOG(ERROR, kLog) << s;
      return 1;
    }
  }
  absl::Status result = daemon.Wait();
  if (hosted != nullptr) {
    // The other daemons still talk to this coordinator: keep it until the job
    // ended (every node left or the job failed), bounded.
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (absl::Now() < end) {
      auto job = hosted->coordinator().registry().Find(o.job_id);
      if (!job.ok() || (*job)->Ended()) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    hosted->Shutdown();
  }
  if (!result.ok()) {
    TR_LOG(ERROR, kLog) << "node " << o.node_id << ": " << result.message();
    return drained.load() ? 0 : 1;
  }
  return 0;
}

}  // namespace
}  // namespace tokenrail

int main(int argc, char** argv) { return tokenrail::Main(argc, argv); }
