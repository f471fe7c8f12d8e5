// BarrierTable logic without a server: parked calls are never bound to gRPC,
// so the answers are read from the Effects and then dropped unsent.
#include "scheduler/coordinator/barrier.h"

#include <grpcpp/support/proto_buffer_reader.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "scheduler/coordinator/validation.h"

namespace tokenrail {
namespace coordinator {
namespace {

class BarrierTableTest : public ::testing::Test {
 protected:
  ~BarrierTableTest() override { fx_.finish.clear(); }  // nothing to send

  struct Call {
    std::unique_ptr<ParkedCall> call = std::make_unique<ParkedCall>(nullptr);
    grpc::ByteBuffer response;
  };

  Call* Arrive(const std::string& name, int participant, int participants,
               const std::string& payload, absl::Time deadline = absl::InfiniteFuture()) {
    calls_.push_back(std::make_unique<Call>());
    Call* c = calls_.back().get();
    c->call->deadline = deadline;
    v1::BarrierRequest r;
    r.set_name(name);
    r.set_participant(participant);
    r.set_participants(participants);
    r.set_payload(payload);
    table_.Arrive(r, c->call.get(), &c->response, /*give_up_ns=*/INT64_MAX, &fx_);
    return c;
  }

  // The status `c` was answered with; nullopt while it waits.
  std::optional<grpc::Status> Answer(const Call* c) const {
    for (const auto& [call, status] : fx_.finish) {
      if (call == c->call.get()) return status;
    }
    return std::nullopt;
  }

  static v1::BarrierResponse Parse(Call* c) {
    grpc::ProtoBufferReader reader(&c->response);
    v1::BarrierResponse r;
    EXPECT_TRUE(r.ParseFromZeroCopyStream(&reader));
    return r;
  }

  BarrierTable table_{/*max_names=*/4};
  Effects fx_;
  std::vector<std::unique_ptr<Call>> calls_;
};

TEST_F(BarrierTableTest, ReleasesEveryoneWithAllPayloadsInRounds) {
  Call* a = Arrive("b", 2, 3, "two");
  Call* b = Arrive("b", 0, 3, "zero");
  EXPECT_FALSE(Answer(a).has_value());
  EXPECT_EQ(table_.waiting(), 2u);
  Call* c = Arrive("b", 1, 3, "one");
  for (Call* x : {a, b, c}) {
    ASSERT_TRUE(Answer(x).has_value());
    EXPECT_TRUE(Answer(x)->ok());
    v1::BarrierResponse r = Parse(x);
    EXPECT_EQ(r.round(), 0);
    ASSERT_EQ(r.payloads_size(), 3);
    EXPECT_EQ(r.payloads(0), "zero");
    EXPECT_EQ(r.payloads(1), "one");
    EXPECT_EQ(r.payloads(2), "two");
    EXPECT_FALSE(x->call->parked);
  }
  EXPECT_EQ(table_.waiting(), 0u);
  // Next round of the same name; a different count is fine once empty.
  Call* d = Arrive("b", 0, 1, "solo");
  EXPECT_EQ(Parse(d).round(), 1);
}

TEST_F(BarrierTableTest, CountMismatchDuplicateAndNameLimit) {
  Arrive("b", 0, 2, "");
  Call* mismatch = Arrive("b", 1, 3, "");
  EXPECT_EQ(Answer(mismatch)->error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  Call* dup = Arrive("b", 0, 2, "");
  EXPECT_EQ(Answer(dup)->error_code(), grpc::StatusCode::ALREADY_EXISTS);
  for (const char* n : {"c", "d", "e"}) Arrive(n, 0, 2, "");
  Call* fifth = Arrive("f", 0, 2, "");
  EXPECT_EQ(Answer(fifth)->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(Answer(fifth)->error_message(), "limit is 4"));
}

TEST_F(BarrierTableTest, WithdrawKeepsTheRoundAndLateDeadlinesDoNotCount) {
  Call* gone = Arrive("b", 0, 2, "old");
  EXPECT_TRUE(table_.Withdraw(gone->call.get()));
  EXPECT_FALSE(table_.Withdraw(gone->call.get()));
  Call* again = Arrive("b", 0, 2, "new", absl::Now() - absl::Seconds(1));  // expired
  Call* other = Arrive("b", 1, 2, "x");
  // The expired entry is withdrawn instead of being released with the round.
  EXPECT_EQ(Answer(again)->error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_FALSE(Answer(other).has_value());
  Call* fresh = Arrive("b", 0, 2, "fresh");
  ASSERT_TRUE(Answer(other).has_value());
  v1::BarrierResponse r = Parse(fresh);
  EXPECT_EQ(r.round(), 0);
  EXPECT_EQ(r.payloads(0), "fresh");
}

TEST_F(BarrierTableTest, OversizedRoundFailsForAllItsParticipants) {
  const std::string mib(kMaxBarrierPayloadBytes, 'p');
  const int full = static_cast<int>(kMaxBarrierRoundBytes / kMaxBarrierPayloadBytes);
  std::vector<Call*> early;
  for (int p = 0; p < full; ++p) early.push_back(Arrive("big", p, full + 2, mib));
  EXPECT_FALSE(Answer(early[0]).has_value());
  Call* over = Arrive("big", full, full + 2, "x");  // one byte over
  for (Call* c : early) EXPECT_EQ(Answer(c)->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Answer(over)->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(Answer(over)->error_message(), "round limit"))
      << Answer(over)->error_message();
  Call* last = Arrive("big", full + 1, full + 2, "");  // still the failed round
  EXPECT_EQ(Answer(last)->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(table_.waiting(), 0u);
  Call* next = Arrive("big", 0, 1, "");  // the failed round closed
  EXPECT_EQ(Parse(next).round(), 1);
}

TEST_F(BarrierTableTest, FailAllAnswersEveryWaiter) {
  Call* a = Arrive("x", 0, 2, "");
  Call* b = Arrive("y", 0, 3, "");
  table_.FailAll(grpc::Status(grpc::StatusCode::UNAVAILABLE, "job j failed: node 1: gone"), &fx_);
  EXPECT_EQ(Answer(a)->error_message(), "job j failed: node 1: gone");
  EXPECT_EQ(Answer(b)->error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(table_.waiting(), 0u);
}

}  // namespace
}  // namespace coordinator
}  // namespace tokenrail
