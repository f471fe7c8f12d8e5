// Request validation for the Coordinator and JobService RPCs. Every rule
// answers INVALID_ARGUMENT with a message naming the field and the value
// (never a payload or a token). These checks need no job state; the ones that
// do (node_id against the job's node count, session ids) live in job.cc.
#ifndef TOKENRAIL_SCHEDULER_COORDINATOR_VALIDATION_H_
#define TOKENRAIL_SCHEDULER_COORDINATOR_VALIDATION_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proto/tokenrail/v1/common.pb.h"
#include "proto/tokenrail/v1/coordinator.pb.h"

namespace tokenrail {
namespace coordinator {

inline constexpr int kMaxNodes = 4096;
inline constexpr int kMaxRanksPerNode = 255;
inline constexpr int kMaxExperts = 1 << 20;
inline constexpr int kMaxTopK = 16;
inline constexpr int kMaxPipelineMicroBatches = 1 << 20;
inline constexpr size_t kMaxJobIdBytes = 64;
inline constexpr size_t kMaxJobNameBytes = 128;
inline constexpr size_t kMaxSessionIdBytes = 64;
inline constexpr size_t kMaxHostnameBytes = 255;
inline constexpr size_t kMaxServiceAddressBytes = 262;  // "[ipv6%zone]:port" or a DNS name
inline constexpr int kMaxEndpoints = 16;
inline constexpr int kMaxMemoryKeys = 64;
inline constexpr size_t kMaxBackendNameBytes = 64;
inline constexpr size_t kMaxKeyNameBytes = 128;
inline constexpr size_t kMaxBlobBytes = 64 << 10;  // one address or memory key
inline constexpr size_t kMaxBarrierNameBytes = 256;
inline constexpr int kMaxBarrierParticipants = 1 << 16;
inline constexpr size_t kMaxBarrierPayloadBytes = 1 << 20;
// Sum of one round's payloads (the allgather response): 64 x 1 MiB.
inline constexpr size_t kMaxBarrierRoundBytes = 64 << 20;
inline constexpr size_t kMaxReasonBytes = 4096;

// "[a-z0-9-]{1,64}". `field` names it in the message ("job_id").
absl::Status ValidateJobId(absl::string_view job_id, absl::string_view field = "job_id");

// The JobSpec rules of issue 3: counts in range, experts divisible by the
// world size, top_k 1..16 and <= experts, max_nodes_per_token 1..nodes,
// top_k reachable within max_nodes_per_token nodes, name <= 128 bytes, and a
// consistent pipeline spec.
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

// Everything in a JoinRequest that does not depend on the job's state.
absl::Status ValidateJoinFields(const v1::JoinRequest& request);

// Barrier name, participant range, payload size.
absl::Status ValidateBarrierFields(const v1::BarrierRequest& request);

// A failure a daemon reports: node_id in -1..nodes-1, global_rank in
// -1..world-1 (on node_id when both are set), a non-empty reason.
absl::Status ValidateReportedFailure(const v1::FailureInfo& failure, const v1::JobSpec& spec);

// Free text (reasons): at most kMaxReasonBytes. `field` names it.
absl::Status ValidateReason(absl::string_view reason, absl::string_view field);

// A session id as issued by Join: 1..64 bytes.
absl::Status ValidateSessionId(absl::string_view session_id);

}  // namespace coordinator
}  // namespace tokenrail

#endif  // TOKENRAIL_SCHEDULER_COORDINATOR_VALIDATION_H_
