#include "tools/ctl/commands.h"

#include <grpcpp/generic/generic_stub.h>

#include <cctype>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/rpc/client.h"
#include "common/status.h"
#include "proto/tokenrail/v1/node.grpc.pb.h"
#include "tools/ctl/format.h"

namespace tokenrail {
namespace ctl {
namespace internal {
namespace {

std::string StateName(v1::JobState s) {
  // "JOB_RUNNING" -> "RUNNING"
  std::string name = v1::JobState_Name(s);
  return name.rfind("JOB_", 0) == 0 ? name.substr(4) : name;
}

std::string MemberStateName(v1::NodeMembership::State s) {
  return s == v1::NodeMembership::STATE_UNSPECIFIED ? "-" : v1::NodeMembership::State_Name(s);
}

std::string DescribeFailure(const v1::FailureInfo& f) {
  std::string where;
  if (f.global_rank() >= 0) {
    where = absl::StrCat("rank ", f.global_rank(), " on node ", f.node_id(), ": ");
  } else if (f.node_id() >= 0) {
    where = absl::StrCat("node ", f.node_id(), ": ");
  }
  return absl::StrCat(where, f.reason());
}

bool Active(v1::JobState s) { return s == v1::JOB_PENDING || s == v1::JOB_RUNNING; }

// grpc.health.v1.Health/Check for the whole server, without generated code:
// the request is empty and the response is field 1 (a varint enum).
absl::StatusOr<std::string> HealthCheck(Env& env) {
  grpc::GenericStub stub(env.channel);
  auto ctx = env.Context();
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(ctx.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) return env.CallError(status);
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  int value = 0;  // UNKNOWN when the field is absent (proto3 default)
  if (bytes.size() == 2 && bytes[0] == 0x08) value = static_cast<unsigned char>(bytes[1]);
  switch (value) {
    case 1:
      return std::string("SERVING");
    case 2:
      return std::string("NOT_SERVING");
    default:
      return std::string("UNKNOWN");
  }
}

absl::StatusOr<std::vector<v1::Job>> ListJobs(Env& env) {
  v1::ListJobsResponse response;
  grpc::Status s = env.jobs->ListJobs(env.Context().get(), v1::ListJobsRequest(), &response);
  if (!s.ok()) return env.CallError(s);
  return std::vector<v1::Job>(response.jobs().begin(), response.jobs().end());
}

int LiveMembers(const v1::Job& job) {
  int live = 0;
  for (const v1::NodeMembership& m : job.nodes()) live += m.state() == v1::NodeMembership::JOINED;
  return live;
}

}  // namespace

std::unique_ptr<grpc::ClientContext> Env::Context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  return ctx;
}

absl::Status Env::CallError(const grpc::Status& status) const {
  return rpc::DescribeCallError(status, "coordinator", options.coordinator, channel.get());
}

absl::Status Status(Env& env) {
  TR_ASSIGN_OR_RETURN(std::string health, HealthCheck(env));
  TR_ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, ListJobs(env));
  std::map<v1::JobState, int> by_state;
  for (const v1::Job& j : jobs) ++by_state[j.state()];
  const v1::JobState states[] = {v1::JOB_PENDING, v1::JOB_RUNNING, v1::JOB_SUCCEEDED,
                                 v1::JOB_FAILED, v1::JOB_CANCELLED};
  if (env.options.json) {
    std::string line = absl::StrCat("{\"coordinator\":", JsonQuoted(env.options.coordinator),
                                    ",\"health\":", JsonQuoted(health), ",\"jobs\":", jobs.size());
    for (v1::JobState s : states) {
      std::string key = StateName(s);
      for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      absl::StrAppend(&line, ",", JsonQuoted(key), ":", by_state[s]);
    }
    env.out << line << "}\n";
    return absl::OkStatus();
  }
  std::vector<std::string> counts;
  for (v1::JobState s : states) counts.push_back(absl::StrCat(by_state[s], " ", StateName(s)));
  env.out << "coordinator " << env.options.coordinator << ": " << health << "\n"
          << "jobs: " << jobs.size() << " (" << absl::StrJoin(counts, ", ") << ")\n";
  return absl::OkStatus();
}

absl::Status Jobs(Env& env) {
  TR_ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, ListJobs(env));
  if (env.options.json) {
    for (const v1::Job& j : jobs) env.out << MessageToJsonLine(j) << "\n";
    return absl::OkStatus();
  }
  const int64_t now = absl::ToUnixMillis(absl::Now());
  TextTable table({"JOB", "NAME", "STATE", "NODES", "RANKS", "EXPERTS", "TOP-K", "M", "STEP", "AGE",
                   "FAILURE"});
  for (const v1::Job& j : jobs) {
    const v1::JobSpec& s = j.spec();
    table.AddRow({j.job_id(), s.name().empty() ? "-" : s.name(), StateName(j.state()),
                  absl::StrCat(LiveMembers(j), "/", s.nodes()),
                  absl::StrCat(s.nodes() * s.ranks_per_node()), absl::StrCat(s.experts()),
                  absl::StrCat(s.top_k()), absl::StrCat(s.max_nodes_per_token()),
                  absl::StrCat(j.progress_step()), Age(j.create_unix_ms(), now),
                  j.has_failure() ? DescribeFailure(j.failure()) : "-"});
  }
  if (table.rows() == 0) {
    env.out << "no jobs\n";
    return absl::OkStatus();
  }
  env.out << table.Render();
  return absl::OkStatus();
}

absl::Status Topology(Env& env, const std::string& job_id) {
  v1::GetTopologyRequest request;
  request.set_job_id(job_id);
  v1::Topology t;
  grpc::Status s = env.coordinator->GetTopology(env.Context().get(), request, &t);
  if (!s.ok()) return env.CallError(s);
  if (env.options.json) {
    env.out << MessageToJsonLine(t) << "\n";
    return absl::OkStatus();
  }
  env.out << "job " << t.job_id() << ": " << StateName(t.state()) << ", " << t.spec().nodes()
          << " nodes x " << t.spec().ranks_per_node() << " ranks = world " << t.world_size() << " ("
          << t.nodes_size() << "/" << t.spec().nodes() << " joined)\n";
  TextTable table({"NODE", "HOST", "RANKS", "FIRST-RANK", "NODE-SERVICE", "TRANSPORTS", "KEYS"});
  for (const v1::NodeInfo& n : t.nodes()) {
    std::vector<std::string> transports, keys;
    for (const v1::TransportEndpoint& e : n.endpoints()) {
      transports.push_back(absl::StrCat(e.backend(), " (", e.address().size(), " B address)"));
    }
    for (const v1::MemoryKey& k : n.memory_keys()) {
      keys.push_back(absl::StrCat(k.name(), " ", k.backend(), " ", HumanBytes(k.size())));
    }
    table.AddRow({absl::StrCat(n.node_id()), n.hostname().empty() ? "-" : n.hostname(),
                  absl::StrCat(n.local_ranks()), absl::StrCat(n.first_global_rank()),
                  n.node_service_address().empty() ? "-" : n.node_service_address(),
                  transports.empty() ? "-" : absl::StrJoin(transports, ", "),
                  keys.empty() ? "-" : absl::StrJoin(keys, ", ")});
  }
  if (table.rows() > 0) env.out << table.Render();
  return absl::OkStatus();
}

absl::Status Watch(Env& env, const std::string& job_id) {
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  request.set_from_sequence(env.options.from_sequence);
  grpc::ClientContext ctx;  // streams until the job ends
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader = env.jobs->WatchJob(&ctx, request);
  v1::JobEvent e;
  while (reader->Read(&e)) {
    if (env.options.json) {
      env.out << MessageToJsonLine(e) << std::endl;
      continue;
    }
    std::string what;
    switch (e.kind_case()) {
      case v1::JobEvent::kStateChanged:
        what = absl::StrCat("state ", StateName(e.state_changed()));
        break;
      case v1::JobEvent::kMembership: {
        const v1::NodeMembership& m = e.membership();
        what = absl::StrCat("node ", m.node_id(),
                            m.hostname().empty() ? "" : absl::StrCat(" (", m.hostname(), ")"), " ",
                            MemberStateName(m.state()));
        break;
      }
      case v1::JobEvent::kFailure:
        what = absl::StrCat("FAILURE ", DescribeFailure(e.failure()));
        break;
      case v1::JobEvent::kProgressStep:
        what = absl::StrCat("progress step ", e.progress_step());
        break;
      default:
        what = "(unknown event)";
    }
    env.out << "#" << e.sequence() << "  " << ClockTime(e.time_unix_ms()) << "  " << what
            << std::endl;
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return env.CallError(s);
  return absl::OkStatus();
}

absl::Status Stats(Env& env, const std::string& job_id) {
  v1::GetStatsRequest request;
  request.set_job_id(job_id);
  v1::JobStats stats;
  grpc::Status s = env.jobs->GetStats(env.Context().get(), request, &stats);
  if (!s.ok()) return env.CallError(s);
  if (env.options.json) {
    env.out << MessageToJsonLine(stats) << "\n";
    return absl::OkStatus();
  }
  env.out << "job " << stats.job_id() << ": " << HumanBytes(stats.intra_node_bytes())
          << " intra-node, " << HumanBytes(stats.inter_node_bytes()) << " inter-node\n";
  if (stats.nodes_size() == 0) {
    env.out << "no node has reported counters yet\n";
    return absl::OkStatus();
  }
  TextTable nodes(
      {"NODE", "INTRA-PUTS", "INTER-PUTS", "INTRA-BYTES", "INTER-BYTES", "NOTIFICATIONS"});
  TextTable ranks(
      {"RANK", "NODE", "PUTS", "INTRA-BYTES", "INTER-BYTES", "NOTIFICATIONS", "TOKENS/EXPERT"});
  for (const v1::NodeStats& n : stats.nodes()) {
    nodes.AddRow({absl::StrCat(n.node_id()), absl::StrCat(n.intra_node_puts()),
                  absl::StrCat(n.inter_node_puts()), HumanBytes(n.intra_node_bytes()),
                  HumanBytes(n.inter_node_bytes()), absl::StrCat(n.notifications_delivered())});
    for (const v1::RankStats& r : n.ranks()) {
      ranks.AddRow(
          {absl::StrCat(r.global_rank()), absl::StrCat(n.node_id()), absl::StrCat(r.puts()),
           HumanBytes(r.bytes_sent_intra_node()), HumanBytes(r.bytes_sent_inter_node()),
           absl::StrCat(r.notifications()),
           r.tokens_per_expert().empty() ? "-" : absl::StrJoin(r.tokens_per_expert(), ",")});
    }
  }
  env.out << nodes.Render();
  if (ranks.rows() > 0) env.out << "\n" << ranks.Render();
  return absl::OkStatus();
}

absl::Status Drain(Env& env, int node_id) {
  // Find the node's NodeService through the coordinator.
  std::vector<v1::Job> candidates;
  if (!env.options.job.empty()) {
    v1::GetJobRequest request;
    request.set_job_id(env.options.job);
    v1::Job job;
    grpc::Status s = env.jobs->GetJob(env.Context().get(), request, &job);
    if (!s.ok()) return env.CallError(s);
    candidates.push_back(std::move(job));
  } else {
    TR_ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, ListJobs(env));
    for (v1::Job& j : jobs) {
      if (!Active(j.state())) continue;
      for (const v1::NodeMembership& m : j.nodes()) {
        if (m.node_id() == node_id && m.state() == v1::NodeMembership::JOINED) {
          candidates.push_back(j);
          break;
        }
      }
    }
    if (candidates.empty()) {
      return absl::NotFoundError(absl::StrCat("no active job has a live node ", node_id));
    }
    if (candidates.size() > 1) {
      std::vector<std::string> ids;
      for (const v1::Job& j : candidates) ids.push_back(j.job_id());
      return absl::FailedPreconditionError(absl::StrCat("node ", node_id, " is in several jobs (",
                                                        absl::StrJoin(ids, ", "),
                                                        "): pass --job=JOB"));
    }
  }
  const v1::Job& job = candidates.front();
  const v1::NodeMembership* member = nullptr;
  for (const v1::NodeMembership& m : job.nodes()) {
    if (m.node_id() == node_id) member = &m;
  }
  if (member == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("node ", node_id, " has not joined job ", job.job_id()));
  }
  if (member->state() != v1::NodeMembership::JOINED) {
    return absl::FailedPreconditionError(absl::StrCat("node ", node_id, " of job ", job.job_id(),
                                                      " is ", MemberStateName(member->state()),
                                                      "; only a live node can drain"));
  }
  const std::string& address = member->node_service_address();
  if (address.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("node ", node_id, " of job ", job.job_id(),
                                                      " published no NodeService address"));
  }
  TR_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> node_channel,
                      rpc::CreateChannel(address, env.options.client));
  auto node = v1::NodeService::NewStub(node_channel);
  v1::DrainRequest request;
  request.set_reason("tokenrailctl drain");
  request.set_timeout_ms(env.options.drain_timeout_ms);
  v1::DrainResponse response;
  grpc::Status s = node->Drain(env.Context().get(), request, &response);
  if (!s.ok()) {
    return rpc::DescribeCallError(s, absl::StrCat("node ", node_id), address, node_channel.get());
  }
  if (env.options.json) {
    env.out << "{\"job_id\":" << JsonQuoted(job.job_id()) << ",\"node_id\":" << node_id
            << ",\"node_service_address\":" << JsonQuoted(address)
            << ",\"in_flight\":" << response.in_flight() << "}\n";
    return absl::OkStatus();
  }
  env.out << "drain requested: node " << node_id
          << (member->hostname().empty() ? "" : absl::StrCat(" (", member->hostname(), ")"))
          << " of job " << job.job_id() << " at " << address << "; " << response.in_flight()
          << " proxy commands were in flight\n";
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace ctl
}  // namespace tokenrail
