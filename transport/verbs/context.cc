#include "transport/verbs/context.h"

#include <fcntl.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/ibverbs_status.h"
#include "common/logging.h"
#include "common/status.h"
#include "transport/verbs/qp.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

// Level-triggered POLLIN interest; EEXIST (already watched) is fine.
absl::Status WatchFd(int epoll_fd, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno != EEXIST) {
    return StatusFromErrno(errno, absl::StrCat("verbs: epoll_ctl(ADD, fd ", fd, ")"));
  }
  return absl::OkStatus();
}

absl::Status MakeNonBlocking(int fd, const char* what) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return StatusFromErrno(errno, absl::StrCat("verbs: making the ", what, " non-blocking"));
  }
  return absl::OkStatus();
}

constexpr char kLog[] = "verbs";
constexpr size_t kMaxFrame = 2 * kMaxWireupFrame;
// Connections that never identify themselves, and hellos no local Connect()
// ever claims, are dropped after this long.
constexpr absl::Duration kWireupIdleLimit = absl::Minutes(10);

uint64_t RandomNonZero(absl::BitGen& gen) {
  uint64_t v = 0;
  while (v == 0) v = absl::Uniform<uint64_t>(gen);
  return v;
}

}  // namespace

Capabilities MakeCapabilities(const std::vector<PortInfo>& ports, const PortInfo& selected,
                              bool gpu_direct) {
  Capabilities c;
  c.backend = "verbs";
  c.intra_node = true;  // through the NIC's loopback
  c.inter_node = true;
  c.gpu_memory = gpu_direct;
  c.native_rma = true;
  c.bandwidth_gbytes = selected.gbps / 8;
  c.latency_us = selected.link == LinkLayer::kInfiniBand ? 2.0 : 3.0;
  c.max_put_size = static_cast<size_t>(selected.max_mr_size);
  c.max_message_size = kMaxMessageSize;
  c.devices.push_back(DescribePort(selected));
  for (const PortInfo& p : ports) {
    if (p.active && !(p.device == selected.device && p.port == selected.port)) {
      c.devices.push_back(DescribePort(p));
    }
  }
  return c;
}

absl::StatusOr<Capabilities> ProbeVerbs(const TransportOptions& options) {
  TR_ASSIGN_OR_RETURN(const VerbsOptions o, ParseVerbsOptions(options.params));
  TR_ASSIGN_OR_RETURN(const std::vector<PortInfo> ports, ListPorts());
  TR_ASSIGN_OR_RETURN(const PortInfo selected, SelectPort(ports, o));
  return MakeCapabilities(ports, selected, GpuDirectAvailable());
}

absl::StatusOr<std::unique_ptr<Context>> VerbsContext::Create(const TransportOptions& options) {
  std::unique_ptr<VerbsContext> ctx(new VerbsContext());
  ctx->topts_ = options;
  TR_ASSIGN_OR_RETURN(ctx->options_, ParseVerbsOptions(options.params));
  TR_ASSIGN_OR_RETURN(const std::vector<PortInfo> ports, ListPorts());
  TR_ASSIGN_OR_RETURN(ctx->device_, OpenDevice(ctx->options_));
  Device& dev = *ctx->device_;

  // Async and completion events are drained from Progress(), never waited
  // for there; a caller sleeps on the epoll set (EventFd) instead.
  TR_RETURN_IF_ERROR(MakeNonBlocking(dev.context->async_fd, "async event fd"));
  dev.channel.reset(ibv_create_comp_channel(dev.context.get()));
  if (dev.channel == nullptr) {
    return StatusFromIbv(-1, absl::StrCat("verbs: ibv_create_comp_channel on ", dev.where()));
  }
  TR_RETURN_IF_ERROR(MakeNonBlocking(dev.channel->fd, "completion channel"));
  TR_ASSIGN_OR_RETURN(ctx->listener_,
                      WireupListener::Listen(ctx->options_.listen_host, ctx->options_.listen_port));
  ctx->epoll_fd_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!ctx->epoll_fd_.valid()) return StatusFromErrno(errno, "verbs: epoll_create1");
  for (int fd : {dev.channel->fd, dev.context->async_fd, ctx->listener_.fd()}) {
    TR_RETURN_IF_ERROR(WatchFd(ctx->epoll_fd_.get(), fd));
  }
  ctx->id_ = RandomNonZero(ctx->gen_);
  ctx->caps_ = MakeCapabilities(ports, dev.port, GpuDirectAvailable());

  AddressInfo a;
  a.context_id = ctx->id_;
  a.name = options.name;
  a.ipv4 = ctx->listener_.ipv4();
  a.tcp_port = ctx->listener_.port();
  a.device = dev.port.device;
  a.ib_port = static_cast<uint8_t>(dev.port.port);
  a.link_layer = dev.port.link;
  a.lid = dev.port.lid;
  a.gid = dev.gid;
  a.mtu = static_cast<uint16_t>(dev.mtu);
  ctx->address_ = PackAddress(a);
  TR_LOG(INFO, kLog) << "context '" << options.name << "' on " << DescribePort(dev.port)
                     << ", wireup " << ctx->options_.listen_host << ":" << a.tcp_port;
  return std::unique_ptr<Context>(std::move(ctx));
}

VerbsContext::~VerbsContext() {
  if (!endpoints_.list().empty() || regions_.size() != 0) {
    TR_LOG(ERROR, kLog) << "context '" << topts_.name << "' destroyed with "
                        << endpoints_.list().size() << " endpoints and " << regions_.size()
                        << " regions still alive (they must be destroyed first)";
  }
  // Members go in reverse order: parked connections, listener, then the
  // device (PD, then device context).
}

WireupFrame VerbsContext::Frame(WireupType type, uint64_t to, std::string body) const {
  WireupFrame f;
  f.type = type;
  f.from_context = id_;
  f.to_context = to;
  f.from_name = topts_.name;
  f.body = std::move(body);
  return f;
}

absl::StatusOr<std::unique_ptr<Endpoint>> VerbsContext::Connect(absl::string_view peer_address,
                                                                absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) deadline = absl::Now() + topts_.connect_timeout;
  TR_RETURN_IF_ERROR(device_status_);
  TR_ASSIGN_OR_RETURN(const AddressInfo peer, UnpackAddress(peer_address));
  if (peer.context_id == id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("verbs: context '", topts_.name, "' cannot connect to its own address"));
  }
  if (peer.link_layer != device_->port.link) {
    return absl::InvalidArgumentError(
        absl::StrCat("verbs: peer '", peer.name, "' is on ", LinkLayerName(peer.link_layer), " (",
                     peer.device, ":", peer.ib_port, "), this context on ",
                     LinkLayerName(device_->port.link), " (", device_->where(), ")"));
  }
  EndpointEnv env;
  env.device = device_.get();
  env.options = &options_;
  env.regions = &regions_;
  env.endpoints = &endpoints_;
  env.context_id = id_;
  env.rpc_timeout = topts_.connect_timeout;
  env.drain_async_events = [this] { DrainAsyncEvents(); };
  TR_ASSIGN_OR_RETURN(std::unique_ptr<VerbsEndpoint> ep, VerbsEndpoint::Create(env, peer));

  absl::StatusOr<WireupConn> conn =
      id_ < peer.context_id ? DialSide(*ep, peer, deadline) : AcceptSide(*ep, peer, deadline);
  if (!conn.ok()) {
    return Annotate(conn.status(), absl::StrCat("verbs: connecting to peer '", peer.name, "'"));
  }
  ep->AttachWireup(*std::move(conn));
  TR_LOG(INFO, kLog) << "connected '" << topts_.name << "' -> '" << peer.name << "' (QP "
                     << ep->qp_num() << ")";
  return std::unique_ptr<Endpoint>(std::move(ep));
}

absl::StatusOr<WireupConn> VerbsContext::DialSide(VerbsEndpoint& ep, const AddressInfo& peer,
                                                  absl::Time deadline) {
  TR_ASSIGN_OR_RETURN(WireupConn conn, WireupConn::Dial(peer.ipv4, peer.tcp_port, deadline));
  TR_RETURN_IF_ERROR(conn.SendFrame(
      PackWireupFrame(Frame(WireupType::kHello, peer.context_id, PackQpInfo(ep.LocalQpInfo()))),
      deadline));
  TR_ASSIGN_OR_RETURN(const std::string raw, conn.RecvFrame(kMaxFrame, deadline));
  TR_ASSIGN_OR_RETURN(const WireupFrame reply, UnpackWireupFrame(raw));
  if (reply.from_context != peer.context_id || reply.to_context != id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("wireup reply from context ", reply.from_context, " ('", reply.from_name,
                     "') to ", reply.to_context, ", expected ", peer.context_id, " to ", id_));
  }
  if (reply.type == WireupType::kReject) {
    return absl::FailedPreconditionError(absl::StrCat("peer refused the QP: ", reply.body));
  }
  if (reply.type != WireupType::kAccept) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected wireup frame type ", static_cast<int>(reply.type)));
  }
  TR_ASSIGN_OR_RETURN(const QpInfo remote, UnpackQpInfo(reply.body));
  TR_RETURN_IF_ERROR(ep.Establish(remote));
  TR_RETURN_IF_ERROR(
      conn.SendFrame(PackWireupFrame(Frame(WireupType::kReady, peer.context_id, "")), deadline));
  return conn;
}

absl::StatusOr<WireupConn> VerbsContext::AcceptSide(VerbsEndpoint& ep, const AddressInfo& peer,
                                                    absl::Time deadline) {
  Backoff backoff;
  while (true) {
    AcceptWireup();
    if (parked_.count(peer.context_id)) break;
    // Keep established endpoints alive (credits, key queries) while waiting.
    for (VerbsEndpoint* e : endpoints_.list()) (void)e->Progress();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("timed out waiting for the peer to dial ",
                                                      options_.listen_host, ":", listener_.port(),
                                                      " (did it call Connect with this address?)"));
    }
    backoff.Pause();
  }
  auto it = parked_.find(peer.context_id);
  WireupConn conn = std::move(it->second.conn);
  const WireupFrame hello = std::move(it->second.hello);
  parked_.erase(it);

  absl::StatusOr<QpInfo> remote = UnpackQpInfo(hello.body);
  absl::Status s = remote.ok() ? ep.Establish(*remote) : remote.status();
  if (!s.ok()) {
    // Best effort: the dialer gets the reason instead of a bare EOF.
    (void)conn.SendFrame(
        PackWireupFrame(Frame(WireupType::kReject, peer.context_id, std::string(s.message()))),
        deadline);
    return s;
  }
  TR_RETURN_IF_ERROR(conn.SendFrame(
      PackWireupFrame(Frame(WireupType::kAccept, peer.context_id, PackQpInfo(ep.LocalQpInfo()))),
      deadline));
  TR_ASSIGN_OR_RETURN(const std::string raw, conn.RecvFrame(kMaxFrame, deadline));
  TR_ASSIGN_OR_RETURN(const WireupFrame ready, UnpackWireupFrame(raw));
  if (ready.type != WireupType::kReady || ready.from_context != peer.context_id ||
      ready.to_context != id_) {
    return absl::InvalidArgumentError(absl::StrCat("expected the dialer's ready frame, got type ",
                                                   static_cast<int>(ready.type), " from context ",
                                                   ready.from_context));
  }
  return conn;
}

void VerbsContext::AcceptWireup() {
  while (true) {
    absl::StatusOr<std::optional<WireupConn>> c = listener_.TryAccept();
    if (!c.ok()) {
      TR_LOG(WARNING, kLog) << c.status().message();
      break;
    }
    if (!c->has_value()) break;
    unidentified_.push_back({std::move(**c), absl::Now()});
  }
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < unidentified_.size();) {
    Unidentified& u = unidentified_[i];
    bool drop = now - u.since > kWireupIdleLimit;
    absl::StatusOr<std::optional<std::string>> raw = u.conn.TryRecvFrame(kMaxFrame);
    if (!raw.ok()) {
      TR_VLOG(1, kLog) << "dropping wireup connection: " << raw.status().message();
      drop = true;
    } else if (raw->has_value()) {
      drop = true;
      absl::StatusOr<WireupFrame> hello = UnpackWireupFrame(**raw);
      if (!hello.ok() || hello->type != WireupType::kHello) {
        TR_LOG(WARNING, kLog) << "ignoring a malformed wireup hello: "
                              << (hello.ok() ? "not a hello" : hello.status().message());
      } else if (hello->to_context != id_) {
        (void)u.conn.SendFrame(
            PackWireupFrame(
                Frame(WireupType::kReject, hello->from_context,
                      absl::StrCat("this listener belongs to context ", id_, " ('", topts_.name,
                                   "'), not ", hello->to_context, " (stale address?)"))),
            now + absl::Seconds(1));
      } else {
        // A newer hello from the same peer (it retried) replaces the older.
        const uint64_t from = hello->from_context;
        parked_.insert_or_assign(from, Parked{std::move(u.conn), *std::move(hello), now});
      }
    }
    if (drop) {
      unidentified_.erase(unidentified_.begin() + static_cast<ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  for (auto it = parked_.begin(); it != parked_.end();) {
    it = now - it->second.since > kWireupIdleLimit ? parked_.erase(it) : std::next(it);
  }
}

void VerbsContext::DrainAsyncEvents() {
  ibv_async_event ev;
  while (ibv_get_async_event(device_->context.get(), &ev) == 0) {
    const char* what = ibv_event_type_str(ev.event_type);
    switch (ev.event_type) {
      case IBV_EVENT_QP_FATAL:
      case IBV_EVENT_QP_REQ_ERR:
      case IBV_EVENT_QP_ACCESS_ERR:
      case IBV_EVENT_PATH_MIG_ERR:
        for (VerbsEndpoint* e : endpoints_.list()) {
          if (e->qp_num() == ev.element.qp->qp_num) {
            e->Fail(ev.event_type == IBV_EVENT_QP_ACCESS_ERR
                        ? absl::InvalidArgumentError(absl::StrCat("async event: ", what))
                        : absl::UnavailableError(absl::StrCat("async event: ", what)));
          }
        }
        break;
      case IBV_EVENT_CQ_ERR:
        for (VerbsEndpoint* e : endpoints_.list()) {
          if (e->cq() == ev.element.cq) {
            e->Fail(absl::InternalError(absl::StrCat("async event: ", what, " (CQ overrun)")));
          }
        }
        break;
      case IBV_EVENT_DEVICE_FATAL:
        device_status_ = absl::UnavailableError(
            absl::StrCat("verbs: ", device_->where(), ": ", what, " (device must be reopened)"));
        for (VerbsEndpoint* e : endpoints_.list()) e->Fail(device_status_);
        break;
      case IBV_EVENT_PORT_ERR:
        TR_LOG(WARNING, kLog) << device_->where() << ": " << what
                              << " (connections fail once their retries run out)";
        break;
      default:
        TR_VLOG(1, kLog) << device_->where() << ": async event " << what;
        break;
    }
    ibv_ack_async_event(&ev);
  }
}

void VerbsContext::DrainCqEvents() {
  ibv_cq* cq = nullptr;
  void* cq_context = nullptr;
  // Each event only says "look at this CQ"; every Progress polls all CQs.
  // Acked at once: ibv_destroy_cq waits for the events it handed out.
  while (ibv_get_cq_event(device_->channel.get(), &cq, &cq_context) == 0) {
    ibv_ack_cq_events(cq, 1);
  }
}

absl::StatusOr<bool> VerbsContext::ArmEventFd() {
  TR_RETURN_IF_ERROR(Progress());
  uint64_t seen = 0;
  for (VerbsEndpoint* e : endpoints_.list()) {
    if (e->HasDeliveries()) return false;
    seen += e->completions_seen();
    // Liveness sockets: EOF wakes a sleeper when the peer dies. Re-added
    // each time (EEXIST is cheap): a closed fd leaves the set by itself and
    // its number may come back for another endpoint.
    if (e->wireup_fd() >= 0) TR_RETURN_IF_ERROR(WatchFd(epoll_fd_.get(), e->wireup_fd()));
    // A failed endpoint reports its error on its next call.
    if (!e->RequestCqEvent().ok()) return false;
  }
  // Completions that landed before the request raise no event: look again.
  uint64_t after = 0;
  for (VerbsEndpoint* e : endpoints_.list()) {
    (void)e->Progress();
    if (e->HasDeliveries()) return false;
    after += e->completions_seen();
  }
  return after == seen;
}

absl::Status VerbsContext::Progress() {
  TR_RETURN_IF_ERROR(device_status_);
  AcceptWireup();
  DrainAsyncEvents();
  DrainCqEvents();
  // Endpoint errors are sticky in each endpoint and reported by its calls.
  for (VerbsEndpoint* e : endpoints_.list()) (void)e->Progress();
  return device_status_;
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> VerbsContext::RegisterMemory(void* data, size_t size,
                                                                           MemoryKind kind) {
  TR_RETURN_IF_ERROR(device_status_);
  TR_ASSIGN_OR_RETURN(
      std::unique_ptr<VerbsMemoryRegion> r,
      VerbsMemoryRegion::Register(*device_, &regions_, id_, next_region_++, RandomNonZero(gen_),
                                  data, size, kind, MappedBuffer()));
  return std::unique_ptr<MemoryRegion>(std::move(r));
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> VerbsContext::AllocateMemory(size_t size,
                                                                           MemoryKind kind) {
  TR_RETURN_IF_ERROR(device_status_);
  if (kind == MemoryKind::kCuda) {
    return absl::UnimplementedError(
        "verbs: AllocateMemory(kCuda) is not supported (the backend does not link CUDA); "
        "register a cudaMalloc'd buffer with RegisterMemory instead (needs nvidia_peermem)");
  }
  TR_ASSIGN_OR_RETURN(MappedBuffer buf, MappedBuffer::Create(size));
  char* data = buf.data();
  TR_ASSIGN_OR_RETURN(
      std::unique_ptr<VerbsMemoryRegion> r,
      VerbsMemoryRegion::Register(*device_, &regions_, id_, next_region_++, RandomNonZero(gen_),
                                  data, size, kind, std::move(buf)));
  return std::unique_ptr<MemoryRegion>(std::move(r));
}

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
