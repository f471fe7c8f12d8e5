// tokenrailctl: thin main over //tools/ctl (see ctl.h for the commands).
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/init.h"
#include "common/rpc/client_flags.h"
#include "tools/ctl/ctl.h"

ABSL_FLAG(bool, json, false, "Print one JSON object per line instead of tables.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "Deadline of each call (not of watch).");
ABSL_FLAG(std::string, job, "",
          "drain: the job of the node (searched among active jobs if empty).");
ABSL_FLAG(int64_t, from, 0, "watch: first event sequence number.");
ABSL_FLAG(int64_t, drain_timeout_ms, 10000, "drain: time the node may take for in-flight work.");

int main(int argc, char** argv) {
  std::vector<char*> positional = tokenrail::InitMain(argc, argv, tokenrail::ctl::Usage());
  tokenrail::ctl::CtlOptions options;
  options.coordinator = absl::GetFlag(FLAGS_coordinator);
  absl::StatusOr<tokenrail::rpc::ClientOptions> client = tokenrail::rpc::ClientOptionsFromFlags();
  if (!client.ok()) {
    std::cerr << "tokenrailctl: " << client.status().message() << "\n";
    return tokenrail::ctl::kExitUsage;
  }
  options.client = *client;
  options.json = absl::GetFlag(FLAGS_json);
  options.timeout = absl::GetFlag(FLAGS_timeout);
  options.job = absl::GetFlag(FLAGS_job);
  options.from_sequence = absl::GetFlag(FLAGS_from);
  options.drain_timeout_ms = absl::GetFlag(FLAGS_drain_timeout_ms);
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  return tokenrail::ctl::RunCtl(args, options, std::cout, std::cerr);
}
