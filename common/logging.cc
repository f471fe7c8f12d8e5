#include "common/logging.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tokenrail {
namespace logging_internal {
std::atomic<int> max_verbosity{0};
}  // namespace logging_internal

namespace {

struct VerbosityTable {
  absl::Mutex mu;
  std::vector<std::pair<std::string, int>> levels ABSL_GUARDED_BY(mu);
  int default_level ABSL_GUARDED_BY(mu) = 0;
  std::string prefix ABSL_GUARDED_BY(mu);
};

VerbosityTable& Table() {
  static auto* table = new VerbosityTable;  // Never destroyed: used at exit.
  return *table;
}

}  // namespace

absl::Status SetLogVerbosity(absl::string_view spec) {
  std::vector<std::pair<std::string, int>> levels;
  int default_level = 0;
  int max_level = 0;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::vector<absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    int level = 0;
    if (kv.size() != 2 || kv[0].empty() || !absl::SimpleAtoi(kv[1], &level) || level < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("log verbosity: expected name=level, got '", item, "'"));
    }
    if (kv[0] == "*") {
      default_level = level;
    } else {
      levels.emplace_back(std::string(kv[0]), level);
    }
    max_level = std::max(max_level, level);
  }
  VerbosityTable& t = Table();
  absl::MutexLock lock(&t.mu);
  t.levels = std::move(levels);
  t.default_level = default_level;
  logging_internal::max_verbosity.store(max_level, std::memory_order_relaxed);
  return absl::OkStatus();
}

int LogVerbosity(absl::string_view subsystem) {
  VerbosityTable& t = Table();
  absl::MutexLock lock(&t.mu);
  for (const auto& [name, level] : t.levels) {
    if (name == subsystem) return level;
  }
  return t.default_level;
}

void SetLogPrefix(absl::string_view prefix) {
  VerbosityTable& t = Table();
  absl::MutexLock lock(&t.mu);
  t.prefix = std::string(prefix);
}

namespace logging_internal {

LogMessage::LogMessage(LogSeverity severity, absl::string_view subsystem, const char* file,
                       int line)
    : severity_(severity) {
  static constexpr char kLetters[] = "IWEF";
  const char* base = file;
  for (const char* p = file; *p; ++p) {
    if (*p == '/') base = p + 1;
  }
  std::string prefix;
  {
    VerbosityTable& t = Table();
    absl::MutexLock lock(&t.mu);
    prefix = t.prefix;
  }
  stream_ << prefix << kLetters[static_cast<int>(severity)]
          << absl::FormatTime("%m%d %H:%M:%E6S", absl::Now(), absl::LocalTimeZone()) << ' '
          << static_cast<long>(syscall(SYS_gettid)) << ' ' << subsystem << ' ' << base << ':'
          << line << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string text = stream_.str();
  // One write() per line keeps lines from different threads whole.
  ssize_t unused = ::write(STDERR_FILENO, text.data(), text.size());
  (void)unused;
  if (severity_ == LogSeverity::kFatal) std::abort();
}

}  // namespace logging_internal
}  // namespace tokenrail
