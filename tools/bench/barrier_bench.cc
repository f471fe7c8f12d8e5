#include "tools/bench/barrier_bench.h"

#include <time.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/rpc/auth.h"
#include "common/rpc/client.h"
#include "common/status.h"
#include "scheduler/coordinator/coordinator.h"
#include "scheduler/coordinator/member_client.h"

namespace tokenrail {
namespace bench {
namespace {

constexpr char kJob[] = "barrier-bench";
constexpr char kBarrier[] = "bench";

// Payload of `participant` in `round`: both as u32, then a byte pattern.
char PatternByte(uint32_t participant, uint32_t round, size_t i) {
  return static_cast<char>((participant * 131 + round + i) & 0xff);
}

std::string MakePayload(uint32_t participant, uint32_t round, size_t bytes) {
  std::string p(bytes, '\0');
  std::memcpy(p.data(), &participant, 4);
  std::memcpy(p.data() + 4, &round, 4);
  for (size_t i = 8; i < bytes; ++i) p[i] = PatternByte(participant, round, i);
  return p;
}

// Checks without allocating (it runs participants^2 times per round).
bool PayloadMatches(absl::string_view got, uint32_t participant, uint32_t round, size_t bytes) {
  if (got.size() != bytes) return false;
  uint32_t p, r;
  std::memcpy(&p, got.data(), 4);
  std::memcpy(&r, got.data() + 4, 4);
  if (p != participant || r != round) return false;
  for (size_t i = 8; i < bytes; ++i) {
    if (got[i] != PatternByte(participant, round, i)) return false;
  }
  return true;
}

// Lines up in-process threads (for the baseline's simultaneous starts).
// Abort() releases everyone for good (a participant failed).
class LocalBarrier {
 public:
  explicit LocalBarrier(int n) : n_(n) {}
  // False once aborted.
  bool Wait() {
    absl::MutexLock lock(&mu_);
    if (aborted_) return false;
    const int64_t generation = generation_;
    if (++count_ == n_) {
      count_ = 0;
      ++generation_;
      return true;
    }
    auto released = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return aborted_ || generation_ != generation;
    };
    mu_.Await(absl::Condition(&released));
    return !aborted_;
  }
  void Abort() {
    absl::MutexLock lock(&mu_);
    aborted_ = true;
  }

 private:
  const int n_;
  absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
};

int64_t ProcessCpuNanos() {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Per round: the last return minus the last call start, in microseconds.
std::vector<double> RoundTimes(const std::vector<std::vector<int64_t>>& start,
                               const std::vector<std::vector<int64_t>>& end, int from) {
  std::vector<double> out;
  for (size_t r = from; r < start.size(); ++r) {
    const int64_t last_arrival = *std::max_element(start[r].begin(), start[r].end());
    const int64_t last_return = *std::max_element(end[r].begin(), end[r].end());
    out.push_back((last_return - last_arrival) / 1e3);
  }
  return out;
}

}  // namespace

absl::Status BarrierBenchOptions::Validate() const {
  if (participants < 1 || participants > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("participants=", participants, " must be in 1..4096"));
  }
  if (rounds < 1)
    return absl::InvalidArgumentError(absl::StrCat("rounds=", rounds, " must be >= 1"));
  if (warmup < 0)
    return absl::InvalidArgumentError(absl::StrCat("warmup=", warmup, " must be >= 0"));
  if (payload_bytes < 8 || payload_bytes > (1u << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload_bytes=", payload_bytes, " must be in 8..1048576"));
  }
  if (static_cast<uint64_t>(payload_bytes) * participants > (64u << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload_bytes=", payload_bytes, " x participants=", participants,
                     " exceeds the coordinator's 64 MiB per barrier round"));
  }
  if (timeout <= absl::ZeroDuration())
    return absl::InvalidArgumentError("timeout must be positive");
  return absl::OkStatus();
}

absl::StatusOr<BarrierBenchResult> RunBarrierBench(const BarrierBenchOptions& options) {
  TR_RETURN_IF_ERROR(options.Validate());
  const int n = options.participants;
  const int total_rounds = options.warmup + options.rounds;

  TR_ASSIGN_OR_RETURN(std::string token, rpc::GenerateToken());
  rpc::ServerOptions server_options;
  server_options.auth_token = token;
  server_options.name = "bench-coordinator";
  coordinator::CoordinatorOptions coordinator_options;  // production heartbeat settings
  TR_ASSIGN_OR_RETURN(std::unique_ptr<coordinator::CoordinatorServer> server,
                      coordinator::CoordinatorServer::Start(coordinator_options, server_options));

  rpc::ClientOptions client_options;
  client_options.auth_token = token;
  client_options.dedicated_connection = true;  // one connection per simulated daemon
  TR_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> admin,
                      rpc::CreateChannel(server->address(), client_options));
  {
    auto jobs = v1::JobService::NewStub(admin);
    v1::CreateJobRequest request;
    request.set_job_id(kJob);
    v1::JobSpec* spec = request.mutable_spec();
    spec->set_name("tokenrail-bench barrier");
    spec->set_nodes(n);
    spec->set_ranks_per_node(1);
    spec->set_experts(n);
    spec->set_top_k(1);
    spec->set_max_nodes_per_token(1);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
    v1::Job job;
    grpc::Status s = jobs->CreateJob(&ctx, request, &job);
    if (!s.ok()) {
      return rpc::DescribeCallError(s, "coordinator", server->address(), admin.get());
    }
  }

  std::vector<std::unique_ptr<coordinator::MemberClient>> members(n);
  for (int i = 0; i < n; ++i) {
    TR_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                        rpc::CreateChannel(server->address(), client_options));
    coordinator::MemberOptions mo;
    mo.job_id = kJob;
    mo.node_id = i;
    mo.hostname = absl::StrCat("sim", i);
    mo.local_ranks = 1;
    mo.rpc_timeout = options.timeout;
    mo.coordinator_address = server->address();
    TR_ASSIGN_OR_RETURN(members[i], coordinator::MemberClient::Join(std::move(channel), mo));
  }

  // start[r][i] / end[r][i]: monotonic ns around participant i's call in round r.
  std::vector<std::vector<int64_t>> start(total_rounds, std::vector<int64_t>(n));
  std::vector<std::vector<int64_t>> end(total_rounds, std::vector<int64_t>(n));
  // The same for the baseline: n simultaneous plain unary calls per round.
  std::vector<std::vector<int64_t>> base_start(total_rounds, std::vector<int64_t>(n));
  std::vector<std::vector<int64_t>> base_end(total_rounds, std::vector<int64_t>(n));
  LocalBarrier line_up(n);
  absl::Mutex mu;
  absl::Status first_error;
  uint64_t verified = 0;
  // Process CPU time at the phase boundaries (timed barrier rounds, timed
  // baseline rounds), taken by participant 0 while everyone is lined up.
  int64_t cpu[4] = {0, 0, 0, 0};
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      uint64_t checked = 0;
      absl::Status error;
      auto line_up_all = [&](int snapshot) {
        if (!error.ok()) return false;
        if (!line_up.Wait()) {
          error = absl::AbortedError("another participant failed");
          return false;
        }
        if (i == 0) cpu[snapshot] = ProcessCpuNanos();
        return true;
      };
      for (int r = 0; r < total_rounds; ++r) {
        if (r == options.warmup && !line_up_all(0)) break;
        const std::string payload = MakePayload(i, r, options.payload_bytes);
        start[r][i] = NowNanos();
        absl::StatusOr<v1::BarrierResponse> resp =
            members[i]->Barrier(kBarrier, i, n, payload, absl::Now() + options.timeout);
        end[r][i] = NowNanos();
        if (!resp.ok()) {
          error = Annotate(resp.status(), absl::StrCat("participant ", i, " round ", r));
          break;
        }
        if (resp->payloads_size() != n || resp->round() != r) {
          error = absl::DataLossError(absl::StrCat("participant ", i, " round ", r, ": got ",
                                                   resp->payloads_size(), " payloads of round ",
                                                   resp->round()));
          break;
        }
        for (int p = 0; p < n && error.ok(); ++p) {
          if (!PayloadMatches(resp->payloads(p), p, r, options.payload_bytes)) {
            error = absl::DataLossError(absl::StrCat("round ", r, ": participant ", i,
                                                     " got a wrong payload from participant ", p));
          }
          ++checked;
        }
        if (!error.ok()) break;
      }
      line_up_all(1);
      // Baseline, same threads and connections: every participant issues a
      // trivial unary RPC (GetTopology without waiting) at the same moment.
      for (int r = 0; r < total_rounds && error.ok(); ++r) {
        if (r == options.warmup && !line_up_all(2)) break;
        if (!line_up.Wait()) {
          error = absl::AbortedError("another participant failed");
          break;
        }
        base_start[r][i] = NowNanos();
        absl::StatusOr<v1::Topology> t =
            members[i]->GetTopology(/*wait_for_all=*/false, absl::Now() + options.timeout);
        base_end[r][i] = NowNanos();
        if (!t.ok()) {
          error = Annotate(t.status(), absl::StrCat("baseline participant ", i, " round ", r));
        }
      }
      line_up_all(3);
      // Never leave the others lined up waiting for a participant that quit.
      if (!error.ok()) line_up.Abort();
      absl::MutexLock lock(&mu);
      verified += checked;
      if (!error.ok() && (first_error.ok() || absl::IsAborted(first_error))) first_error = error;
    });
  }
  for (std::thread& t : threads) t.join();
  if (!first_error.ok()) return first_error;

  for (auto& m : members) (void)m->Leave(/*clean=*/true, "benchmark done");
  server->Shutdown();

  BarrierBenchResult result;
  result.participants = n;
  result.rounds = options.rounds;
  result.payload_bytes = options.payload_bytes;
  result.payloads_verified = verified;
  std::vector<double> release, call;
  std::vector<double> round = RoundTimes(start, end, options.warmup);
  std::vector<double> baseline = RoundTimes(base_start, base_end, options.warmup);
  release.reserve(static_cast<size_t>(options.rounds) * n);
  call.reserve(static_cast<size_t>(options.rounds) * n);
  for (int r = options.warmup; r < total_rounds; ++r) {
    const int64_t last_arrival = *std::max_element(start[r].begin(), start[r].end());
    for (int i = 0; i < n; ++i) {
      release.push_back((end[r][i] - last_arrival) / 1e3);
      call.push_back((end[r][i] - start[r][i]) / 1e3);
    }
  }
  const int64_t first =
      *std::min_element(start[options.warmup].begin(), start[options.warmup].end());
  const int64_t last =
      *std::max_element(end[total_rounds - 1].begin(), end[total_rounds - 1].end());
  result.rounds_per_second = last > first ? options.rounds / ((last - first) / 1e9) : 0;
  result.release_us = Summarize(&release);
  result.round_us = Summarize(&round);
  result.call_us = Summarize(&call);
  result.baseline_round_us = Summarize(&baseline);
  result.cpu_us_per_round = (cpu[1] - cpu[0]) / 1e3 / options.rounds;
  result.baseline_cpu_us_per_round = (cpu[3] - cpu[2]) / 1e3 / options.rounds;
  return result;
}

std::vector<Record> BarrierRecords(const BarrierBenchResult& result) {
  std::vector<Record> out;
  const std::pair<const char*, const Summary*> metrics[] = {
      {"release", &result.release_us},
      {"round", &result.round_us},
      {"call", &result.call_us},
      {"unary_fanout_round", &result.baseline_round_us}};
  for (const auto& [name, s] : metrics) {
    Record r;
    r.Set("bench", "barrier")
        .Set("metric", name)
        .Set("participants", result.participants)
        .Set("rounds", result.rounds)
        .Set("payload_bytes", static_cast<uint64_t>(result.payload_bytes))
        .Set("samples", static_cast<uint64_t>(s->count))
        .Set("p50_us", s->p50)
        .Set("p99_us", s->p99)
        .Set("mean_us", s->mean)
        .Set("max_us", s->max)
        .Set("verified_payloads", result.payloads_verified);
    if (s != &result.baseline_round_us) {
      r.Set("rounds_per_s", result.rounds_per_second);
      r.Set("cpu_us_per_round", result.cpu_us_per_round);
    } else {
      r.Set("cpu_us_per_round", result.baseline_cpu_us_per_round);
    }
    if (std::string(name) == "release") {
      r.Set("target_p50_us", kBarrierTargetP50Us)
          .Set("meets_target", s->p50 <= kBarrierTargetP50Us);
    }
    out.push_back(std::move(r));
  }
  return out;
}

Table BarrierTable() {
  return Table({
      {"metric", "metric", Table::Format::kString, 18},
      {"participants", "members", Table::Format::kInt, 7},
      {"rounds", "rounds", Table::Format::kInt, 6},
      {"payload_bytes", "payload", Table::Format::kSize, 7},
      {"p50_us", "p50 us", Table::Format::kFixed2, 10},
      {"p99_us", "p99 us", Table::Format::kFixed2, 10},
      {"mean_us", "mean us", Table::Format::kFixed2, 10},
      {"max_us", "max us", Table::Format::kFixed2, 10},
      {"rounds_per_s", "rounds/s", Table::Format::kFixed2, 9},
      {"cpu_us_per_round", "cpu us/round", Table::Format::kFixed2, 12},
      {"meets_target", "p50<=5ms", Table::Format::kBool, 8},
  });
}

}  // namespace bench
}  // namespace tokenrail
