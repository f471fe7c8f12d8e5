// The far side of the transport conformance suite: a separate process that
// creates a context of the backend under test, connects to the test process
// and executes PeerCommands received over the OOB socket (--oob_fd).
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/bytes.h"
#include "common/init.h"
#include "common/logging.h"
#include "common/status.h"
#include "transport/conformance/pattern.h"
#include "transport/conformance/peer_protocol.h"
#include "transport/oob.h"
#include "transport/registry.h"

ABSL_FLAG(std::string, backend, "", "Transport backend under test.");
ABSL_FLAG(std::string, params, "", "Backend params as k=v,k=v.");
ABSL_FLAG(int, oob_fd, -1, "Connected socket to the test process.");

namespace tokenrail {
namespace transport {
namespace {

constexpr absl::Duration kOpTimeout = absl::Seconds(120);

absl::Time Deadline() { return absl::Now() + kOpTimeout; }

class Peer {
 public:
  Peer(std::unique_ptr<Context> ctx, OobChannel oob) : ctx_(std::move(ctx)), oob_(std::move(oob)) {}

  absl::Status Run() {
    TR_RETURN_IF_ERROR(oob_.Send(EncodeReply(ctx_->address())));
    TR_ASSIGN_OR_RETURN(std::string test_address, oob_.Recv(Deadline()));
    absl::StatusOr<std::unique_ptr<Endpoint>> ep = ctx_->Connect(test_address, Deadline());
    if (ep.ok()) ep_ = std::move(*ep);
    TR_RETURN_IF_ERROR(
        oob_.Send(EncodeReply(ep.ok() ? absl::StatusOr<std::string>("connected") : ep.status())));
    TR_RETURN_IF_ERROR(ep.status());
    while (true) {
      TR_ASSIGN_OR_RETURN(std::string frame, NextCommand());
      TR_ASSIGN_OR_RETURN(PeerCommand cmd, DecodeCommand(frame));
      if (cmd.op == PeerOp::kSink) {
        TR_RETURN_IF_ERROR(oob_.Send(EncodeReply(std::string("sinking"))));
        return Sink();
      }
      TR_RETURN_IF_ERROR(oob_.Send(EncodeReply(Execute(cmd))));
    }
  }

 private:
  // Waits for the next command, progressing the context meanwhile.
  absl::StatusOr<std::string> NextCommand() {
    for (int idle = 0;; ++idle) {
      pollfd p{oob_.fd(), POLLIN, 0};
      if (::poll(&p, 1, idle < 2000 ? 0 : 1) > 0) return oob_.Recv(Deadline());
      ctx_->Progress().IgnoreError();
    }
  }

  absl::StatusOr<MemoryRegion*> Region(uint32_t index) {
    if (index >= regions_.size() || regions_[index] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("no region ", index));
    }
    return regions_[index].get();
  }

  // Checks one received put: notification, data, and the guard bytes around it.
  absl::Status VerifyPut(MemoryRegion* region, uint32_t want_imm, uint64_t len, uint64_t offset,
                         uint64_t seed) {
    TR_ASSIGN_OR_RETURN(Notification n, ep_->WaitNotification(Deadline()));
    if (n.imm != want_imm || n.length != len) {
      return absl::InternalError(absl::StrCat("notification {imm ", n.imm, ", length ", n.length,
                                              "}, want {imm ", want_imm, ", length ", len, "}"));
    }
    uint8_t* base = static_cast<uint8_t*>(region->data());
    const size_t bad = FirstPatternMismatch(base + offset, len, seed);
    if (bad != len) {
      return absl::InternalError(
          absl::StrCat("put of ", len, " bytes at offset ", offset, ": wrong byte at +", bad));
    }
    return absl::OkStatus();
  }

  absl::Status CheckGuards(uint32_t index, uint64_t offset, uint64_t len) {
    MemoryRegion* region = regions_[index].get();
    const uint8_t* base = static_cast<const uint8_t*>(region->data());
    const uint8_t fill = fills_[index];
    const size_t lo = offset > kGuardBytes ? offset - kGuardBytes : 0;
    const size_t hi = std::min<size_t>(region->size(), offset + len + kGuardBytes);
    if (FirstByteNot(base + lo, offset - lo, fill) != offset - lo ||
        FirstByteNot(base + offset + len, hi - offset - len, fill) != hi - offset - len) {
      return absl::InternalError(
          absl::StrCat("bytes next to [", offset, ", +", len, ") were overwritten"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Execute(const PeerCommand& cmd) {
    switch (cmd.op) {
      case PeerOp::kAlloc: {
        TR_ASSIGN_OR_RETURN(std::unique_ptr<MemoryRegion> region,
                            ctx_->AllocateMemory(cmd.size, MemoryKind::kHost));
        std::memset(region->data(), cmd.fill, region->size());
        TR_ASSIGN_OR_RETURN(std::string key, region->PackRemoteKey());
        regions_.push_back(std::move(region));
        fills_.push_back(cmd.fill);
        ByteWriter w;
        w.Put<uint32_t>(static_cast<uint32_t>(regions_.size() - 1));
        w.PutBytes(key);
        return w.Release();
      }
      case PeerOp::kExpectPut: {
        TR_ASSIGN_OR_RETURN(MemoryRegion * region, Region(cmd.region));
        TR_RETURN_IF_ERROR(VerifyPut(region, cmd.imm, cmd.size, cmd.offset, cmd.seed));
        TR_RETURN_IF_ERROR(CheckGuards(cmd.region, cmd.offset, cmd.size));
        std::memset(static_cast<uint8_t*>(region->data()) + cmd.offset, fills_[cmd.region],
                    cmd.size);
        return std::string("ok");
      }
      case PeerOp::kExpectMany: {
        TR_ASSIGN_OR_RETURN(MemoryRegion * region, Region(cmd.region));
        for (uint32_t i = 0; i < cmd.count; ++i) {
          TR_RETURN_IF_ERROR(Annotate(VerifyPut(region, i, cmd.size, i * cmd.stride, cmd.seed + i),
                                      absl::StrCat("put ", i, " of ", cmd.count)));
        }
        std::memset(region->data(), fills_[cmd.region], region->size());
        return std::string("ok");
      }
      case PeerOp::kCheckFill: {
        TR_ASSIGN_OR_RETURN(MemoryRegion * region, Region(cmd.region));
        const size_t bad =
            FirstByteNot(static_cast<const uint8_t*>(region->data()), region->size(), cmd.fill);
        if (bad != region->size()) {
          return absl::InternalError(
              absl::StrCat("region ", cmd.region, " byte ", bad, " was modified"));
        }
        return std::string("ok");
      }
      case PeerOp::kDeregister: {
        TR_RETURN_IF_ERROR(Region(cmd.region).status());
        regions_[cmd.region].reset();
        return std::string("ok");
      }
      case PeerOp::kEchoMessages: {
        for (uint32_t i = 0; i < cmd.count; ++i) {
          TR_ASSIGN_OR_RETURN(std::string msg, ep_->WaitMessage(Deadline()));
          TR_RETURN_IF_ERROR(ep_->SendMessage(msg));
        }
        return std::string("ok");
      }
      case PeerOp::kPutMany: {
        TR_ASSIGN_OR_RETURN(std::unique_ptr<RemoteRegion> dst, ep_->UnpackRemoteKey(cmd.key));
        std::vector<uint8_t> src(static_cast<size_t>(cmd.count) * cmd.size);
        TR_ASSIGN_OR_RETURN(std::unique_ptr<MemoryRegion> src_region,
                            ctx_->RegisterMemory(src.data(), src.size(), MemoryKind::kHost));
        for (uint32_t i = 0; i < cmd.count; ++i) {
          FillPattern(src.data() + i * cmd.size, cmd.size, cmd.seed + i);
          TR_RETURN_IF_ERROR(
              ep_->Put(*src_region, i * cmd.size, *dst, i * cmd.stride, cmd.size, i).status());
        }
        TR_RETURN_IF_ERROR(ep_->Flush(Deadline()));
        return std::string("ok");
      }
      case PeerOp::kSink:
        break;
    }
    return absl::InvalidArgumentError(absl::StrCat("unknown op ", static_cast<int>(cmd.op)));
  }

  // Consumes notifications until the test process goes away or kills us.
  absl::Status Sink() {
    Notification n[64];
    while (true) {
      ctx_->Progress().IgnoreError();
      absl::StatusOr<size_t> got = ep_->PollNotifications(n, 64);
      if (!got.ok()) return got.status();
      pollfd p{oob_.fd(), POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) {
        char c;
        if (::recv(oob_.fd(), &c, 1, MSG_DONTWAIT) == 0) return absl::OkStatus();
      }
    }
  }

  std::unique_ptr<Context> ctx_;
  OobChannel oob_;
  std::unique_ptr<Endpoint> ep_;
  std::vector<std::unique_ptr<MemoryRegion>> regions_;
  std::vector<uint8_t> fills_;
};

int Main(int argc, char** argv) {
  InitMain(argc, argv, "conformance_peer: far side of the transport conformance suite");
  OobChannel oob{UniqueFd(absl::GetFlag(FLAGS_oob_fd))};
  TransportOptions options;
  options.name = "peer";
  for (absl::string_view kv :
       absl::StrSplit(absl::GetFlag(FLAGS_params), ',', absl::SkipWhitespace())) {
    std::vector<std::string> parts = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    options.params[parts[0]] = parts.size() > 1 ? parts[1] : "";
  }
  absl::StatusOr<std::unique_ptr<Context>> ctx =
      CreateContext(absl::GetFlag(FLAGS_backend), options);
  if (!ctx.ok()) {
    oob.Send(EncodeReply(ctx.status())).IgnoreError();
    return 1;
  }
  absl::Status s = Peer(std::move(*ctx), std::move(oob)).Run();
  if (!s.ok() && !absl::IsUnavailable(s)) {
    TR_LOG(ERROR, "conformance") << "peer stopped: " << s;
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace transport
}  // namespace tokenrail

int main(int argc, char** argv) { return tokenrail::transport::Main(argc, argv); }
