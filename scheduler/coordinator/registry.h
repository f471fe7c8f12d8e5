// The jobs one coordinator hosts (one process may run many jobs).
//
// Thread safety: all methods are thread-safe. Jobs are shared_ptrs: a job
// evicted from the registry lives on while calls still hold it.
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_REGISTRY_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "proto/tokenrail/v1/job.pb.h"
#include "scheduler/coordinator/calls.h"
#include "scheduler/coordinator/job.h"
#include "scheduler/coordinator/options.h"

namespace tokenrail {
namespace coordinator {

class JobRegistry {
 public:
  // `options` passed Validate().
  explicit JobRegistry(const CoordinatorOptions& options) : options_(options) {}

  const CoordinatorOptions& options() const { return options_; }

  // Validates the spec and id (generated when empty), admits the job (evicting
  // the oldest ended job when full; RESOURCE_EXHAUSTED when every kept job is
  // still active). ALREADY_EXISTS for a taken id.
  absl::StatusOr<std::shared_ptr<Job>> Create(const v1::CreateJobRequest& request);

  // INVALID_ARGUMENT for a malformed id, NOT_FOUND for an unknown one,
  // UNAVAILABLE once shutting down.
  absl::StatusOr<std::shared_ptr<Job>> Find(absl::string_view job_id) const;

  // Every job, oldest first.
  std::vector<std::shared_ptr<Job>> List() const;

  // UNAVAILABLE once Shutdown began.
  absl::Status CheckServing() const;

  // Monotonic time at which a blocking call without its own deadline gives up.
  int64_t GiveUpTime() const;

  // Failure detection and expiry, for every job.
  void Tick(Effects* fx);

  // Ends every call and stream of every job with UNAVAILABLE; later calls are
  // refused.
  void Shutdown(Effects* fx);

 private:
  const CoordinatorOptions options_;
  mutable absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);  // creation order
};

}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_REGISTRY_H_
