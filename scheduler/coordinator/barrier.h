// Named barriers of one job, each an allgather in rounds: participant i of
// `participants` enters round r of name N with a payload; when the last one
// enters, every participant is answered at once with all payloads (index =
// participant) and round r+1 of N opens. A participant whose call is cancelled
// (deadline) leaves the round, so it can retry. The coordinator learns of a
// deadline slightly after the client does (gRPC counts the server's copy from
// the request's arrival), so a retry sent at once may still find its old entry
// (ALREADY_EXISTS) or a round completed with it; retry after a short pause.
//
// Errors for the caller alone: a participant count that differs from the
// round's (INVALID_ARGUMENT), a participant index already waiting
// (ALREADY_EXISTS), too many distinct names (RESOURCE_EXHAUSTED). A round whose
// payloads together exceed kMaxBarrierRoundBytes fails for all of its
// participants (RESOURCE_EXHAUSTED), including those still to come.
//
// Responses are serialized once per round and shared by every participant
// (a grpc::ByteBuffer copy shares its slices), so releasing P participants
// costs O(P) work and memory rather than P responses of P payloads each.
//
// Thread safety: none; the owning Job calls it under its mutex. Answers go
// into Effects (see calls.h), which the Job runs after unlocking.
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_BARRIER_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_BARRIER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"
#include "proto/tokenrail/v1/coordinator.pb.h"
#include "scheduler/coordinator/calls.h"

namespace tokenrail {
namespace coordinator {

class BarrierTable {
 public:
  explicit BarrierTable(size_t max_names) : max_names_(max_names) {}

  // Enters `call` (whose request passed ValidateBarrierFields) into the open
  // round of request.name(), taking the payload out of `request`. `response`
  // (a serialized BarrierResponse) belongs to the call.
  void Arrive(v1::BarrierRequest& request, ParkedCall* call, grpc::ByteBuffer* response,
              int64_t give_up_ns, Effects* fx);

  // Takes a parked call out of its round (it is answered by the caller).
  // False when it was not waiting here.
  bool Withdraw(ParkedCall* call);

  // Answers every waiter whose give_up time passed with DEADLINE_EXCEEDED.
  void ExpireWaiters(int64_t now_ns, Effects* fx);

  // Answers every waiter with `status` (the job ended).
  void FailAll(const grpc::Status& status, Effects* fx);

  size_t waiting() const { return waiting_; }

 private:
  struct Waiter {
    ParkedCall* call = nullptr;
    grpc::ByteBuffer* response = nullptr;
  };
  struct Barrier {
    int participants = 0;  // of the open round; 0 when nobody waits
    int64_t round = 0;
    int arrived = 0;
    size_t bytes = 0;
    std::vector<bool> entered;          // by participant
    std::vector<std::string> payloads;  // by participant
    std::vector<Waiter> waiters;        // by participant; call null once answered
    grpc::Status poison;                // set when the round failed for everyone
  };

  void Open(Barrier* b, int participants);
  void Reset(Barrier* b);  // empty round, memory released, same round number
  void Close(Barrier* b);  // Reset and advance to the next round
  void AnswerAll(Barrier* b, const grpc::Status& status, Effects* fx);
  void Release(Barrier* b, Effects* fx);  // everyone arrived: answer with payloads
  // Before a release: withdraws waiters whose client deadline passed (their
  // cancellation may not have arrived yet). True when any was withdrawn.
  bool ExpireLate(const std::string& name, Barrier* b, Effects* fx);

  const size_t max_names_;
  absl::flat_hash_map<std::string, Barrier> barriers_;
  size_t waiting_ = 0;
};

}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_BARRIER_H_
