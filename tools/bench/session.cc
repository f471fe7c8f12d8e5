#include "tools/bench/session.h"

#include <poll.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/errno_status.h"
#include "common/status.h"
#include "transport/registry.h"

namespace tokenrail {
namespace bench {
namespace {

constexpr uint32_t kResultMagic = 0x52425254;  // "TRBR"
constexpr uint32_t kStatusMagic = 0x53425254;  // "TRBS"
constexpr uint16_t kVersion = 1;
constexpr size_t kMaxMessage = 64 << 10;

const char* FrameName(Frame f) {
  switch (f) {
    case Frame::kPlan:
      return "plan";
    case Frame::kHello:
      return "hello";
    case Frame::kAddress:
      return "address";
    case Frame::kKey:
      return "key";
    case Frame::kBarrier:
      return "barrier";
    case Frame::kResult:
      return "result";
    case Frame::kDone:
      return "done";
    case Frame::kBye:
      return "bye";
  }
  return "unknown";
}

}  // namespace

std::string PackStatus(const absl::Status& status) {
  ByteWriter w;
  w.Put<int32_t>(static_cast<int32_t>(status.code()));
  w.PutBytes(status.message().substr(0, kMaxMessage));
  return SealBlob(kStatusMagic, kVersion, w.data());
}

absl::StatusOr<absl::Status> UnpackStatus(absl::string_view blob) {
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kStatusMagic, kVersion, "peer status"));
  ByteReader r(payload, "peer status");
  TR_ASSIGN_OR_RETURN(int32_t code, r.Get<int32_t>());
  TR_ASSIGN_OR_RETURN(absl::string_view message, r.GetBytes(kMaxMessage));
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (code < 0 || code > static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::InvalidArgumentError(absl::StrCat("peer status: code ", code));
  }
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

std::string PackSideResult(const SideResult& r) {
  ByteWriter w;
  w.PutBytes(PackStatus(r.verify));
  w.Put<uint64_t>(r.received);
  w.Put<uint64_t>(r.full_checks);
  w.Put<int64_t>(r.send_ns);
  return SealBlob(kResultMagic, kVersion, w.data());
}

absl::StatusOr<SideResult> UnpackSideResult(absl::string_view blob) {
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kResultMagic, kVersion, "peer test result"));
  ByteReader r(payload, "peer test result");
  SideResult out;
  TR_ASSIGN_OR_RETURN(absl::string_view status, r.GetBytes(kMaxMessage + 64));
  TR_ASSIGN_OR_RETURN(out.verify, UnpackStatus(status));
  TR_ASSIGN_OR_RETURN(out.received, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(out.full_checks, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(out.send_ns, r.Get<int64_t>());
  if (out.send_ns < 0) {
    return absl::InvalidArgumentError(absl::StrCat("peer test result: send time ", out.send_ns));
  }
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  return out;
}

Session::~Session() {
  peer_target_.reset();
  endpoint_.reset();
  target_.reset();
  source_.reset();
  context_.reset();
}

absl::Status Session::Send(Frame type, absl::string_view body) {
  std::string frame(1, static_cast<char>(type));
  frame.append(body.data(), body.size());
  return Annotate(oob_->Send(frame), absl::StrCat("sending ", FrameName(type)));
}

absl::StatusOr<std::pair<Frame, std::string>> Session::RecvAny(absl::string_view waiting_for) {
  const absl::Time deadline = absl::Now() + timeout_;
  // Wait for the frame in short polls, progressing the transport between
  // them: the peer may need this side's answers to reach its next frame.
  while (true) {
    pollfd p{oob_->fd(), POLLIN, 0};
    const int rc = ::poll(&p, 1, context_ ? 1 : 50);
    if (rc < 0 && errno != EINTR) return StatusFromErrno(errno, "bench: poll on OOB channel");
    if (rc > 0) break;
    if (context_) TR_RETURN_IF_ERROR(context_->Progress());
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "bench: no ", waiting_for, " from the peer within ", absl::FormatDuration(timeout_)));
    }
  }
  absl::StatusOr<std::string> frame = oob_->Recv(deadline);
  if (!frame.ok()) {
    return Annotate(frame.status(), absl::StrCat("waiting for ", waiting_for, " from the peer"));
  }
  if (frame->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bench protocol: empty frame while waiting for ", waiting_for));
  }
  const Frame type = static_cast<Frame>((*frame)[0]);
  return std::make_pair(type, frame->substr(1));
}

absl::StatusOr<std::string> Session::Recv(Frame type) {
  const std::string what = absl::StrCat("'", FrameName(type), "'");
  TR_ASSIGN_OR_RETURN(auto frame, RecvAny(what));
  if (frame.first == Frame::kBye && type != Frame::kBye) {
    return absl::AbortedError(absl::StrCat("the peer ended the run while this side waited for ",
                                           what, " (see the peer's error)"));
  }
  if (frame.first != type) {
    return absl::InvalidArgumentError(absl::StrCat("bench protocol: expected ", what,
                                                   " from the peer, got '", FrameName(frame.first),
                                                   "' (", frame.second.size(), " bytes)"));
  }
  return std::move(frame.second);
}

absl::Status Session::Barrier() {
  TR_RETURN_IF_ERROR(Send(Frame::kBarrier, ""));
  return Recv(Frame::kBarrier).status();
}

absl::Status Session::CreateContext(const Plan& plan, const std::string& name,
                                    const std::map<std::string, std::string>& extra_params) {
  transport::TransportOptions options;
  options.name = name;
  options.connect_timeout = timeout_;
  options.params = plan.params;
  for (const auto& [k, v] : extra_params) options.params[k] = v;
  TR_ASSIGN_OR_RETURN(context_, transport::CreateContext(plan.backend, options));
  return absl::OkStatus();
}

absl::Status Session::AllocateRegions(uint64_t bytes) {
  TR_ASSIGN_OR_RETURN(source_, context_->AllocateMemory(bytes, transport::MemoryKind::kHost));
  TR_ASSIGN_OR_RETURN(target_, context_->AllocateMemory(bytes, transport::MemoryKind::kHost));
  // Fault every page in now, not inside the first timed iterations.
  std::memset(source_->data(), 0, bytes);
  std::memset(target_->data(), 0, bytes);
  return absl::OkStatus();
}

absl::Status Session::Connect(absl::string_view peer_address) {
  TR_ASSIGN_OR_RETURN(endpoint_, context_->Connect(peer_address, absl::Now() + timeout_));
  return absl::OkStatus();
}

absl::Status Session::ExchangeKeys() {
  TR_ASSIGN_OR_RETURN(std::string key, target_->PackRemoteKey());
  TR_RETURN_IF_ERROR(Send(Frame::kKey, key));
  TR_ASSIGN_OR_RETURN(std::string peer_key, Recv(Frame::kKey));
  TR_ASSIGN_OR_RETURN(peer_target_, endpoint_->UnpackRemoteKey(peer_key));
  if (peer_target_->size() < target_->size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "peer's target region has ", peer_target_->size(), " bytes, need ", target_->size()));
  }
  return absl::OkStatus();
}

}  // namespace bench
}  // namespace tokenrail
