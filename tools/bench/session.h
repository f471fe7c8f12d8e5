// One benchmark session between the leader and the follower for one backend:
// the OOB control protocol (typed frames), the transport objects both sides
// set up from the plan (context, endpoint, regions, the peer's target region)
// and waits on the OOB channel that keep driving transport progress, so a
// backend that answers its peer's requests only inside its own calls (remote
// key validation, connection handshakes) is never starved while this side
// waits for the other.
//
// Protocol, per backend (L = leader, F = follower), every frame tagged:
//   L->F kPlan(plan)        F->L kHello(status, F address)
//   L->F kAddress(L address)          both Connect()
//   L<->F kKey(target region key)     both UnpackRemoteKey()
//   per test:  L<->F kBarrier, warmup, L<->F kBarrier, timed,
//              F->L kResult(follower's side of the test)
//   L->F kDone  F->L kDone              (nobody uses the endpoint any more)
// and finally L->F kBye. Any OOB failure (the peer died) ends the run.
//
// Thread safety: a Session is used by one thread.
#ifndef TOKENRAIL_TOOLS_BENCH_SESSION_H_
#define TOKENRAIL_TOOLS_BENCH_SESSION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tools/bench/plan.h"
#include "transport/oob.h"
#include "transport/transport.h"

namespace tokenrail {
namespace bench {

enum class Frame : uint8_t {
  kPlan = 1,
  kHello = 2,
  kAddress = 3,
  kKey = 4,
  kBarrier = 5,
  kResult = 6,
  kDone = 7,
  kBye = 8,
};

// What one side saw in one test.
struct SideResult {
  absl::Status verify;             // first data or ordering error as a receiver
  uint64_t received = 0;           // notifications checked (warmup + timed)
  uint64_t full_checks = 0;        // messages compared byte by byte
  int64_t send_ns = 0;             // timed send phase, first post to final ack
  std::vector<double> samples_us;  // one-way latencies or per-put times
};

// Follower -> leader summary of a SideResult (samples stay local).
std::string PackSideResult(const SideResult& r);
absl::StatusOr<SideResult> UnpackSideResult(absl::string_view blob);

// A status as bytes (code + message), for reporting the peer's errors.
std::string PackStatus(const absl::Status& status);
absl::StatusOr<absl::Status> UnpackStatus(absl::string_view blob);

class Session {
 public:
  Session(transport::OobChannel* oob, absl::Duration timeout) : oob_(oob), timeout_(timeout) {}
  ~Session();  // endpoint, then regions, then context
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // OOB framing. Recv fails with InvalidArgument when the frame has another
  // type; while waiting it drives transport progress (when a context exists).
  absl::Status Send(Frame type, absl::string_view body);
  absl::StatusOr<std::string> Recv(Frame type);
  // Any frame: its type and body.
  absl::StatusOr<std::pair<Frame, std::string>> RecvAny(absl::string_view waiting_for);
  // Both sides call it: returns once the peer reached the same point.
  absl::Status Barrier();

  // Creates the context (the plan's backend and params, plus `extra_params`
  // set by this side, which win), allocates the regions.
  absl::Status CreateContext(const Plan& plan, const std::string& name,
                             const std::map<std::string, std::string>& extra_params);
  absl::Status AllocateRegions(uint64_t bytes);
  // Connects to the peer and unpacks its target key (both sides call these
  // in the protocol order above).
  absl::Status Connect(absl::string_view peer_address);
  absl::Status ExchangeKeys();

  transport::Context& context() { return *context_; }
  transport::Endpoint& endpoint() { return *endpoint_; }
  transport::MemoryRegion& source() { return *source_; }
  transport::MemoryRegion& target() { return *target_; }
  const transport::RemoteRegion& peer_target() const { return *peer_target_; }
  absl::Duration timeout() const { return timeout_; }
  bool has_context() const { return context_ != nullptr; }

 private:
  transport::OobChannel* oob_;
  absl::Duration timeout_;
  std::unique_ptr<transport::Context> context_;
  std::unique_ptr<transport::MemoryRegion> source_;
  std::unique_ptr<transport::MemoryRegion> target_;
  std::unique_ptr<transport::Endpoint> endpoint_;
  std::unique_ptr<transport::RemoteRegion> peer_target_;
};

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_SESSION_H_
