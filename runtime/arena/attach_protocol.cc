#include "runtime/arena/attach_protocol.h"

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/status.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr size_t kMaxString = 4096;

void PutRegion(ByteWriter& w, const RegionInfo& r) {
  w.Put<uint32_t>(r.id);
  w.Put<uint64_t>(r.offset);
  w.Put<uint64_t>(r.size);
}

absl::StatusOr<RegionInfo> GetRegion(ByteReader& r) {
  RegionInfo out;
  TR_ASSIGN_OR_RETURN(out.id, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(out.offset, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(out.size, r.Get<uint64_t>());
  return out;
}

absl::Status DecodeWelcome(ByteReader& r, WelcomeInfo* w) {
  TR_ASSIGN_OR_RETURN(absl::string_view job, r.GetBytes(kMaxString));
  w->job_id = std::string(job);
  TR_ASSIGN_OR_RETURN(w->node_id, r.Get<int32_t>());
  TR_ASSIGN_OR_RETURN(w->nodes, r.Get<int32_t>());
  TR_ASSIGN_OR_RETURN(w->local_rank, r.Get<int32_t>());
  TR_ASSIGN_OR_RETURN(w->ranks_per_node, r.Get<int32_t>());
  TR_ASSIGN_OR_RETURN(w->global_rank, r.Get<int32_t>());
  TR_ASSIGN_OR_RETURN(w->world_size, r.Get<int32_t>());
  TR_ASSIGN_OR_RETURN(w->arena_bytes, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(uint32_t n, r.Get<uint32_t>());
  if (n > kMaxRegions) {
    return absl::InvalidArgumentError(
        absl::StrCat("attach message: welcome lists ", n, " regions, more than ", kMaxRegions));
  }
  w->regions.clear();
  for (uint32_t i = 0; i < n; ++i) {
    TR_ASSIGN_OR_RETURN(RegionInfo region, GetRegion(r));
    w->regions.push_back(region);
  }
  const bool sane = w->nodes >= 1 && w->ranks_per_node >= 1 && w->node_id >= 0 &&
                    w->node_id < w->nodes && w->local_rank >= 0 &&
                    w->local_rank < w->ranks_per_node &&
                    w->world_size == w->nodes * w->ranks_per_node &&
                    w->global_rank == w->node_id * w->ranks_per_node + w->local_rank;
  if (!sane) {
    return absl::InvalidArgumentError(
        absl::StrCat("attach message: inconsistent topology in welcome (node ", w->node_id, " of ",
                     w->nodes, ", local rank ", w->local_rank, " of ", w->ranks_per_node,
                     ", global rank ", w->global_rank, " of ", w->world_size, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view AttachMessageTypeName(AttachMessageType type) {
  switch (type) {
    case AttachMessageType::kHello:
      return "Hello";
    case AttachMessageType::kWelcome:
      return "Welcome";
    case AttachMessageType::kError:
      return "Error";
    case AttachMessageType::kAllocate:
      return "Allocate";
    case AttachMessageType::kAllocated:
      return "Allocated";
    case AttachMessageType::kBarrier:
      return "Barrier";
    case AttachMessageType::kBarrierDone:
      return "BarrierDone";
    case AttachMessageType::kDetach:
      return "Detach";
    case AttachMessageType::kDetached:
      return "Detached";
  }
  return "Unknown";
}

absl::Status AttachMessage::error() const {
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::InternalError(
        absl::StrCat("daemon error with invalid code ", code, ": ", message));
  }
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

AttachMessage AttachMessage::Error(uint64_t seq, const absl::Status& status) {
  AttachMessage m;
  m.type = AttachMessageType::kError;
  m.seq = seq;
  m.code = static_cast<int32_t>(status.ok() ? absl::StatusCode::kInternal : status.code());
  m.message = std::string(status.message().substr(0, kMaxString));
  return m;
}

std::string EncodeAttachMessage(const AttachMessage& m) {
  ByteWriter w;
  w.Put<uint32_t>(static_cast<uint32_t>(m.type));
  w.Put<uint64_t>(m.seq);
  switch (m.type) {
    case AttachMessageType::kHello:
      w.Put<int32_t>(m.local_rank);
      w.Put<int32_t>(m.pid);
      break;
    case AttachMessageType::kWelcome: {
      const WelcomeInfo& x = m.welcome;
      w.PutBytes(x.job_id);
      w.Put<int32_t>(x.node_id);
      w.Put<int32_t>(x.nodes);
      w.Put<int32_t>(x.local_rank);
      w.Put<int32_t>(x.ranks_per_node);
      w.Put<int32_t>(x.global_rank);
      w.Put<int32_t>(x.world_size);
      w.Put<uint64_t>(x.arena_bytes);
      w.Put<uint32_t>(static_cast<uint32_t>(x.regions.size()));
      for (const RegionInfo& r : x.regions) PutRegion(w, r);
      break;
    }
    case AttachMessageType::kError:
      w.Put<int32_t>(m.code);
      w.PutBytes(m.message);
      break;
    case AttachMessageType::kAllocate:
      w.Put<uint64_t>(m.size);
      break;
    case AttachMessageType::kAllocated:
      PutRegion(w, m.region);
      break;
    case AttachMessageType::kBarrier:
    case AttachMessageType::kBarrierDone:
    case AttachMessageType::kDetach:
    case AttachMessageType::kDetached:
      break;
  }
  return SealBlob(kAttachMagic, kAttachProtocolVersion, w.data());
}

absl::StatusOr<AttachMessage> DecodeAttachMessage(absl::string_view bytes) {
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(bytes, kAttachMagic, kAttachProtocolVersion, "attach message"));
  ByteReader r(payload, "attach message");
  AttachMessage m;
  TR_ASSIGN_OR_RETURN(uint32_t type, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(m.seq, r.Get<uint64_t>());
  m.type = static_cast<AttachMessageType>(type);
  switch (m.type) {
    case AttachMessageType::kHello: {
      TR_ASSIGN_OR_RETURN(m.local_rank, r.Get<int32_t>());
      TR_ASSIGN_OR_RETURN(m.pid, r.Get<int32_t>());
      break;
    }
    case AttachMessageType::kWelcome:
      TR_RETURN_IF_ERROR(DecodeWelcome(r, &m.welcome));
      break;
    case AttachMessageType::kError: {
      TR_ASSIGN_OR_RETURN(m.code, r.Get<int32_t>());
      TR_ASSIGN_OR_RETURN(absl::string_view text, r.GetBytes(kMaxString));
      m.message = std::string(text);
      break;
    }
    case AttachMessageType::kAllocate: {
      TR_ASSIGN_OR_RETURN(m.size, r.Get<uint64_t>());
      break;
    }
    case AttachMessageType::kAllocated: {
      TR_ASSIGN_OR_RETURN(m.region, GetRegion(r));
      break;
    }
    case AttachMessageType::kBarrier:
    case AttachMessageType::kBarrierDone:
    case AttachMessageType::kDetach:
    case AttachMessageType::kDetached:
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("attach message: unknown type ", type));
  }
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  return m;
}

}  // namespace runtime
}  // namespace tokenrail
