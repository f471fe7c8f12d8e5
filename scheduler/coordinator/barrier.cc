#include "scheduler/coordinator/barrier.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "scheduler/coordinator/validation.h"

namespace tokenrail {
namespace coordinator {

void BarrierTable::Open(Barrier* b, int participants) {
  b->participants = participants;
  b->arrived = 0;
  b->bytes = 0;
  b->entered.assign(participants, false);
  b->payloads.assign(participants, std::string());
  b->waiters.assign(participants, Waiter());
  b->poison = grpc::Status::OK;
}

void BarrierTable::Reset(Barrier* b) {
  b->participants = 0;
  b->arrived = 0;
  b->bytes = 0;
  // Release the memory: a name used once per step must not keep payloads.
  std::vector<bool>().swap(b->entered);
  std::vector<std::string>().swap(b->payloads);
  std::vector<Waiter>().swap(b->waiters);
  b->poison = grpc::Status::OK;
}

void BarrierTable::Close(Barrier* b) {
  Reset(b);
  ++b->round;
}

void BarrierTable::AnswerAll(Barrier* b, const grpc::Status& status, Effects* fx) {
  for (Waiter& w : b->waiters) {
    if (w.call == nullptr) continue;
    w.call->parked = false;
    fx->finish.emplace_back(w.call, status);
    w = Waiter();
    --waiting_;
  }
}

void BarrierTable::Release(Barrier* b, Effects* fx) {
  v1::BarrierResponse message;
  message.set_round(b->round);
  message.mutable_payloads()->Reserve(b->participants);
  for (std::string& p : b->payloads) *message.add_payloads() = std::move(p);
  grpc::Slice slice(message.SerializeAsString());
  const grpc::ByteBuffer shared(&slice, 1);
  for (Waiter& w : b->waiters) {
    if (w.call == nullptr) continue;
    *w.response = shared;
    w.call->parked = false;
    fx->finish.emplace_back(w.call, grpc::Status::OK);
    w = Waiter();
    --waiting_;
  }
  Close(b);
}

void BarrierTable::Arrive(v1::BarrierRequest& request, ParkedCall* call, grpc::ByteBuffer* response,
                          int64_t give_up_ns, Effects* fx) {
  auto it = barriers_.find(request.name());
  if (it == barriers_.end()) {
    if (barriers_.size() >= max_names_) {
      fx->finish.emplace_back(
          call,
          grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       absl::StrCat("job has ", barriers_.size(), " barrier names; the limit is ",
                                    max_names_, " (reuse names across rounds)")));
      return;
    }
    it = barriers_.emplace(request.name(), Barrier()).first;
  }
  Barrier& b = it->second;
  const int p = request.participant();
  if (b.participants == 0) {
    Open(&b, request.participants());
  } else if (b.participants != request.participants()) {
    fx->finish.emplace_back(
        call, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                           absl::StrCat("barrier '", request.name(), "' round ", b.round,
                                        " has participants=", b.participants,
                                        "; this call says participants=", request.participants())));
    return;
  }
  if (b.entered[p]) {
    fx->finish.emplace_back(
        call, grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                           absl::StrCat("participant ", p, " already entered barrier '",
                                        request.name(), "' round ", b.round)));
    return;
  }
  b.entered[p] = true;
  ++b.arrived;
  if (b.poison.ok() && b.bytes + request.payload().size() > kMaxBarrierRoundBytes) {
    b.poison = grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("barrier '", request.name(), "' round ", b.round,
                     ": payloads exceed the round limit of ", kMaxBarrierRoundBytes, " bytes (",
                     b.bytes + request.payload().size(), " with participant ", p, ")"));
    AnswerAll(&b, b.poison, fx);
    std::vector<std::string>().swap(b.payloads);
  }
  if (!b.poison.ok()) {
    fx->finish.emplace_back(call, b.poison);
  } else {
    b.bytes += request.payload().size();
    b.payloads[p] = std::move(*request.mutable_payload());
    b.waiters[p] = Waiter{call, response};
    call->parked = true;
    call->give_up_ns = give_up_ns;
    call->barrier_name = request.name();
    call->participant = p;
    ++waiting_;
  }
  if (b.arrived == b.participants) {
    if (!b.poison.ok()) {
      Close(&b);
    } else if (!ExpireLate(request.name(), &b, fx)) {
      Release(&b, fx);
    }
  }
}

bool BarrierTable::ExpireLate(const std::string& name, Barrier* b, Effects* fx) {
  const absl::Time now = absl::Now();
  bool expired = false;
  for (size_t p = 0; p < b->waiters.size(); ++p) {
    ParkedCall* call = b->waiters[p].call;
    if (call == nullptr || call->deadline > now) continue;
    Withdraw(call);
    fx->finish.emplace_back(
        call, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                           absl::StrCat("barrier '", name, "': deadline passed while waiting")));
    expired = true;
  }
  return expired;
}

bool BarrierTable::Withdraw(ParkedCall* call) {
  auto it = barriers_.find(call->barrier_name);
  if (it == barriers_.end()) return false;
  Barrier& b = it->second;
  const int p = call->participant;
  if (p < 0 || p >= b.participants || b.waiters[p].call != call) return false;
  b.waiters[p] = Waiter();
  b.entered[p] = false;
  b.bytes -= b.payloads[p].size();
  std::string().swap(b.payloads[p]);
  --b.arrived;
  --waiting_;
  call->parked = false;
  // Nobody is left in the round and nobody was answered: same round number.
  if (b.arrived == 0) Reset(&b);
  return true;
}

void BarrierTable::ExpireWaiters(int64_t now_ns, Effects* fx) {
  if (waiting_ == 0) return;
  for (auto& [name, b] : barriers_) {
    for (int p = 0; p < static_cast<int>(b.waiters.size()); ++p) {
      ParkedCall* call = b.waiters[p].call;
      if (call == nullptr || call->give_up_ns > now_ns) continue;
      Withdraw(call);
      fx->finish.emplace_back(
          call, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                             absl::StrCat("barrier '", name,
                                          "' waited the coordinator's maximum for a call "
                                          "without a deadline; set a deadline")));
    }
  }
}

void BarrierTable::FailAll(const grpc::Status& status, Effects* fx) {
  for (auto& [name, b] : barriers_) {
    if (b.participants == 0) continue;
    AnswerAll(&b, status, fx);
    Close(&b);
  }
}

}  // namespace coordinator
}  // namespace tokenrail
