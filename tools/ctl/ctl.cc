#include "tools/ctl/ctl.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/client.h"
#include "common/rpc/server.h"
#include "tools/ctl/commands.h"

namespace tokenrail {
namespace ctl {
namespace {

constexpr char kUsage[] =
    "tokenrailctl [--coordinator=HOST:PORT] [--auth_token_file=F] [--tls_ca=F] [--json]\n"
    "             [--timeout=10s] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  status               coordinator health and a count of jobs by state\n"
    "  jobs                 every job: state, members, shape, progress, failure\n"
    "  topology JOB         the job's nodes: hosts, ranks, NodeService, transports, keys\n"
    "  watch JOB            the job's events from --from=SEQ, then live until it ends\n"
    "  stats JOB            per-node and per-rank counters from the heartbeats\n"
    "  drain NODE           ask node NODE's daemon to drain (finish work, leave, exit);\n"
    "                       --job=JOB picks the job when the node is in several\n"
    "\n"
    "--json prints one JSON object per line. Exit codes: 0 ok, 1 failure, 2 usage.";

int UsageError(std::ostream& err, absl::string_view message) {
  err << "tokenrailctl: " << message << "\nrun 'tokenrailctl --help' for usage\n";
  return kExitUsage;
}

int Fail(std::ostream& err, const absl::Status& status) {
  err << "tokenrailctl: " << status.message() << "\n";
  return kExitFailure;
}

// How many positional arguments each command takes after its name.
struct CommandSpec {
  const char* name;
  int args;
  const char* arg_name;
};
constexpr CommandSpec kCommands[] = {
    {"status", 0, ""},   {"jobs", 0, ""},     {"topology", 1, "JOB"},
    {"watch", 1, "JOB"}, {"stats", 1, "JOB"}, {"drain", 1, "NODE"},
};

}  // namespace

const char* Usage() { return kUsage; }

int RunCtl(const std::vector<std::string>& args, const CtlOptions& options, std::ostream& out,
           std::ostream& err) {
  if (args.empty()) return UsageError(err, "missing COMMAND");
  const CommandSpec* command = nullptr;
  for (const CommandSpec& c : kCommands) {
    if (args[0] == c.name) command = &c;
  }
  if (command == nullptr) return UsageError(err, absl::StrCat("unknown command '", args[0], "'"));
  const int given = static_cast<int>(args.size()) - 1;
  if (given < command->args) {
    return UsageError(err, absl::StrCat(command->name, ": missing ", command->arg_name));
  }
  if (given > command->args) {
    return UsageError(
        err, absl::StrCat(command->name, ": unexpected argument '", args[command->args + 1], "'"));
  }
  int node_id = -1;
  if (args[0] == "drain" && (!absl::SimpleAtoi(args[1], &node_id) || node_id < 0)) {
    return UsageError(
        err, absl::StrCat("drain: NODE must be a node id (0, 1, ...), not '", args[1], "'"));
  }
  if (options.coordinator.empty()) return UsageError(err, "--coordinator=HOST:PORT is required");
  int port = 0;
  absl::Status address = rpc::ParseHostPort(options.coordinator, nullptr, &port);
  if (!address.ok() || port == 0) {
    return UsageError(err, absl::StrCat("--coordinator='", options.coordinator,
                                        "' is not HOST:PORT with a non-zero port"));
  }
  if (options.timeout <= absl::ZeroDuration()) return UsageError(err, "--timeout must be positive");
  if (options.from_sequence < 0) return UsageError(err, "--from must be >= 0");

  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      rpc::CreateChannel(options.coordinator, options.client);
  if (!channel.ok()) return Fail(err, channel.status());
  internal::Env env{options, out, *channel, v1::JobService::NewStub(*channel),
                    v1::Coordinator::NewStub(*channel)};
  absl::Status result;
  if (args[0] == "status") {
    result = internal::Status(env);
  } else if (args[0] == "jobs") {
    result = internal::Jobs(env);
  } else if (args[0] == "topology") {
    result = internal::Topology(env, args[1]);
  } else if (args[0] == "watch") {
    result = internal::Watch(env, args[1]);
  } else if (args[0] == "stats") {
    result = internal::Stats(env, args[1]);
  } else {
    result = internal::Drain(env, node_id);
  }
  out.flush();
  if (!result.ok()) return Fail(err, result);
  return kExitOk;
}

}  // namespace ctl
}  // namespace tokenrail
