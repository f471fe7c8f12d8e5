// Bad input for every Coordinator and JobService RPC (each validation rule,
// unknown job, wrong session, out-of-range participant, oversize message),
// asserting code and message; and the token on every RPC.
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "scheduler/coordinator/coordinator.h"
#include "scheduler/coordinator/member_client.h"
#include "scheduler/coordinator/test_util.h"
#include "scheduler/coordinator/validation.h"

namespace tokenrail {
namespace coordinator {
namespace {

using testing::Context;
using testing::Spec;
using testing::TestCoordinator;

#define EXPECT_GRPC(status_expr, code, substring)                                   \
  do {                                                                              \
    const grpc::Status tr_s_ = (status_expr);                                       \
    EXPECT_EQ(tr_s_.error_code(), grpc::StatusCode::code) << tr_s_.error_message(); \
    EXPECT_TRUE(absl::StrContains(tr_s_.error_message(), substring))                \
        << "message: " << tr_s_.error_message() << "\nwanted: " << (substring);     \
  } while (0)

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tc_.CreateJob(Spec(2, 2), "job").ok());
    auto d = tc_.Join("job", 0, 2);
    ASSERT_TRUE(d.ok()) << d.status();
    member_ = std::move(*d);
  }

  grpc::Status CreateJob(const v1::JobSpec& spec, const std::string& id = "") {
    v1::CreateJobRequest r;
    *r.mutable_spec() = spec;
    r.set_job_id(id);
    v1::Job out;
    return tc_.jobs().CreateJob(Context().get(), r, &out);
  }
  grpc::Status Join(const v1::JoinRequest& r) {
    v1::JoinResponse out;
    return tc_.coordinator().Join(Context().get(), r, &out);
  }
  v1::JoinRequest GoodJoin(int node = 1) {
    v1::JoinRequest r;
    r.set_job_id("job");
    r.set_node_id(node);
    r.set_local_ranks(2);
    r.set_hostname("h");
    return r;
  }
  grpc::Status Barrier(v1::BarrierRequest r, absl::Duration timeout = absl::Seconds(5)) {
    v1::BarrierResponse out;
    return tc_.coordinator().Barrier(Context(timeout).get(), r, &out);
  }
  v1::BarrierRequest GoodBarrier() {
    v1::BarrierRequest r;
    r.set_job_id("job");
    r.set_session_id(member_->session_id());
    r.set_name("b");
    r.set_participant(0);
    r.set_participants(2);
    return r;
  }
  grpc::Status Report(v1::ReportFailureRequest r) {
    v1::ReportFailureResponse out;
    return tc_.coordinator().ReportFailure(Context().get(), r, &out);
  }
  v1::ReportFailureRequest GoodReport() {
    v1::ReportFailureRequest r;
    r.set_job_id("job");
    r.set_session_id(member_->session_id());
    r.mutable_failure()->set_node_id(1);
    r.mutable_failure()->set_global_rank(2);
    r.mutable_failure()->set_reason("x");
    return r;
  }
  grpc::Status Leave(v1::LeaveRequest r) {
    v1::LeaveResponse out;
    return tc_.coordinator().Leave(Context().get(), r, &out);
  }
  // Opens a heartbeat stream, sends `beat`, returns the stream's final status.
  grpc::Status HeartbeatOnce(const v1::HeartbeatRequest& beat) {
    auto ctx = Context();
    auto stream = tc_.coordinator().Heartbeat(ctx.get());
    stream->Write(beat);
    v1::HeartbeatResponse r;
    while (stream->Read(&r)) {
    }
    return stream->Finish();
  }

  TestCoordinator tc_;
  std::unique_ptr<MemberClient> member_;
};

TEST_F(BadInputTest, CreateJobRules) {
  auto spec = [](auto mutate) {
    v1::JobSpec s = Spec(2, 2);
    mutate(&s);
    return s;
  };
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_nodes(0); })), INVALID_ARGUMENT,
              "spec.nodes=0 must be in 1..4096");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_nodes(-3); })), INVALID_ARGUMENT,
              "spec.nodes=-3");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_ranks_per_node(0); })), INVALID_ARGUMENT,
              "spec.ranks_per_node=0 must be in 1..255");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_ranks_per_node(256); })), INVALID_ARGUMENT,
              "spec.ranks_per_node=256");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_experts(0); })), INVALID_ARGUMENT,
              "spec.experts=0 must be in 1..");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_experts(10); })), INVALID_ARGUMENT,
              "spec.experts=10 is not divisible by the world size 4 (spec.nodes=2 x "
              "spec.ranks_per_node=2)");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_top_k(0); })), INVALID_ARGUMENT,
              "spec.top_k=0 must be in 1..16");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) {
                s->set_experts(64);
                s->set_top_k(17);
              })),
              INVALID_ARGUMENT, "spec.top_k=17 must be in 1..16");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) {
                s->set_experts(4);
                s->set_top_k(8);
              })),
              INVALID_ARGUMENT, "spec.top_k=8 exceeds spec.experts=4");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_max_nodes_per_token(0); })),
              INVALID_ARGUMENT, "spec.max_nodes_per_token=0 must be in 1..spec.nodes=2");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_max_nodes_per_token(3); })),
              INVALID_ARGUMENT, "spec.max_nodes_per_token=3");
  // 8 experts on 2 nodes = 4 per node; top-6 within 1 node is impossible.
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) {
                s->set_experts(8);
                s->set_top_k(6);
                s->set_max_nodes_per_token(1);
              })),
              INVALID_ARGUMENT,
              "spec.top_k=6 experts are not reachable within spec.max_nodes_per_token=1 node(s) "
              "of 4 experts each (at most 4)");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->set_name(std::string(129, 'n')); })),
              INVALID_ARGUMENT, "spec.name is 129 bytes; the limit is 128");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) { s->mutable_pipeline()->set_stages(2); })),
              INVALID_ARGUMENT, "need a pipeline kind");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) {
                s->mutable_pipeline()->set_kind(v1::PipelineSpec::DUALPIPE);
                s->mutable_pipeline()->set_stages(3);
                s->mutable_pipeline()->set_micro_batches(8);
              })),
              INVALID_ARGUMENT, "spec.pipeline.stages=3 does not divide the world size 4");
  EXPECT_GRPC(CreateJob(spec([](v1::JobSpec* s) {
                s->mutable_pipeline()->set_kind(v1::PipelineSpec::ONE_F_ONE_B);
                s->mutable_pipeline()->set_stages(2);
              })),
              INVALID_ARGUMENT, "spec.pipeline.micro_batches=0 must be in 1..");
  EXPECT_GRPC(CreateJob(Spec(1, 1), "Bad_Id"), INVALID_ARGUMENT,
              "job_id='Bad_Id' may only contain a-z, 0-9 and '-'");
  EXPECT_GRPC(CreateJob(Spec(1, 1), std::string(65, 'a')), INVALID_ARGUMENT,
              "job_id is 65 bytes; the limit is 64");
  EXPECT_GRPC(CreateJob(Spec(1, 1), "job"), ALREADY_EXISTS, "job_id='job' is taken");
  EXPECT_TRUE(CreateJob(spec([](v1::JobSpec* s) {
                s->mutable_pipeline()->set_kind(v1::PipelineSpec::DUALPIPE_V);
                s->mutable_pipeline()->set_stages(4);
                s->mutable_pipeline()->set_micro_batches(8);
              })).ok());
}

TEST_F(BadInputTest, GetJobGetStatsCancelJobWatchJob) {
  v1::GetJobRequest get;
  v1::Job job;
  EXPECT_GRPC(tc_.jobs().GetJob(Context().get(), get, &job), INVALID_ARGUMENT,
              "job_id is required");
  get.set_job_id("nope");
  EXPECT_GRPC(tc_.jobs().GetJob(Context().get(), get, &job), NOT_FOUND, "job 'nope' not found");
  get.set_job_id("UPPER");
  EXPECT_GRPC(tc_.jobs().GetJob(Context().get(), get, &job), INVALID_ARGUMENT, "job_id='UPPER'");

  v1::GetStatsRequest stats;
  stats.set_job_id("nope");
  v1::JobStats js;
  EXPECT_GRPC(tc_.jobs().GetStats(Context().get(), stats, &js), NOT_FOUND, "job 'nope' not found");

  v1::CancelJobRequest cancel;
  cancel.set_job_id("nope");
  EXPECT_GRPC(tc_.jobs().CancelJob(Context().get(), cancel, &job), NOT_FOUND,
              "job 'nope' not found");
  cancel.set_job_id("job");
  cancel.set_reason(std::string(kMaxReasonBytes + 1, 'r'));
  EXPECT_GRPC(tc_.jobs().CancelJob(Context().get(), cancel, &job), INVALID_ARGUMENT,
              "reason is 4097 bytes; the limit is 4096");

  for (auto [id, from, code, text] :
       std::vector<std::tuple<std::string, int64_t, grpc::StatusCode, std::string>>{
           {"nope", 0, grpc::StatusCode::NOT_FOUND, "job 'nope' not found"},
           {"job", -1, grpc::StatusCode::INVALID_ARGUMENT, "from_sequence=-1 must be >= 0"},
           {"", 0, grpc::StatusCode::INVALID_ARGUMENT, "job_id is required"}}) {
    v1::WatchJobRequest watch;
    watch.set_job_id(id);
    watch.set_from_sequence(from);
    auto ctx = Context();
    auto reader = tc_.jobs().WatchJob(ctx.get(), watch);
    v1::JobEvent e;
    EXPECT_FALSE(reader->Read(&e));
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), text)) << s.error_message();
  }
}

TEST_F(BadInputTest, JoinRules) {
  v1::JoinRequest r = GoodJoin();
  r.set_job_id("nope");
  EXPECT_GRPC(Join(r), NOT_FOUND, "job 'nope' not found");
  r = GoodJoin();
  r.set_job_id("");
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "job_id is required");
  r = GoodJoin(2);
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT,
              "node_id=2 is out of range for job job with 2 nodes (0..1)");
  r = GoodJoin(-1);
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "node_id=-1 is out of range");
  r = GoodJoin();
  r.set_local_ranks(3);
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "local_ranks=3 does not match job job's ranks_per_node=2");
  r.set_local_ranks(0);
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "local_ranks=0 must be >= 1");
  r = GoodJoin(0);
  EXPECT_GRPC(Join(r), ALREADY_EXISTS, "node 0 (host0) is already a live member of job job");
  r = GoodJoin();
  r.set_hostname(std::string(256, 'h'));
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "hostname is 256 bytes; the limit is 255");
  r = GoodJoin();
  for (int i = 0; i < kMaxEndpoints + 1; ++i) {
    auto* e = r.add_endpoints();
    e->set_backend("ucx");
    e->set_address("a");
  }
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "endpoints has 17 entries; the limit is 16");
  r = GoodJoin();
  r.add_endpoints()->set_address("a");
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "endpoints[0].backend is empty");
  r = GoodJoin();
  r.add_endpoints()->set_backend("ucx");
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "endpoints[0].address is empty");
  r = GoodJoin();
  auto* big = r.add_endpoints();
  big->set_backend("ucx");
  big->set_address(std::string(kMaxBlobBytes + 1, 'a'));
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "endpoints[0].address is 65537 bytes; the limit is 65536");
  r = GoodJoin();
  auto* key = r.add_memory_keys();
  key->set_name("arena");
  key->set_backend("ucx");
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "memory_keys[0].key is empty");
  key->set_key("k");
  key->set_name("");
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "memory_keys[0].name is empty");
  r = GoodJoin();
  r.set_node_service_address("no-port");
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT,
              "node_service_address: address 'no-port' is not HOST:PORT");
  r.set_node_service_address("127.0.0.1:0");
  EXPECT_GRPC(Join(r), INVALID_ARGUMENT, "has port 0");
  // Over the server's 4 MiB request limit: refused before any handler.
  r = GoodJoin();
  auto* huge = r.add_memory_keys();
  huge->set_name("arena");
  huge->set_backend("ucx");
  huge->set_key(std::string(5 << 20, 'k'));
  EXPECT_GRPC(Join(r), RESOURCE_EXHAUSTED, "");
  // An ended job takes no members.
  v1::CancelJobRequest cancel;
  cancel.set_job_id("job");
  v1::Job job;
  ASSERT_TRUE(tc_.jobs().CancelJob(Context().get(), cancel, &job).ok());
  EXPECT_GRPC(Join(GoodJoin()), FAILED_PRECONDITION, "job job has ended (CANCELLED)");
}

TEST_F(BadInputTest, HeartbeatRules) {
  v1::HeartbeatRequest beat;
  beat.set_job_id("nope");
  beat.set_session_id("s");
  EXPECT_GRPC(HeartbeatOnce(beat), NOT_FOUND, "job 'nope' not found");
  beat.set_job_id("job");
  beat.set_session_id("");
  EXPECT_GRPC(HeartbeatOnce(beat), INVALID_ARGUMENT, "session_id is required");
  beat.set_session_id("not-a-session");
  EXPECT_GRPC(HeartbeatOnce(beat), NOT_FOUND, "session 'not-a-session' is not a member of job job");
  // The member already streams (once its first beat arrived): a second stream
  // for its session is refused.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (tc_.GetJob("job")->nodes(0).last_heartbeat_unix_ms() == 0 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  beat.set_session_id(member_->session_id());
  EXPECT_GRPC(HeartbeatOnce(beat), ALREADY_EXISTS, "already has a heartbeat stream");
  // Node 1: a beat with impossible stats ends its stream and its membership.
  auto d1 = tc_.Join("job", 1, 2);
  ASSERT_TRUE(d1.ok());
  v1::HeartbeatRequest bad;
  bad.set_job_id("job");
  bad.set_session_id((*d1)->session_id());
  for (int i = 0; i < 3; ++i) bad.mutable_stats()->add_ranks();
  (*d1)->BreakStream();  // free the session's stream slot first
  EXPECT_TRUE(tc_.WaitForState("job", v1::JOB_FAILED).ok());
  EXPECT_GRPC(HeartbeatOnce(bad), INVALID_ARGUMENT,
              "stats.ranks has 3 entries; the node has 2 ranks");
}

TEST_F(BadInputTest, GetTopologyRules) {
  v1::GetTopologyRequest r;
  v1::Topology t;
  EXPECT_GRPC(tc_.coordinator().GetTopology(Context().get(), r, &t), INVALID_ARGUMENT,
              "job_id is required");
  r.set_job_id("nope");
  EXPECT_GRPC(tc_.coordinator().GetTopology(Context().get(), r, &t), NOT_FOUND,
              "job 'nope' not found");
  r.set_job_id("job");
  ASSERT_TRUE(tc_.coordinator().GetTopology(Context().get(), r, &t).ok());
  EXPECT_EQ(t.nodes_size(), 1);  // partial without wait_for_all
  EXPECT_EQ(t.state(), v1::JOB_PENDING);
  r.set_wait_for_all(true);
  EXPECT_EQ(
      tc_.coordinator().GetTopology(Context(absl::Milliseconds(100)).get(), r, &t).error_code(),
      grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(BadInputTest, BarrierRules) {
  v1::BarrierRequest r = GoodBarrier();
  r.set_job_id("nope");
  EXPECT_GRPC(Barrier(r), NOT_FOUND, "job 'nope' not found");
  r = GoodBarrier();
  r.set_session_id("bogus");
  EXPECT_GRPC(Barrier(r), NOT_FOUND, "session 'bogus' is not a member of job job");
  r.set_session_id("");
  EXPECT_GRPC(Barrier(r), INVALID_ARGUMENT, "session_id is required");
  r = GoodBarrier();
  r.set_participant(2);
  EXPECT_GRPC(Barrier(r), INVALID_ARGUMENT,
              "participant=2 is out of range for participants=2 (0..1)");
  r.set_participant(-1);
  EXPECT_GRPC(Barrier(r), INVALID_ARGUMENT, "participant=-1 is out of range");
  r = GoodBarrier();
  r.set_participants(0);
  EXPECT_GRPC(Barrier(r), INVALID_ARGUMENT, "participants=0 must be in 1..65536");
  r = GoodBarrier();
  r.set_name("");
  EXPECT_GRPC(Barrier(r), INVALID_ARGUMENT, "barrier name is empty");
  r.set_name(std::string(257, 'n'));
  EXPECT_GRPC(Barrier(r), INVALID_ARGUMENT, "barrier name is 257 bytes; the limit is 256");
  r = GoodBarrier();
  r.set_payload(std::string(kMaxBarrierPayloadBytes + 1, 'p'));
  EXPECT_GRPC(Barrier(r), INVALID_ARGUMENT, "payload is 1048577 bytes; the limit is 1048576");
  // Count mismatch and duplicate participant, against a waiting participant 0.
  grpc::Status first;
  std::thread t([&] { first = Barrier(GoodBarrier(), absl::Milliseconds(800)); });
  absl::SleepFor(absl::Milliseconds(100));
  r = GoodBarrier();
  r.set_participant(1);
  r.set_participants(3);
  EXPECT_GRPC(Barrier(r), INVALID_ARGUMENT,
              "barrier 'b' round 0 has participants=2; this call says participants=3");
  EXPECT_GRPC(Barrier(GoodBarrier()), ALREADY_EXISTS,
              "participant 0 already entered barrier 'b' round 0");
  t.join();
  EXPECT_EQ(first.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(BadInputTest, ReportFailureRules) {
  v1::ReportFailureRequest r = GoodReport();
  r.clear_failure();
  EXPECT_GRPC(Report(r), INVALID_ARGUMENT, "failure is required");
  r = GoodReport();
  r.set_job_id("nope");
  EXPECT_GRPC(Report(r), NOT_FOUND, "job 'nope' not found");
  r = GoodReport();
  r.set_session_id("bogus");
  EXPECT_GRPC(Report(r), NOT_FOUND, "session 'bogus' is not a member of job job");
  r = GoodReport();
  r.mutable_failure()->set_node_id(2);
  EXPECT_GRPC(Report(r), INVALID_ARGUMENT, "failure.node_id=2 must be in -1..1");
  r = GoodReport();
  r.mutable_failure()->set_global_rank(4);
  EXPECT_GRPC(Report(r), INVALID_ARGUMENT, "failure.global_rank=4 must be in -1..3");
  r = GoodReport();
  r.mutable_failure()->set_global_rank(0);
  EXPECT_GRPC(Report(r), INVALID_ARGUMENT,
              "failure.global_rank=0 is not on failure.node_id=1 (node 1 holds ranks 2..3)");
  r = GoodReport();
  r.mutable_failure()->set_reason("");
  EXPECT_GRPC(Report(r), INVALID_ARGUMENT, "failure.reason is empty");
  EXPECT_EQ(tc_.GetJob("job")->state(), v1::JOB_PENDING);  // nothing above failed the job
}

TEST_F(BadInputTest, LeaveRules) {
  v1::LeaveRequest r;
  r.set_job_id("job");
  r.set_session_id("bogus");
  EXPECT_GRPC(Leave(r), NOT_FOUND, "session 'bogus' is not a member of job job");
  r.set_job_id("nope");
  EXPECT_GRPC(Leave(r), NOT_FOUND, "job 'nope' not found");
  r.set_job_id("job");
  r.set_session_id(member_->session_id());
  r.set_reason(std::string(kMaxReasonBytes + 1, 'r'));
  EXPECT_GRPC(Leave(r), INVALID_ARGUMENT, "reason is 4097 bytes");
  // A member declared dead cannot leave.
  member_->BreakStream();
  ASSERT_TRUE(tc_.WaitForState("job", v1::JOB_FAILED).ok());
  r.set_reason("");
  r.set_clean(true);
  EXPECT_GRPC(Leave(r), FAILED_PRECONDITION, "node 0 (host0) was declared dead in job job");
}

// Every RPC of both services refuses a missing or wrong token.
TEST_F(BadInputTest, EveryRpcNeedsTheToken) {
  for (const std::string& token : {std::string(), std::string("wrong-token")}) {
    auto channel = tc_.Channel(token);
    auto jobs = v1::JobService::NewStub(channel);
    auto coord = v1::Coordinator::NewStub(channel);
    const char* want = token.empty() ? "missing" : "invalid bearer token";
    std::vector<std::pair<std::string, std::function<grpc::Status()>>> calls = {
        {"CreateJob",
         [&] {
           v1::CreateJobRequest r;
           *r.mutable_spec() = Spec(1, 1);
           v1::Job o;
           return jobs->CreateJob(Context().get(), r, &o);
         }},
        {"GetJob",
         [&] {
           v1::GetJobRequest r;
           r.set_job_id("job");
           v1::Job o;
           return jobs->GetJob(Context().get(), r, &o);
         }},
        {"ListJobs",
         [&] {
           v1::ListJobsResponse o;
           return jobs->ListJobs(Context().get(), v1::ListJobsRequest(), &o);
         }},
        {"WatchJob",
         [&] {
           v1::WatchJobRequest r;
           r.set_job_id("job");
           auto ctx = Context();
           auto reader = jobs->WatchJob(ctx.get(), r);
           v1::JobEvent e;
           while (reader->Read(&e)) {
           }
           return reader->Finish();
         }},
        {"CancelJob",
         [&] {
           v1::CancelJobRequest r;
           r.set_job_id("job");
           v1::Job o;
           return jobs->CancelJob(Context().get(), r, &o);
         }},
        {"GetStats",
         [&] {
           v1::GetStatsRequest r;
           r.set_job_id("job");
           v1::JobStats o;
           return jobs->GetStats(Context().get(), r, &o);
         }},
        {"Join",
         [&] {
           v1::JoinResponse o;
           return coord->Join(Context().get(), GoodJoin(), &o);
         }},
        {"Heartbeat",
         [&] {
           auto ctx = Context();
           auto stream = coord->Heartbeat(ctx.get());
           v1::HeartbeatRequest beat;
           beat.set_job_id("job");
           beat.set_session_id(member_->session_id());
           stream->Write(beat);
           stream->WritesDone();
           v1::HeartbeatResponse r;
           while (stream->Read(&r)) {
           }
           return stream->Finish();
         }},
        {"GetTopology",
         [&] {
           v1::GetTopologyRequest r;
           r.set_job_id("job");
           v1::Topology o;
           return coord->GetTopology(Context().get(), r, &o);
         }},
        {"Barrier",
         [&] {
           v1::BarrierResponse o;
           return coord->Barrier(Context().get(), GoodBarrier(), &o);
         }},
        {"ReportFailure",
         [&] {
           v1::ReportFailureResponse o;
           return coord->ReportFailure(Context().get(), GoodReport(), &o);
         }},
        {"Leave",
         [&] {
           v1::LeaveRequest r;
           r.set_job_id("job");
           r.set_session_id(member_->session_id());
           r.set_clean(false);
           v1::LeaveResponse o;
           return coord->Leave(Context().get(), r, &o);
         }},
    };
    for (auto& [name, call] : calls) {
      SCOPED_TRACE(name + (token.empty() ? " without token" : " with a wrong token"));
      EXPECT_GRPC(call(), UNAUTHENTICATED, want);
    }
  }
  // Nothing got through: the job is untouched and still has one member.
  absl::StatusOr<v1::Job> job = tc_.GetJob("job");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_PENDING);
  EXPECT_EQ(job->nodes_size(), 1);
  v1::ListJobsResponse list;
  ASSERT_TRUE(tc_.jobs().ListJobs(Context().get(), v1::ListJobsRequest(), &list).ok());
  EXPECT_EQ(list.jobs_size(), 1);
}

}  // namespace
}  // namespace coordinator
}  // namespace tokenrail
