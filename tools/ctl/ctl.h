// tokenrailctl: the operator's client of the coordinator (and of a node's
// NodeService for `drain`). A library so the commands are testable against
// in-process servers; tokenrailctl.cc is the thin main.
//
//   tokenrailctl [flags] status
//   tokenrailctl [flags] jobs
//   tokenrailctl [flags] topology JOB
//   tokenrailctl [flags] watch JOB [--from=SEQ]
//   tokenrailctl [flags] stats JOB
//   tokenrailctl [flags] drain NODE [--job=JOB]
//
// Output: human tables by default; with --json one JSON object per line
// (protobuf's JSON mapping of the response messages, field names as in the
// .proto). Errors: one line on stderr ("tokenrailctl: cannot reach
// coordinator at HOST:PORT: ...", "tokenrailctl: coordinator refused the
// token: ..."). Exit codes: 0 success, 1 failure, 2 usage.
//
// Thread safety: RunCtl may run concurrently with itself (no shared state).
#ifndef TOKENRAIL_TOOLS_CTL_CTL_H_
#define TOKENRAIL_TOOLS_CTL_CTL_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/rpc/options.h"

namespace tokenrail {
namespace ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct CtlOptions {
  // HOST:PORT of the coordinator.
  std::string coordinator;
  // Token and TLS, used for the coordinator and for NodeService (drain).
  rpc::ClientOptions client;
  bool json = false;
  // Deadline of each unary call (watch streams until the job ends).
  absl::Duration timeout = absl::Seconds(10);
  // drain: the job whose node to drain (found by searching active jobs when
  // empty).
  std::string job;
  // watch: first event sequence number.
  int64_t from_sequence = 0;
  // drain: how long the node may take to finish in-flight work.
  int64_t drain_timeout_ms = 10000;
};

// The usage text (commands and what they print).
const char* Usage();

// Runs one command; `args` are the positional arguments without the program
// name (e.g. {"topology", "job-1"}). Writes results to `out` (flushed per
// line for watch) and errors to `err`. Returns the exit code.
int RunCtl(const std::vector<std::string>& args, const CtlOptions& options, std::ostream& out,
           std::ostream& err);

}  // namespace ctl
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_CTL_CTL_H_
