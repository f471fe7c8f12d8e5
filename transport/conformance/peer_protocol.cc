#include "transport/conformance/peer_protocol.h"

#include "common/bytes.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {

std::string EncodeCommand(const PeerCommand& cmd) {
  ByteWriter w;
  w.Put<uint8_t>(static_cast<uint8_t>(cmd.op));
  w.Put(cmd.region);
  w.Put(cmd.count);
  w.Put(cmd.imm);
  w.Put(cmd.fill);
  w.Put(cmd.size);
  w.Put(cmd.offset);
  w.Put(cmd.stride);
  w.Put(cmd.seed);
  w.PutBytes(cmd.key);
  return w.Release();
}

absl::StatusOr<PeerCommand> DecodeCommand(absl::string_view frame) {
  ByteReader r(frame, "peer command");
  PeerCommand cmd;
  TR_ASSIGN_OR_RETURN(uint8_t op, r.Get<uint8_t>());
  cmd.op = static_cast<PeerOp>(op);
  TR_ASSIGN_OR_RETURN(cmd.region, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(cmd.count, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(cmd.imm, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(cmd.fill, r.Get<uint8_t>());
  TR_ASSIGN_OR_RETURN(cmd.size, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(cmd.offset, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(cmd.stride, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(cmd.seed, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view key, r.GetBytes(1 << 20));
  cmd.key = std::string(key);
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  return cmd;
}

std::string EncodeReply(const absl::StatusOr<std::string>& reply) {
  ByteWriter w;
  w.Put<uint8_t>(reply.ok() ? 0 : 1);
  if (reply.ok()) {
    w.PutBytes(*reply);
  } else {
    w.Put<uint32_t>(static_cast<uint32_t>(reply.status().code()));
    w.PutBytes(reply.status().message());
  }
  return w.Release();
}

absl::StatusOr<std::string> DecodeReply(absl::string_view frame) {
  ByteReader r(frame, "peer reply");
  TR_ASSIGN_OR_RETURN(uint8_t failed, r.Get<uint8_t>());
  if (!failed) {
    TR_ASSIGN_OR_RETURN(absl::string_view payload, r.GetBytes(64 << 20));
    return std::string(payload);
  }
  TR_ASSIGN_OR_RETURN(uint32_t code, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view message, r.GetBytes(64 << 20));
  return absl::Status(static_cast<absl::StatusCode>(code), absl::StrCat("peer: ", message));
}

}  // namespace transport
}  // namespace tokenrail
