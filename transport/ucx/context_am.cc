// UcxContext: active-message dispatch. Every message names its sender's
// context id in the header; this maps it to the Peer (creating one when a
// hello arrives before the local Connect call) and hands it over. Runs inside
// ucp_worker_progress.
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "transport/ucx/context.h"
#include "transport/ucx/wire.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

constexpr size_t kMaxHelloName = 1024;

// Copies `count` entries out of a possibly unaligned payload, if it holds
// exactly that many.
template <typename T>
bool ReadEntries(const void* data, size_t length, size_t count, std::vector<T>* out) {
  if (length != count * sizeof(T) || (count > 0 && data == nullptr)) return false;
  out->resize(count);
  if (count > 0) std::memcpy(out->data(), data, length);
  return true;
}

}  // namespace

ucs_status_t UcxContext::HandleAm(uint16_t id, const void* header, size_t header_length, void* data,
                                  size_t length, const ucp_am_recv_param_t* param) {
  const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  // Refusing a rendezvous completes the sender's request with this status.
  const ucs_status_t drop = rndv ? UCS_ERR_CANCELED : UCS_OK;
  const uint64_t sender = SenderId(header, header_length);
  auto it = peers_.find(sender);
  Peer* peer = it == peers_.end() ? nullptr : it->second.get();

  if (id == kAmHello) {
    HelloHeader h;
    if (rndv || !ReadHeader(header, header_length, &h) || h.version != kWireVersion ||
        sender == 0) {
      TR_VLOG(1, "ucx") << "ignoring malformed hello (" << header_length << " header bytes)";
      return drop;
    }
    const absl::string_view name(static_cast<const char*>(data), std::min(length, kMaxHelloName));
    if (peer != nullptr && peer->bound()) {
      // Our endpoint to this context exists: a healthy one already has its
      // hello; a failed one waits for its owner to destroy it, and the hello
      // belongs to the next Connect.
      if (!peer->error().ok()) pending_hellos_[sender] = std::string(name);
      return UCS_OK;
    }
    if (peer != nullptr && !peer->error().ok()) {
      RetirePeer(peer);
      peer = nullptr;
    }
    if (peer == nullptr) {
      // The peer connected before our Connect call: keep what it sends until
      // Connect binds this state to an Endpoint.
      peer = NewPeer(sender);
      closed_ids_.erase(sender);
    }
    peer->OnHello(name);
    return UCS_OK;
  }

  if (peer == nullptr || !peer->error().ok()) {
    TR_VLOG(2, "ucx") << "dropping active message " << id << " from "
                      << (closed_ids_.count(sender) ? "closed" : "unknown or failed")
                      << " context 0x" << std::hex << sender;
    return drop;
  }
  if (rndv && id != kAmPut) {
    peer->ProtocolError(absl::StrCat("rendezvous control message ", id));
    return drop;
  }

  switch (id) {
    case kAmPut: {
      PutHeader h;
      if (!ReadHeader(header, header_length, &h)) break;
      return peer->OnPut(h, data, length, param);
    }
    case kAmNotify: {
      NotifyHeader h;
      std::vector<NotifyEntry> entries;
      if (!ReadHeader(header, header_length, &h) || !ReadEntries(data, length, h.count, &entries)) {
        break;
      }
      peer->OnNotify(entries.data(), entries.size());
      return UCS_OK;
    }
    case kAmAckReq: {
      AckReqHeader h;
      if (!ReadHeader(header, header_length, &h)) break;
      peer->OnAckReq(h.seq);
      return UCS_OK;
    }
    case kAmAck: {
      AckHeader h;
      std::vector<RejectEntry> rejects;
      if (!ReadHeader(header, header_length, &h) ||
          !ReadEntries(data, length, h.reject_count, &rejects)) {
        break;
      }
      peer->OnAck(h, rejects.data(), rejects.size());
      return UCS_OK;
    }
    case kAmMessage: {
      MessageHeader h;
      if (!ReadHeader(header, header_length, &h)) break;
      peer->OnMessage(h.seq, absl::string_view(static_cast<const char*>(data), length));
      return UCS_OK;
    }
    case kAmKeyQuery: {
      KeyQueryHeader h;
      if (!ReadHeader(header, header_length, &h)) break;
      peer->OnKeyQuery(h);
      return UCS_OK;
    }
    case kAmKeyReply: {
      KeyReplyHeader h;
      if (!ReadHeader(header, header_length, &h)) break;
      peer->OnKeyReply(h);
      return UCS_OK;
    }
    case kAmBye: {
      ByeHeader h;
      if (!ReadHeader(header, header_length, &h)) break;
      peer->OnBye();
      return UCS_OK;
    }
    default:
      break;
  }
  peer->ProtocolError(absl::StrCat("malformed active message ", id, " (", header_length,
                                   " header bytes, ", length, " data bytes)"));
  return drop;
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
