#include "scheduler/coordinator/validation.h"

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "scheduler/coordinator/options.h"

namespace tokenrail {
namespace coordinator {
namespace {

v1::JobSpec Good() {
  v1::JobSpec s;
  s.set_nodes(2);
  s.set_ranks_per_node(4);
  s.set_experts(16);
  s.set_top_k(4);
  s.set_max_nodes_per_token(2);
  return s;
}

void ExpectInvalid(const absl::Status& s, const std::string& text) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), text)) << s << "\nwanted: " << text;
}

TEST(ValidateJobSpecTest, AcceptsBoundaries) {
  EXPECT_TRUE(ValidateJobSpec(Good()).ok());
  v1::JobSpec s = Good();
  s.set_top_k(16);
  s.set_experts(16);
  EXPECT_TRUE(ValidateJobSpec(s).ok());  // top_k == experts == 16, M = nodes
  s = Good();
  s.set_ranks_per_node(255);
  s.set_nodes(1);
  s.set_experts(255);
  s.set_max_nodes_per_token(1);
  EXPECT_TRUE(ValidateJobSpec(s).ok());
  s = Good();
  s.set_top_k(8);  // 8 per node, M=1: reachable exactly
  s.set_max_nodes_per_token(1);
  EXPECT_TRUE(ValidateJobSpec(s).ok());
}

TEST(ValidateJobSpecTest, ReachabilityWithinMaxNodes) {
  v1::JobSpec s = Good();
  s.set_top_k(9);
  s.set_max_nodes_per_token(1);
  ExpectInvalid(ValidateJobSpec(s), "spec.top_k=9 experts are not reachable");
}

TEST(ValidateJobSpecTest, WorldSizeOverflowIsImpossible) {
  v1::JobSpec s = Good();
  s.set_nodes(kMaxNodes + 1);
  ExpectInvalid(ValidateJobSpec(s), "spec.nodes=4097 must be in 1..4096");
  s = Good();
  s.set_experts(kMaxExperts + 16);
  ExpectInvalid(ValidateJobSpec(s), "spec.experts=");
}

TEST(ValidateJobSpecTest, PipelineKindMustBeKnown) {
  v1::JobSpec s = Good();
  s.mutable_pipeline()->set_kind(static_cast<v1::PipelineSpec::Kind>(42));
  ExpectInvalid(ValidateJobSpec(s), "spec.pipeline.kind=42 is not a known kind");
}

TEST(ValidateJobIdTest, Rules) {
  EXPECT_TRUE(ValidateJobId("a-1").ok());
  EXPECT_TRUE(ValidateJobId(std::string(64, 'z')).ok());
  ExpectInvalid(ValidateJobId(""), "job_id is required");
  ExpectInvalid(ValidateJobId("a b"), "may only contain");
  ExpectInvalid(ValidateJobId("a/b", "--job"), "--job='a/b'");
}

TEST(ValidateBarrierFieldsTest, Rules) {
  v1::BarrierRequest r;
  r.set_job_id("j");
  r.set_session_id("s");
  r.set_name("n");
  r.set_participants(kMaxBarrierParticipants);
  r.set_participant(kMaxBarrierParticipants - 1);
  EXPECT_TRUE(ValidateBarrierFields(r).ok());
  r.set_participants(kMaxBarrierParticipants + 1);
  ExpectInvalid(ValidateBarrierFields(r), "participants=65537 must be in 1..65536");
}

TEST(ValidateReportedFailureTest, RankOnlyAndNodeOnly) {
  v1::JobSpec spec = Good();
  v1::FailureInfo f;
  f.set_node_id(-1);
  f.set_global_rank(7);
  f.set_reason("r");
  EXPECT_TRUE(ValidateReportedFailure(f, spec).ok());
  f.set_global_rank(-1);
  f.set_node_id(1);
  EXPECT_TRUE(ValidateReportedFailure(f, spec).ok());
  f.set_reason(std::string(kMaxReasonBytes + 1, 'x'));
  ExpectInvalid(ValidateReportedFailure(f, spec), "failure.reason is 4097 bytes");
}

TEST(CoordinatorOptionsTest, Validate) {
  CoordinatorOptions o;
  EXPECT_TRUE(o.Validate().ok());
  EXPECT_EQ(o.heartbeat_interval, absl::Milliseconds(500));
  EXPECT_LE(o.heartbeat_timeout, absl::Seconds(5));  // issue 3: default <= 5 s
  o.heartbeat_timeout = absl::Milliseconds(900);
  ExpectInvalid(o.Validate(), "heartbeat_timeout=900ms must be at least twice");
  o = CoordinatorOptions();
  o.heartbeat_interval = absl::Milliseconds(1);
  ExpectInvalid(o.Validate(), "heartbeat_interval=1ms must be in 10ms..60s");
  o = CoordinatorOptions();
  o.max_jobs = 0;
  ExpectInvalid(o.Validate(), "max_jobs=0");
}

}  // namespace
}  // namespace coordinator
}  // namespace tokenrail
