#include "runtime/daemon/options.h"

#include "absl/strings/str_cat.h"

namespace tokenrail {
namespace runtime {

std::string DaemonOptions::SocketPath() const {
  if (!socket_path.empty()) return socket_path;
  return absl::StrCat("/tmp/tokenrail-", job_id, "-n", node_id, ".sock");
}

absl::Status DaemonOptions::Validate() const {
  if (node_id < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--node_id ", node_id, " must be >= 0"));
  }
  if (job_id.empty() || job_id.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("--job_id '", job_id, "' must have 1..64 characters"));
  }
  for (char c : job_id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat("--job_id '", job_id, "' may contain only [a-z0-9-]"));
    }
  }
  if (coordinator.empty()) {
    return absl::InvalidArgumentError("no coordinator address (--coordinator=HOST:PORT)");
  }
  if (arena_bytes == 0 || arena_bytes % 4096 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--arena_bytes ", arena_bytes, " must be a positive multiple of 4096"));
  }
  if (heartbeat_interval <= absl::ZeroDuration() || heartbeat_timeout <= heartbeat_interval) {
    return absl::InvalidArgumentError(
        absl::StrCat("--heartbeat_interval_ms ", absl::ToInt64Milliseconds(heartbeat_interval),
                     " must be positive and below --heartbeat_timeout_ms ",
                     absl::ToInt64Milliseconds(heartbeat_timeout)));
  }
  if (drain_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("drain timeout must not be negative");
  }
  return absl::OkStatus();
}

}  // namespace runtime
}  // namespace tokenrail
