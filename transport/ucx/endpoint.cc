#include "transport/ucx/endpoint.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/ucs_status.h"
#include "transport/ucx/context.h"
#include "transport/ucx/memory.h"
#include "transport/ucx/wire.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

const char* KeyVerdictText(uint32_t verdict) {
  switch (verdict) {
    case kKeyUnknownRegion:
      return "is not registered there (deregistered, or never was)";
    case kKeyBadCookie:
      return "has a different cookie there (the key is stale or forged)";
    case kKeyBadSize:
      return "has a different size there";
  }
  return "was refused for an unknown reason";
}

// InvalidArgument unless [offset, offset + length) lies within `size` bytes.
absl::Status CheckRange(absl::string_view which, size_t offset, size_t length, size_t size) {
  if (offset > size || length > size - offset) {
    return absl::InvalidArgumentError(absl::StrCat("ucx put: ", which, " range [", offset, ", ",
                                                   offset, "+", length, ") exceeds the region of ",
                                                   size, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

UcxEndpoint::~UcxEndpoint() { ctx_->ClosePeer(peer_); }

absl::StatusOr<std::unique_ptr<RemoteRegion>> UcxEndpoint::UnpackRemoteKey(absl::string_view key) {
  TR_RETURN_IF_ERROR(peer_->error());
  TR_ASSIGN_OR_RETURN(KeyInfo info, DecodeKey(key));
  if (info.context_id != peer_->remote_id()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ucx remote key: made by context 0x", absl::Hex(info.context_id), ", not by ",
                     peer_->Describe(), " (context 0x", absl::Hex(peer_->remote_id()), ")"));
  }
  if (!peer_->KeyValidated(info.region_id, info.cookie)) {
    // One round trip: the peer confirms the region is live with this cookie
    // and size. Cached afterwards; puts are re-checked by the receiver anyway.
    TR_ASSIGN_OR_RETURN(uint64_t query, peer_->SendKeyQuery(info));
    uint32_t verdict = 0;
    TR_RETURN_IF_ERROR(ctx_->WaitFor(
        [&]() -> absl::StatusOr<bool> {
          TR_RETURN_IF_ERROR(peer_->error());
          return peer_->TakeKeyVerdict(query, &verdict);
        },
        absl::Now() + ctx_->options().connect_timeout,
        [&] { return absl::StrCat("ucx: validating a remote key with ", peer_->Describe()); }));
    if (verdict != kKeyValid) {
      return absl::InvalidArgumentError(absl::StrCat("ucx remote key: region ", info.region_id,
                                                     " of ", peer_->Describe(), " ",
                                                     KeyVerdictText(verdict)));
    }
    peer_->RememberKey(info.region_id, info.cookie);
  }

  UcpRkeyPtr rkey;
  bool rma = false;
  if (peer_->use_rma() && peer_->ep() != nullptr) {
    ucp_rkey_h raw = nullptr;
    ucs_status_t s = ucp_ep_rkey_unpack(peer_->ep(), info.rkey.data(), &raw);
    if (s != UCS_OK) {
      return absl::InvalidArgumentError(
          StatusFromUcs(s, absl::StrCat("ucx remote key: ucp_ep_rkey_unpack of region ",
                                        info.region_id, " of ", peer_->Describe()))
              .message());
    }
    rkey.reset(raw);
    rma = true;
    if (peer_->rma_needs_mapping()) {
      // Shared memory reaches only memory a shm transport can map; puts into
      // anything else would be emulated by UCP without our per-put checks.
      void* mapped = nullptr;
      rma = ucp_rkey_ptr(raw, info.address, &mapped) == UCS_OK;
    }
    TR_VLOG(2, "ucx") << "region " << info.region_id << " of " << peer_->Describe() << ": "
                      << (rma ? "RMA" : "active-message") << " puts";
  }
  return std::unique_ptr<RemoteRegion>(
      new UcxRemoteRegion(ctx_, peer_->serial(), info, std::move(rkey), rma));
}

absl::StatusOr<Ticket> UcxEndpoint::Put(const MemoryRegion& src, size_t src_offset,
                                        const RemoteRegion& dst, size_t dst_offset, size_t length,
                                        uint32_t imm) {
  TR_RETURN_IF_ERROR(peer_->error());
  const auto* s = dynamic_cast<const UcxMemoryRegion*>(&src);
  if (s == nullptr || s->context() != ctx_) {
    return absl::InvalidArgumentError(
        "ucx put: the source region was not registered with this ucx context");
  }
  const auto* d = dynamic_cast<const UcxRemoteRegion*>(&dst);
  if (d == nullptr || d->peer_serial() != peer_->serial()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ucx put: the remote region was not unpacked on this endpoint to ", peer_->Describe()));
  }
  TR_RETURN_IF_ERROR(CheckRange("source", src_offset, length, src.size()));
  TR_RETURN_IF_ERROR(CheckRange("destination", dst_offset, length, dst.size()));
  return peer_->PostPut(static_cast<const char*>(src.data()) + src_offset, length, d->target(),
                        dst_offset, imm, d->rma());
}

absl::StatusOr<bool> UcxEndpoint::IsComplete(Ticket ticket) {
  TR_ASSIGN_OR_RETURN(bool done, peer_->TicketComplete(ticket));
  if (done) return true;
  ctx_->ProgressForPoll();
  return peer_->TicketComplete(ticket);
}

absl::Status UcxEndpoint::WaitComplete(Ticket ticket, absl::Time deadline) {
  return ctx_->WaitFor([&] { return peer_->TicketComplete(ticket); }, deadline,
                       [&] {
                         return absl::StrCat("ucx: waiting for put ticket ", ticket, " to ",
                                             peer_->Describe());
                       });
}

absl::Status UcxEndpoint::Flush(absl::Time deadline) {
  return ctx_->WaitFor([&] { return peer_->AllDelivered(); }, deadline,
                       [&] { return absl::StrCat("ucx: flushing puts to ", peer_->Describe()); });
}

absl::StatusOr<size_t> UcxEndpoint::PollNotifications(Notification* out, size_t max) {
  TR_RETURN_IF_ERROR(peer_->error());
  ctx_->ProgressForPoll();
  TR_RETURN_IF_ERROR(peer_->error());
  return peer_->PopNotifications(out, max);
}

absl::StatusOr<Notification> UcxEndpoint::WaitNotification(absl::Time deadline) {
  Notification n;
  TR_RETURN_IF_ERROR(ctx_->WaitFor(
      [&]() -> absl::StatusOr<bool> {
        TR_RETURN_IF_ERROR(peer_->error());
        return peer_->PopNotifications(&n, 1) == 1;
      },
      deadline,
      [&] { return absl::StrCat("ucx: waiting for a notification from ", peer_->Describe()); }));
  return n;
}

absl::Status UcxEndpoint::SendMessage(absl::string_view message) {
  return peer_->SendMessage(message, ctx_->options().max_message_size);
}

absl::StatusOr<bool> UcxEndpoint::PollMessage(std::string* out) {
  TR_RETURN_IF_ERROR(peer_->error());
  ctx_->ProgressForPoll();
  TR_RETURN_IF_ERROR(peer_->error());
  return peer_->PopMessage(out);
}

absl::StatusOr<std::string> UcxEndpoint::WaitMessage(absl::Time deadline) {
  std::string out;
  TR_RETURN_IF_ERROR(ctx_->WaitFor(
      [&]() -> absl::StatusOr<bool> {
        TR_RETURN_IF_ERROR(peer_->error());
        return peer_->PopMessage(&out);
      },
      deadline,
      [&] { return absl::StrCat("ucx: waiting for a message from ", peer_->Describe()); }));
  return out;
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
