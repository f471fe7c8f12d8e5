#include "scheduler/coordinator/options.h"

#include "absl/strings/str_cat.h"

namespace tokenrail {
namespace coordinator {

absl::Status CoordinatorOptions::Validate() const {
  if (heartbeat_interval < absl::Milliseconds(10) || heartbeat_interval > absl::Seconds(60)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heartbeat_interval=", absl::FormatDuration(heartbeat_interval), " must be in 10ms..60s"));
  }
  if (heartbeat_timeout < 2 * heartbeat_interval || heartbeat_timeout > absl::Minutes(10)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heartbeat_timeout=", absl::FormatDuration(heartbeat_timeout),
        " must be at least twice heartbeat_interval=", absl::FormatDuration(heartbeat_interval),
        " and at most 10m"));
  }
  if (max_blocking_wait <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_blocking_wait=", absl::FormatDuration(max_blocking_wait), " must be positive"));
  }
  if (max_jobs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_jobs=", max_jobs, " must be >= 1"));
  }
  if (max_events_per_job < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_events_per_job=", max_events_per_job, " must be >= 16"));
  }
  if (max_barrier_names < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_barrier_names=", max_barrier_names, " must be >= 1"));
  }
  return absl::OkStatus();
}

}  // namespace coordinator
}  // namespace tokenrail
