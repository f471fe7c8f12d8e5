#include "scheduler/coordinator/registry.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "scheduler/coordinator/validation.h"

namespace tokenrail {
namespace coordinator {

absl::StatusOr<std::shared_ptr<Job>> JobRegistry::Create(const v1::CreateJobRequest& request) {
  TR_RETURN_IF_ERROR(ValidateJobSpec(request.spec()));
  if (!request.job_id().empty()) TR_RETURN_IF_ERROR(ValidateJobId(request.job_id()));
  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("coordinator is shutting down");
  std::string id = request.job_id();
  if (id.empty()) {
    thread_local absl::BitGen gen;
    do {
      id = absl::StrCat("job-", absl::Hex(absl::Uniform<uint32_t>(gen), absl::kZeroPad8));
    } while (jobs_.contains(id));
  } else if (jobs_.contains(id)) {
    return absl::AlreadyExistsError(absl::StrCat("job_id='", id, "' is taken"));
  }
  if (static_cast<int>(jobs_.size()) >= options_.max_jobs) {
    auto ended = std::find_if(order_.begin(), order_.end(),
                              [this](const std::string& j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                                return jobs_.at(j)->Ended();
                              });
    if (ended == order_.end()) {
      return absl::ResourceExhaustedError(absl::StrCat("the coordinator holds ", jobs_.size(),
                                                       " active jobs (max_jobs=", options_.max_jobs,
                                                       "); cancel or finish one first"));
    }
    TR_VLOG(1, "coordinator") << "evicting ended job " << *ended;
    jobs_.erase(*ended);
    order_.erase(ended);
  }
  auto job = std::make_shared<Job>(id, request.spec(), options_);
  jobs_.emplace(id, job);
  order_.push_back(id);
  TR_LOG(INFO, "coordinator") << "created job " << id << ": " << request.spec().nodes()
                              << " nodes x " << request.spec().ranks_per_node() << " ranks, "
                              << request.spec().experts() << " experts, top-"
                              << request.spec().top_k()
                              << ", M=" << request.spec().max_nodes_per_token();
  return job;
}

absl::StatusOr<std::shared_ptr<Job>> JobRegistry::Find(absl::string_view job_id) const {
  TR_RETURN_IF_ERROR(ValidateJobId(job_id));
  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("coordinator is shutting down");
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' not found"));
  }
  return it->second;
}

std::vector<std::shared_ptr<Job>> JobRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Job>> out;
  out.reserve(order_.size());
  for (const std::string& id : order_) out.push_back(jobs_.at(id));
  return out;
}

absl::Status JobRegistry::CheckServing() const {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return absl::UnavailableError("coordinator is shutting down");
  return absl::OkStatus();
}

int64_t JobRegistry::GiveUpTime() const {
  return MonotonicNanos() + absl::ToInt64Nanoseconds(options_.max_blocking_wait);
}

void JobRegistry::Tick(Effects* fx) {
  const int64_t now = MonotonicNanos();
  for (const std::shared_ptr<Job>& job : List()) job->Tick(now, fx);
}

void JobRegistry::Shutdown(Effects* fx) {
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
  }
  for (const std::shared_ptr<Job>& job : List()) job->Shutdown(fx);
}

}  // namespace coordinator
}  // namespace tokenrail
