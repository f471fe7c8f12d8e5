// Logging with per-subsystem verbosity.
//
//   TR_LOG(INFO, "ucx") << "connected to " << peer;
//   TR_VLOG(2, "shm") << "ring full, spinning";      // only when shm >= 2
//   TR_LOG_ONCE(WARNING, "daemon") << "no GPU: degraded to host copies";
//   TR_CHECK(ptr != nullptr) << "programmer error only";
//
// Lines go to stderr as "I1122 22:51:15.123456 1234 ucx file.cc:42] text".
// Verbosity is set once at start-up from a spec such as "ucx=2,shm=1,*=0"
// (the --v flag of InitMain). Thread-safe; a disabled TR_VLOG costs one relaxed
// atomic load.
#ifndef TOKENRAIL_COMMON_LOGGING_H_
#define TOKENRAIL_COMMON_LOGGING_H_

#include <atomic>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tokenrail {

enum class LogSeverity { kInfo = 0, kWarning = 1, kError = 2, kFatal = 3 };

// Parses "name=level,...,*=level"; `*` sets the default for other subsystems.
absl::Status SetLogVerbosity(absl::string_view spec);
int LogVerbosity(absl::string_view subsystem);

// Sets a prefix printed before every line (e.g. "node1/rank3 "), for launched
// processes whose output is interleaved.
void SetLogPrefix(absl::string_view prefix);

namespace logging_internal {

extern std::atomic<int> max_verbosity;

inline bool VlogOn(absl::string_view subsystem, int level) {
  return level <= max_verbosity.load(std::memory_order_relaxed) && level <= LogVerbosity(subsystem);
}

class LogMessage {
 public:
  LogMessage(LogSeverity severity, absl::string_view subsystem, const char* file, int line);
  ~LogMessage();  // Writes the line; aborts for kFatal.
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

// Lets `cond ? (void)0 : Voidify() & stream` compile for the CHECK macro.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace logging_internal
}  // namespace tokenrail

#define TR_LOG_SEVERITY_INFO ::tokenrail::LogSeverity::kInfo
#define TR_LOG_SEVERITY_WARNING ::tokenrail::LogSeverity::kWarning
#define TR_LOG_SEVERITY_ERROR ::tokenrail::LogSeverity::kError
#define TR_LOG_SEVERITY_FATAL ::tokenrail::LogSeverity::kFatal

#define TR_LOG(severity, subsystem)                                                          \
  ::tokenrail::logging_internal::LogMessage(TR_LOG_SEVERITY_##severity, subsystem, __FILE__, \
                                            __LINE__)                                        \
      .stream()

#define TR_VLOG(level, subsystem)                                                         \
  if (!::tokenrail::logging_internal::VlogOn(subsystem, level)) {                         \
  } else                                                                                  \
    ::tokenrail::logging_internal::LogMessage(::tokenrail::LogSeverity::kInfo, subsystem, \
                                              __FILE__, __LINE__)                         \
        .stream()

#define TR_LOG_ONCE(severity, subsystem)                           \
  if (static std::atomic<bool> tr_logged_once_{false};             \
      tr_logged_once_.exchange(true, std::memory_order_relaxed)) { \
  } else                                                           \
    TR_LOG(severity, subsystem)

#define TR_CHECK(cond)                                                       \
  (cond) ? (void)0                                                           \
         : ::tokenrail::logging_internal::Voidify() & TR_LOG(FATAL, "check") \
                                                          << "Check failed: " #cond " "

#endif  // TOKENRAIL_COMMON_LOGGING_H_
