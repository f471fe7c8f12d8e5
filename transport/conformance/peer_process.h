// The conformance suite's peer: a conformance_peer process spawned per test,
// driven over an OOB socketpair. While waiting for a reply the test keeps its
// own transport context progressing, since the peer's operation may need it.
#ifndef TOKENRAIL_TRANSPORT_CONFORMANCE_PEER_PROCESS_H_
#define TOKENRAIL_TRANSPORT_CONFORMANCE_PEER_PROCESS_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "transport/conformance/conformance.h"
#include "transport/conformance/peer_protocol.h"
#include "transport/oob.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {

class PeerProcess {
 public:
  // Starts conformance_peer for `config`. Its first reply (Await) is its
  // transport address or the error that stopped it.
  static absl::StatusOr<std::unique_ptr<PeerProcess>> Spawn(const ConformanceConfig& config);
  ~PeerProcess();  // Kills the peer if it still runs and reaps it.

  absl::Status SendRaw(absl::string_view frame) { return oob_.Send(frame); }
  absl::Status Send(const PeerCommand& cmd) { return oob_.Send(EncodeCommand(cmd)); }
  // Waits for the next reply, calling progress->Progress() meanwhile (if set).
  absl::StatusOr<std::string> Await(Context* progress, absl::Time deadline);
  absl::StatusOr<std::string> Call(const PeerCommand& cmd, Context* progress, absl::Time deadline);

  // SIGKILL and reap. Safe to call from another thread than the one awaiting.
  void Kill();

 private:
  PeerProcess(pid_t pid, OobChannel oob) : pid_(pid), oob_(std::move(oob)) {}
  std::atomic<pid_t> pid_;
  OobChannel oob_;
};

}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_CONFORMANCE_PEER_PROCESS_H_
