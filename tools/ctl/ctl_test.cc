// tokenrailctl against a real in-process coordinator (token auth), simulated
// daemons, and a small in-process NodeService for drain; plus the binary's
// flag handling and exit codes.
#include "tools/ctl/ctl.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc/server.h"
#include "gtest/gtest.h"
#include "proto/tokenrail/v1/node.grpc.pb.h"
#include "scheduler/coordinator/member_client.h"
#include "scheduler/coordinator/test_util.h"

namespace tokenrail {
namespace ctl {
namespace {

using coordinator::MemberClient;
using coordinator::MemberOptions;
using coordinator::testing::kTestToken;
using coordinator::testing::Spec;
using coordinator::testing::TestCoordinator;

// The node daemon's NodeService, reduced to what drain needs: it records the
// requests it gets.
class RecordingNode final : public v1::NodeService::Service {
 public:
  grpc::Status Drain(grpc::ServerContext*, const v1::DrainRequest* request,
                     v1::DrainResponse* response) override {
    absl::MutexLock lock(&mu_);
    requests_.push_back(*request);
    response->set_in_flight(3);
    return grpc::Status::OK;
  }
  std::vector<v1::DrainRequest> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::DrainRequest> requests_ ABSL_GUARDED_BY(mu_);
};

// No ctl test waits for a heartbeat timeout: keep it far away so a loaded
// machine never turns a slow member into a dead one.
coordinator::CoordinatorOptions QuietOptions() {
  coordinator::CoordinatorOptions o = coordinator::testing::FastOptions();
  o.heartbeat_timeout = absl::Seconds(30);
  return o;
}

struct Result {
  int code;
  std::string out;
  std::string err;
};

class CtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rpc::ServerOptions node_options;
    node_options.auth_token = kTestToken;
    auto server = rpc::Server::Start(node_options, {&node_});
    ASSERT_TRUE(server.ok()) << server.status();
    node_server_ = std::move(*server);

    ASSERT_TRUE(tc_.CreateJob(Spec(2, 2), "demo").ok());
    for (int n = 0; n < 2; ++n) daemons_.push_back(Join("demo", n));
    ASSERT_TRUE(tc_.WaitForState("demo", v1::JOB_RUNNING).ok());
  }

  std::unique_ptr<MemberClient> Join(const std::string& job, int node) {
    MemberOptions o;
    o.job_id = job;
    o.node_id = node;
    o.hostname = absl::StrCat("host", node);
    o.local_ranks = 2;
    v1::TransportEndpoint e;
    e.set_backend("ucx");
    e.set_address(std::string(40, 'a'));
    o.endpoints.push_back(e);
    v1::MemoryKey k;
    k.set_name("arena");
    k.set_backend("ucx");
    k.set_key("key");
    k.set_size(256 << 20);
    o.memory_keys.push_back(k);
    o.node_service_address = node_server_->address();
    o.coordinator_address = tc_.address();
    auto m = MemberClient::Join(tc_.Channel(), o);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? std::move(*m) : nullptr;
  }

  CtlOptions Options() {
    CtlOptions o;
    o.coordinator = tc_.address();
    o.client.auth_token = kTestToken;
    o.timeout = absl::Seconds(5);
    return o;
  }

  Result Run(std::vector<std::string> args, const CtlOptions& options) {
    std::ostringstream out, err;
    const int code = RunCtl(args, options, out, err);
    return {code, out.str(), err.str()};
  }
  Result Run(std::vector<std::string> args) { return Run(std::move(args), Options()); }

  TestCoordinator tc_{QuietOptions()};
  RecordingNode node_;
  std::unique_ptr<rpc::Server> node_server_;
  std::vector<std::unique_ptr<MemberClient>> daemons_;
};

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

TEST_F(CtlTest, Status) {
  Result r = Run({"status"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("coordinator ", tc_.address(),
                                ": SERVING\njobs: 1 (0 PENDING, 1 RUNNING, 0 SUCCEEDED, 0 FAILED, "
                                "0 CANCELLED)\n"));
  CtlOptions json = Options();
  json.json = true;
  r = Run({"status"}, json);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("{\"coordinator\":\"", tc_.address(),
                                "\",\"health\":\"SERVING\",\"jobs\":1,\"pending\":0,\"running\":1,"
                                "\"succeeded\":0,\"failed\":0,\"cancelled\":0}\n"));
}

TEST_F(CtlTest, Jobs) {
  ASSERT_TRUE(tc_.CreateJob(Spec(1, 1), "second").ok());
  Result r = Run({"jobs"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[0], "JOB ")) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[0], "FAILURE"));
  EXPECT_TRUE(absl::StartsWith(lines[1], "demo ")) << lines[1];
  EXPECT_TRUE(absl::StrContains(lines[1], "RUNNING  2/2    4  ")) << lines[1];
  EXPECT_TRUE(absl::StrContains(lines[2], "PENDING  0/1")) << lines[2];

  CtlOptions json = Options();
  json.json = true;
  r = Run({"jobs"}, json);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(absl::StartsWith(lines[0], "{\"job_id\":\"demo\"")) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[0], "\"state\":\"JOB_RUNNING\"")) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[1], "\"job_id\":\"second\"")) << lines[1];
}

TEST_F(CtlTest, Topology) {
  Result r = Run({"topology", "demo"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0], "job demo: RUNNING, 2 nodes x 2 ranks = world 4 (2/2 joined)");
  EXPECT_TRUE(absl::StartsWith(lines[1], "NODE  HOST   RANKS  FIRST-RANK  NODE-SERVICE"))
      << lines[1];
  EXPECT_TRUE(absl::StartsWith(lines[3], "1     host1  2      2           ")) << lines[3];
  EXPECT_TRUE(absl::StrContains(lines[3], node_server_->address())) << lines[3];
  EXPECT_TRUE(absl::StrContains(lines[3], "ucx (40 B address)")) << lines[3];
  EXPECT_TRUE(absl::StrContains(lines[3], "arena ucx 256M")) << lines[3];

  CtlOptions json = Options();
  json.json = true;
  r = Run({"topology", "demo"}, json);
  ASSERT_EQ(r.code, kExitOk);
  ASSERT_EQ(Lines(r.out).size(), 1u);
  EXPECT_TRUE(absl::StrContains(r.out, "\"world_size\":4")) << r.out;

  r = Run({"topology", "nope"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, absl::StrCat("tokenrailctl: coordinator at ", tc_.address(),
                                ": job 'nope' not found\n"));
}

TEST_F(CtlTest, Stats) {
  v1::NodeStats s;
  s.set_intra_node_puts(11);
  s.set_intra_node_bytes(3 << 20);
  s.set_inter_node_bytes(1536);
  v1::RankStats* rank = s.add_ranks();
  rank->set_global_rank(2);
  rank->set_puts(5);
  rank->add_tokens_per_expert(7);
  rank->add_tokens_per_expert(9);
  daemons_[1]->SetStats(s, 1);
  Result r;
  const absl::Time until = absl::Now() + absl::Seconds(5);
  do {
    r = Run({"stats", "demo"});
  } while (!absl::StrContains(r.out, "11") && absl::Now() < until &&
           (absl::SleepFor(absl::Milliseconds(10)), true));
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_GE(lines.size(), 5u) << r.out;
  EXPECT_EQ(lines[0], "job demo: 3M intra-node, 1.5K inter-node");
  EXPECT_TRUE(absl::StartsWith(lines[2], "1     11  ")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "7,9")) << r.out;

  CtlOptions json = Options();
  json.json = true;
  r = Run({"stats", "demo"}, json);
  ASSERT_EQ(r.code, kExitOk);
  EXPECT_TRUE(absl::StrContains(r.out, "\"intra_node_bytes\":\"3145728\"")) << r.out;
}

TEST_F(CtlTest, WatchPrintsHistoryAndEndsWithTheJob) {
  v1::CancelJobRequest cancel;
  cancel.set_job_id("demo");
  cancel.set_reason("test over");
  v1::Job job;
  grpc::ClientContext ctx;
  ASSERT_TRUE(tc_.jobs().CancelJob(&ctx, cancel, &job).ok());
  Result r = Run({"watch", "demo"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[0], "#0  ")) << lines[0];
  EXPECT_TRUE(absl::EndsWith(lines[0], "  state PENDING")) << lines[0];
  EXPECT_TRUE(absl::EndsWith(lines[1], "  node 0 (host0) JOINED")) << lines[1];
  EXPECT_TRUE(absl::EndsWith(lines[3], "  state RUNNING")) << lines[3];
  EXPECT_TRUE(absl::EndsWith(lines[4], "  state CANCELLED")) << lines[4];

  CtlOptions json = Options();
  json.json = true;
  json.from_sequence = 3;
  r = Run({"watch", "demo"}, json);
  ASSERT_EQ(r.code, kExitOk);
  lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(absl::StrContains(lines[0], "\"sequence\":\"3\"")) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[1], "\"state_changed\":\"JOB_CANCELLED\"")) << lines[1];
}

TEST_F(CtlTest, WatchShowsAFailureLive) {
  daemons_[0]->BreakStream();
  Result r = Run({"watch", "demo"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "node 0 (host0) DEAD")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "FAILURE node 0: heartbeat stream ended")) << r.out;
  EXPECT_TRUE(absl::EndsWith(r.out, "state FAILED\n")) << r.out;
}

TEST_F(CtlTest, DrainFindsTheNodeServiceThroughTheCoordinator) {
  Result r = Run({"drain", "1"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("drain requested: node 1 (host1) of job demo at ",
                                node_server_->address(), "; 3 proxy commands were in flight\n"));
  std::vector<v1::DrainRequest> got = node_.requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].reason(), "tokenrailctl drain");
  EXPECT_EQ(got[0].timeout_ms(), 10000);

  // Node 1 is in two active jobs now: ambiguous without --job.
  ASSERT_TRUE(tc_.CreateJob(Spec(2, 2), "other").ok());
  auto other = Join("other", 1);
  r = Run({"drain", "1"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, "tokenrailctl: node 1 is in several jobs (demo, other): pass --job=JOB\n");
  CtlOptions with_job = Options();
  with_job.job = "other";
  with_job.json = true;
  with_job.drain_timeout_ms = 2500;
  r = Run({"drain", "1"}, with_job);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("{\"job_id\":\"other\",\"node_id\":1,\"node_service_address\":\"",
                                node_server_->address(), "\",\"in_flight\":3}\n"));
  EXPECT_EQ(node_.requests().back().timeout_ms(), 2500);

  r = Run({"drain", "7"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, "tokenrailctl: no active job has a live node 7\n");
}

TEST_F(CtlTest, DrainRefusesADeadNode) {
  daemons_[0]->BreakStream();
  ASSERT_TRUE(tc_.WaitForState("demo", v1::JOB_FAILED).ok());
  CtlOptions o = Options();
  o.job = "demo";
  Result r = Run({"drain", "0"}, o);
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, "tokenrailctl: node 0 of job demo is DEAD; only a live node can drain\n");
}

TEST_F(CtlTest, UnreachableAndUnauthenticated) {
  CtlOptions o = Options();
  o.coordinator = "127.0.0.1:1";
  Result r = Run({"jobs"}, o);
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_TRUE(absl::StartsWith(r.err, "tokenrailctl: cannot reach coordinator at 127.0.0.1:1: "))
      << r.err;
  EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
  r = Run({"status"}, o);
  EXPECT_TRUE(absl::StartsWith(r.err, "tokenrailctl: cannot reach coordinator at 127.0.0.1:1: "))
      << r.err;

  o = Options();
  o.client.auth_token = "not-the-token";
  r = Run({"jobs"}, o);
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_TRUE(absl::StartsWith(r.err, "tokenrailctl: coordinator refused the token: ")) << r.err;
  // Health needs no token, so status gets as far as listing jobs.
  r = Run({"status"}, o);
  EXPECT_TRUE(absl::StartsWith(r.err, "tokenrailctl: coordinator refused the token: ")) << r.err;
  o.client.auth_token.clear();
  r = Run({"topology", "demo"}, o);
  EXPECT_TRUE(absl::StrContains(r.err, "refused the token: ")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "missing")) << r.err;
}

TEST_F(CtlTest, UsageErrorsExitTwo) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {}, {"bogus"}, {"topology"}, {"jobs", "extra"}, {"drain", "x"}, {"drain", "-1"}}) {
    Result r = Run(args);
    EXPECT_EQ(r.code, kExitUsage) << absl::StrJoin(args, " ") << ": " << r.err;
    EXPECT_TRUE(absl::StartsWith(r.err, "tokenrailctl: ")) << r.err;
  }
  CtlOptions o = Options();
  o.coordinator.clear();
  EXPECT_EQ(Run({"jobs"}, o).code, kExitUsage);
  o.coordinator = "nohostport";
  EXPECT_EQ(Run({"jobs"}, o).code, kExitUsage);
  EXPECT_EQ(Run({"drain", "x"}).err,
            "tokenrailctl: drain: NODE must be a node id (0, 1, ...), not 'x'\nrun 'tokenrailctl "
            "--help' for usage\n");
}

// The binary: flags, token file handling, exit codes.
class CtlBinaryTest : public CtlTest {
 protected:
  static std::string Binary() {
    const char* srcdir = std::getenv("TEST_SRCDIR");
    return std::string(srcdir != nullptr ? srcdir : ".") + "/tokenrail/tools/ctl/tokenrailctl";
  }
  static std::string TokenFile(mode_t mode) {
    const std::string path =
        absl::StrCat(std::getenv("TEST_TMPDIR"), "/token_", static_cast<int>(mode));
    std::ofstream(path) << kTestToken << "\n";
    ::chmod(path.c_str(), mode);
    return path;
  }
  Result Exec(const std::string& flags) {
    const std::string err_path = absl::StrCat(std::getenv("TEST_TMPDIR"), "/stderr");
    const std::string cmd = absl::StrCat(Binary(), " ", flags, " 2>", err_path);
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    const int status = ::pclose(p);
    std::ifstream e(err_path);
    std::string err((std::istreambuf_iterator<char>(e)), std::istreambuf_iterator<char>());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, err};
  }
};

TEST_F(CtlBinaryTest, RunsCommandsWithTokenFile) {
  Result r = Exec(absl::StrCat("--coordinator=", tc_.address(),
                               " --auth_token_file=", TokenFile(0600), " --json jobs"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "{\"job_id\":\"demo\"")) << r.out;

  r = Exec(absl::StrCat("--coordinator=", tc_.address(), " --auth_token_file=", TokenFile(0644),
                        " jobs"));
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "readable by other users")) << r.err;

  r = Exec(absl::StrCat("--coordinator=", tc_.address(), " jobs"));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StartsWith(r.err, "tokenrailctl: coordinator refused the token: ")) << r.err;

  r = Exec("--coordinator=127.0.0.1:1 --timeout=2s status");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StartsWith(r.err, "tokenrailctl: cannot reach coordinator at 127.0.0.1:1: "))
      << r.err;

  EXPECT_EQ(Exec("status").code, 2);  // no --coordinator
  EXPECT_EQ(Exec(absl::StrCat("--coordinator=", tc_.address(), " frobnicate")).code, 2);
}

}  // namespace
}  // namespace ctl
}  // namespace tokenrail
