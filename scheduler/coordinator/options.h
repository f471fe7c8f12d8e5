// Options of the coordinator (membership, barriers, failure detection).
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_OPTIONS_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_OPTIONS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tokenrail {
namespace coordinator {

struct CoordinatorOptions {
  // How often daemons beat (told to them in JoinResponse).
  absl::Duration heartbeat_interval = absl::Milliseconds(500);
  // A joined member silent this long is dead and its job fails. Also told to
  // daemons, which fail their ranks when the coordinator is silent as long.
  absl::Duration heartbeat_timeout = absl::Milliseconds(3000);
  // Bound on a blocking call (Barrier, GetTopology with wait_for_all) whose
  // client set no deadline, so no call waits forever.
  absl::Duration max_blocking_wait = absl::Minutes(10);
  // Jobs kept (ended ones are evicted oldest first to admit new ones).
  int max_jobs = 256;
  // Events kept per job for WatchJob history (oldest dropped first; a watcher
  // asking for older ones resumes at the oldest kept). Progress events are
  // the bulk: one per new step.
  size_t max_events_per_job = 4096;
  // Distinct barrier names per job.
  size_t max_barrier_names = 65536;

  // InvalidArgument naming the field: interval in 10 ms..60 s, timeout at
  // least 2x the interval and at most 10 min, positive limits.
  absl::Status Validate() const;
};

}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_OPTIONS_H_
