#include "scheduler/coordinator/validation.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/rpc/server.h"
#include "common/status.h"

namespace tokenrail {
namespace coordinator {
namespace {

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

absl::Status CheckLength(absl::string_view value, size_t limit, absl::string_view field) {
  if (value.size() <= limit) return absl::OkStatus();
  return Invalid(absl::StrCat(field, " is ", value.size(), " bytes; the limit is ", limit));
}

absl::Status CheckRange(int64_t value, int64_t lo, int64_t hi, absl::string_view field) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return Invalid(absl::StrCat(field, "=", value, " must be in ", lo, "..", hi));
}

absl::Status ValidatePipeline(const v1::PipelineSpec& p, int world) {
  if (!v1::PipelineSpec::Kind_IsValid(p.kind())) {
    return Invalid(absl::StrCat("spec.pipeline.kind=", p.kind(), " is not a known kind"));
  }
  if (p.kind() == v1::PipelineSpec::KIND_UNSPECIFIED) {
    if (p.stages() != 0 || p.micro_batches() != 0) {
      return Invalid(absl::StrCat("spec.pipeline.stages=", p.stages(),
                                  " and spec.pipeline.micro_batches=", p.micro_batches(),
                                  " need a pipeline kind (spec.pipeline.kind is unset)"));
    }
    return absl::OkStatus();
  }
  TR_RETURN_IF_ERROR(CheckRange(p.stages(), 1, world, "spec.pipeline.stages"));
  if (world % p.stages() != 0) {
    return Invalid(absl::StrCat("spec.pipeline.stages=", p.stages(),
                                " does not divide the world size ", world));
  }
  return CheckRange(p.micro_batches(), 1, kMaxPipelineMicroBatches, "spec.pipeline.micro_batches");
}

}  // namespace

absl::Status ValidateJobId(absl::string_view job_id, absl::string_view field) {
  if (job_id.empty()) return Invalid(absl::StrCat(field, " is required"));
  if (job_id.size() > kMaxJobIdBytes) {
    return Invalid(
        absl::StrCat(field, " is ", job_id.size(), " bytes; the limit is ", kMaxJobIdBytes));
  }
  for (char c : job_id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return Invalid(absl::StrCat(field, "='", job_id, "' may only contain a-z, 0-9 and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateJobSpec(const v1::JobSpec& spec) {
  TR_RETURN_IF_ERROR(CheckLength(spec.name(), kMaxJobNameBytes, "spec.name"));
  TR_RETURN_IF_ERROR(CheckRange(spec.nodes(), 1, kMaxNodes, "spec.nodes"));
  TR_RETURN_IF_ERROR(CheckRange(spec.ranks_per_node(), 1, kMaxRanksPerNode, "spec.ranks_per_node"));
  TR_RETURN_IF_ERROR(CheckRange(spec.experts(), 1, kMaxExperts, "spec.experts"));
  const int world = spec.nodes() * spec.ranks_per_node();
  if (spec.experts() % world != 0) {
    return Invalid(absl::StrCat(
        "spec.experts=", spec.experts(), " is not divisible by the world size ", world,
        " (spec.nodes=", spec.nodes(), " x spec.ranks_per_node=", spec.ranks_per_node(), ")"));
  }
  TR_RETURN_IF_ERROR(CheckRange(spec.top_k(), 1, kMaxTopK, "spec.top_k"));
  if (spec.top_k() > spec.experts()) {
    return Invalid(
        absl::StrCat("spec.top_k=", spec.top_k(), " exceeds spec.experts=", spec.experts()));
  }
  if (spec.max_nodes_per_token() < 1 || spec.max_nodes_per_token() > spec.nodes()) {
    return Invalid(absl::StrCat("spec.max_nodes_per_token=", spec.max_nodes_per_token(),
                                " must be in 1..spec.nodes=", spec.nodes()));
  }
  const int experts_per_node = spec.experts() / spec.nodes();
  const int64_t reachable = static_cast<int64_t>(spec.max_nodes_per_token()) * experts_per_node;
  if (spec.top_k() > reachable) {
    return Invalid(absl::StrCat(
        "spec.top_k=", spec.top_k(),
        " experts are not reachable within spec.max_nodes_per_token=", spec.max_nodes_per_token(),
        " node(s) of ", experts_per_node, " experts each (at most ", reachable, ")"));
  }
  return ValidatePipeline(spec.pipeline(), world);
}

absl::Status ValidateJoinFields(const v1::JoinRequest& request) {
  TR_RETURN_IF_ERROR(ValidateJobId(request.job_id()));
  TR_RETURN_IF_ERROR(CheckLength(request.hostname(), kMaxHostnameBytes, "hostname"));
  if (request.local_ranks() < 1) {
    return Invalid(absl::StrCat("local_ranks=", request.local_ranks(), " must be >= 1"));
  }
  if (request.endpoints_size() > kMaxEndpoints) {
    return Invalid(absl::StrCat("endpoints has ", request.endpoints_size(),
                                " entries; the limit is ", kMaxEndpoints));
  }
  for (int i = 0; i < request.endpoints_size(); ++i) {
    const v1::TransportEndpoint& e = request.endpoints(i);
    const std::string field = absl::StrCat("endpoints[", i, "]");
    if (e.backend().empty()) return Invalid(absl::StrCat(field, ".backend is empty"));
    TR_RETURN_IF_ERROR(CheckLength(e.backend(), kMaxBackendNameBytes, field + ".backend"));
    if (e.address().empty()) return Invalid(absl::StrCat(field, ".address is empty"));
    TR_RETURN_IF_ERROR(CheckLength(e.address(), kMaxBlobBytes, field + ".address"));
  }
  if (request.memory_keys_size() > kMaxMemoryKeys) {
    return Invalid(absl::StrCat("memory_keys has ", request.memory_keys_size(),
                                " entries; the limit is ", kMaxMemoryKeys));
  }
  for (int i = 0; i < request.memory_keys_size(); ++i) {
    const v1::MemoryKey& k = request.memory_keys(i);
    const std::string field = absl::StrCat("memory_keys[", i, "]");
    if (k.name().empty()) return Invalid(absl::StrCat(field, ".name is empty"));
    TR_RETURN_IF_ERROR(CheckLength(k.name(), kMaxKeyNameBytes, field + ".name"));
    if (k.backend().empty()) return Invalid(absl::StrCat(field, ".backend is empty"));
    TR_RETURN_IF_ERROR(CheckLength(k.backend(), kMaxBackendNameBytes, field + ".backend"));
    if (k.key().empty()) return Invalid(absl::StrCat(field, ".key is empty"));
    TR_RETURN_IF_ERROR(CheckLength(k.key(), kMaxBlobBytes, field + ".key"));
  }
  if (!request.node_service_address().empty()) {
    TR_RETURN_IF_ERROR(CheckLength(request.node_service_address(), kMaxServiceAddressBytes,
                                   "node_service_address"));
    int port = 0;
    absl::Status parsed = rpc::ParseHostPort(request.node_service_address(), nullptr, &port);
    if (!parsed.ok()) return Annotate(parsed, "node_service_address");
    if (port == 0) {
      return Invalid(absl::StrCat("node_service_address='", request.node_service_address(),
                                  "' has port 0; send the bound port"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBarrierFields(const v1::BarrierRequest& request) {
  TR_RETURN_IF_ERROR(ValidateJobId(request.job_id()));
  TR_RETURN_IF_ERROR(ValidateSessionId(request.session_id()));
  if (request.name().empty()) return Invalid("barrier name is empty");
  TR_RETURN_IF_ERROR(CheckLength(request.name(), kMaxBarrierNameBytes, "barrier name"));
  TR_RETURN_IF_ERROR(
      CheckRange(request.participants(), 1, kMaxBarrierParticipants, "participants"));
  if (request.participant() < 0 || request.participant() >= request.participants()) {
    return Invalid(absl::StrCat("participant=", request.participant(),
                                " is out of range for participants=", request.participants(),
                                " (0..", request.participants() - 1, ")"));
  }
  return CheckLength(request.payload(), kMaxBarrierPayloadBytes, "payload");
}

absl::Status ValidateReportedFailure(const v1::FailureInfo& failure, const v1::JobSpec& spec) {
  const int world = spec.nodes() * spec.ranks_per_node();
  TR_RETURN_IF_ERROR(CheckRange(failure.node_id(), -1, spec.nodes() - 1, "failure.node_id"));
  TR_RETURN_IF_ERROR(CheckRange(failure.global_rank(), -1, world - 1, "failure.global_rank"));
  if (failure.node_id() >= 0 && failure.global_rank() >= 0 &&
      failure.global_rank() / spec.ranks_per_node() != failure.node_id()) {
    return Invalid(absl::StrCat("failure.global_rank=", failure.global_rank(),
                                " is not on failure.node_id=", failure.node_id(), " (node ",
                                failure.node_id(), " holds ranks ",
                                failure.node_id() * spec.ranks_per_node(), "..",
                                (failure.node_id() + 1) * spec.ranks_per_node() - 1, ")"));
  }
  if (failure.reason().empty()) return Invalid("failure.reason is empty");
  return ValidateReason(failure.reason(), "failure.reason");
}

absl::Status ValidateReason(absl::string_view reason, absl::string_view field) {
  return CheckLength(reason, kMaxReasonBytes, field);
}

absl::Status ValidateSessionId(absl::string_view session_id) {
  if (session_id.empty()) return Invalid("session_id is required (from JoinResponse)");
  return CheckLength(session_id, kMaxSessionIdBytes, "session_id");
}

}  // namespace coordinator
}  // namespace tokenrail
