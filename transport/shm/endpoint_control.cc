// ShmEndpoint: the side channel (region announcements and revocations, peer
// liveness), remote keys and failure.
#include <fcntl.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/logging.h"
#include "common/status.h"
#include "transport/shm/context.h"
#include "transport/shm/endpoint.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

// How long to wait for side-channel frames that shared memory says the peer
// has sent (announcements, revocations). They are normally already in our
// socket; waiting covers only a peer whose side channel was backed up.
constexpr absl::Duration kMaxFrameWait = absl::Seconds(5);

}  // namespace

absl::Status ShmEndpoint::status() const {
  // status() must notice a dead peer even in a caller that never waits, so
  // it reads the side channel (one non-blocking syscall). Endpoints are
  // driven by one thread at a time (transport.h), so this is not a race.
  if (status_.ok()) const_cast<ShmEndpoint*>(this)->Service();
  return status_;
}

void ShmEndpoint::Fail(absl::Status status) {
  if (!status_.ok() || status.ok()) return;
  status_ = std::move(status);
  // A dead peer's socket stays readable: stop it from waking the context.
  if (ctx_ != nullptr) ctx_->Unwatch(sock_.fd());
  TR_LOG(WARNING, "shm") << "endpoint to " << peer_label_ << " failed: " << status_;
}

absl::Status ShmEndpoint::PeerError(const absl::Status& s) const {
  if (absl::IsUnavailable(s)) {
    return absl::UnavailableError(
        absl::StrCat("shm: ", peer_label_, " is gone: side channel ", s.message(),
                     " (the process exited or was killed, or it destroyed its endpoint)"));
  }
  return Annotate(s, absl::StrCat("shm: side channel to ", peer_label_));
}

void ShmEndpoint::DetachContext() {
  ctx_ = nullptr;
  Fail(absl::FailedPreconditionError(
      absl::StrCat("shm: the context was destroyed before its endpoint to ", peer_label_)));
}

void ShmEndpoint::Service() {
  if (!status_.ok()) return;
  absl::Status s = sock_.Flush();
  while (s.ok()) {
    absl::StatusOr<std::optional<Frame>> frame = sock_.Receive();
    if (!frame.ok()) {
      s = frame.status();
    } else if (!frame->has_value()) {
      break;
    } else {
      s = HandleFrame(std::move(**frame));
    }
  }
  if (!s.ok()) {
    Fail(PeerError(s));
    return;
  }
  DrainNotifications();
  DrainMessages();
}

absl::Status ShmEndpoint::HandleFrame(Frame frame) {
  switch (frame.type) {
    case FrameType::kAnnounce: {
      TR_ASSIGN_OR_RETURN(AnnounceFrame a, DecodeAnnounce(frame.payload));
      if (a.region_id < peer_watermark_) {
        return absl::DataLossError(absl::StrCat("announced region id ", a.region_id,
                                                " below the watermark ", peer_watermark_));
      }
      auto region = std::make_shared<PeerRegion>();
      region->id = a.region_id;
      region->size = a.size;
      region->cookie = a.cookie;
      // Map now and drop the fd: a mapping costs address space only, while
      // holding one fd per peer region could exhaust the fd limit.
      absl::StatusOr<Mapping> map = MapPeerFile(
          frame.fd.get(), a.size, absl::StrCat("region ", a.region_id, " of ", peer_label_));
      if (map.ok()) {
        region->map = *std::move(map);
      } else {
        region->error = map.status();
        TR_LOG(WARNING, "shm") << region->error;
      }
      peer_regions_[a.region_id] = std::move(region);
      peer_watermark_ = a.region_id + 1;
      return absl::OkStatus();
    }
    case FrameType::kRevoke: {
      TR_ASSIGN_OR_RETURN(RevokeFrame r, DecodeRevoke(frame.payload));
      auto it = peer_regions_.find(r.region_id);
      if (it != peer_regions_.end()) {
        it->second->revoked = true;
        peer_regions_.erase(it);
      }
      revocations_seen_ = std::max(revocations_seen_, r.sequence);
      return absl::OkStatus();
    }
    case FrameType::kWatermark: {
      TR_ASSIGN_OR_RETURN(WatermarkFrame w, DecodeWatermark(frame.payload));
      peer_watermark_ = std::max(peer_watermark_, w.next_region_id);
      return absl::OkStatus();
    }
    case FrameType::kWake:
      return absl::OkStatus();  // its job was to make our event fd readable
    case FrameType::kHello:
      break;
  }
  return absl::DataLossError(
      absl::StrCat("unexpected frame of type ", static_cast<uint32_t>(frame.type)));
}

absl::Status ShmEndpoint::SyncRevocations() {
  const uint64_t target = outbound_.revocations().load(std::memory_order_acquire);
  const absl::Status s = Wait(absl::Now() + kMaxFrameWait, "waiting for revocations", [&] {
    Service();
    return revocations_seen_ >= target;
  });
  if (absl::IsDeadlineExceeded(s)) {
    Fail(
        absl::DataLossError(absl::StrCat("shm: ", peer_label_, " published ", target,
                                         " region revocations but sent only ", revocations_seen_)));
    return status_;
  }
  return s;
}

absl::StatusOr<std::unique_ptr<RemoteRegion>> ShmEndpoint::UnpackRemoteKey(absl::string_view key) {
  if (!status_.ok()) return status_;
  TR_ASSIGN_OR_RETURN(KeyInfo k, UnpackKey(key));
  if (k.owner_id != peer_.context_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm remote key: made by context ", absl::Hex(k.owner_id, absl::kZeroPad16),
                     ", not by this endpoint's ", peer_label_, " (context ",
                     absl::Hex(peer_.context_id, absl::kZeroPad16), ")"));
  }
  Service();
  if (!status_.ok()) return status_;
  // The peer publishes how far it has announced its regions; an id beyond
  // that was never allocated (a forged key) and fails without waiting.
  if (k.region_id >= peer_watermark_ &&
      k.region_id < outbound_.announced().load(std::memory_order_acquire)) {
    const absl::Status s = Wait(absl::Now() + kMaxFrameWait, "waiting for a region announcement",
                                [&] { return k.region_id < peer_watermark_; });
    if (!s.ok() && !absl::IsDeadlineExceeded(s)) return s;
  }
  auto it = peer_regions_.find(k.region_id);
  if (it == peer_regions_.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shm remote key: region ", k.region_id, " is not registered at ", peer_label_,
        k.region_id < peer_watermark_ ? " (it was deregistered)" : " (never announced)"));
  }
  const PeerRegion& r = *it->second;
  if (r.cookie != k.cookie || r.size != k.size) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm remote key: region ", k.region_id, " at ", peer_label_,
                     " does not match the key (cookie or size differ: key says ", k.size,
                     " bytes, region has ", r.size, ")"));
  }
  if (!r.error.ok()) return Annotate(r.error, "shm remote key");
  return std::make_unique<ShmRemoteRegion>(serial_, it->second);
}

void ShmEndpoint::AnnounceRegion(const ShmMemoryRegion& region) {
  if (!status_.ok()) return;
  // The frame goes first, the shared-memory watermark after it (as for
  // revocations): a peer that sees the new watermark finds the frame.
  UniqueFd fd(::fcntl(region.fd(), F_DUPFD_CLOEXEC, 0));
  absl::Status s =
      fd.valid() ? absl::OkStatus() : StatusFromErrno(errno, "shm: dup of a region fd");
  if (s.ok()) {
    s = sock_.Send(FrameType::kAnnounce,
                   EncodeAnnounce(AnnounceFrame{region.id(), region.size(), region.cookie()}),
                   std::move(fd));
  }
  if (!s.ok()) {
    Fail(PeerError(s));
    return;
  }
  inbound_.announced().store(region.id() + 1, std::memory_order_release);
}

void ShmEndpoint::AnnounceWatermark(uint64_t next_region_id) {
  if (!status_.ok()) return;
  absl::Status s =
      sock_.Send(FrameType::kWatermark, EncodeWatermark(WatermarkFrame{next_region_id}));
  if (!s.ok()) {
    Fail(PeerError(s));
    return;
  }
  inbound_.announced().store(next_region_id, std::memory_order_release);
}

void ShmEndpoint::RevokeRegion(uint64_t region_id) {
  if (!status_.ok()) return;
  ++revocations_sent_;
  absl::Status s =
      sock_.Send(FrameType::kRevoke, EncodeRevoke(RevokeFrame{region_id, revocations_sent_}));
  if (!s.ok()) {
    Fail(PeerError(s));
    return;
  }
  // After the frame is on its way: a peer that sees the new count finds the
  // frame on its socket.
  inbound_.revocations().store(revocations_sent_, std::memory_order_release);
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
