#include "common/init.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"

ABSL_FLAG(std::string, v, "",
          "Log verbosity per subsystem, e.g. 'ucx=2,shm=1,*=0' (default: all 0).");
ABSL_FLAG(std::string, log_prefix, "", "Text printed before every log line.");

namespace tokenrail {

std::vector<char*> InitMain(int argc, char** argv, const char* usage) {
  absl::SetProgramUsageMessage(usage);
  // Debian's abseil checks every Mutex acquisition for lock-order cycles (a
  // debug feature, 10-20% of the coordinator's CPU); production runs skip it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  absl::Status s = SetLogVerbosity(absl::GetFlag(FLAGS_v));
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    std::exit(2);
  }
  SetLogPrefix(absl::GetFlag(FLAGS_log_prefix));
  return args;
}

}  // namespace tokenrail
