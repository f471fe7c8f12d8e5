#include "transport/shm/context.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <fstream>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/logging.h"
#include "common/status.h"
#include "transport/shm/endpoint.h"
#include "transport/shm/memory.h"
#include "transport/shm/ring.h"
#include "transport/shm/wait.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

// Connections accepted but not yet matched to a Connect call; beyond this the
// oldest are dropped (a misbehaving local process cannot exhaust our fds).
constexpr size_t kMaxUnmatchedConnections = 256;

constexpr char kSocketPrefix[] = "tokenrail-shm-";

absl::StatusOr<uint64_t> Random64() {
  uint64_t v = 0;
  while (true) {
    const ssize_t n = ::getrandom(&v, sizeof(v), 0);
    if (n == static_cast<ssize_t>(sizeof(v))) return v;
    if (n < 0 && errno != EINTR) return StatusFromErrno(errno, "shm: getrandom");
  }
}

std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return std::string(absl::StripAsciiWhitespace(id));
}

std::string Hex64(uint64_t v) { return absl::StrCat(absl::Hex(v, absl::kZeroPad16)); }

absl::Status Watch(int epoll_fd, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return StatusFromErrno(errno, absl::StrCat("shm: epoll_ctl(ADD, fd ", fd, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

Capabilities ShmCapabilities() {
  Capabilities c;
  c.backend = "shm";
  c.intra_node = true;
  c.inter_node = false;
  c.gpu_memory = false;
  c.native_rma = true;      // a put is a store into the peer's pages; the peer runs no code for it
  c.bandwidth_gbytes = 20;  // one memcpy: cache-hot 1 MiB ~48 GB/s, 64 MiB ~19 GB/s here
  c.latency_us = 0.5;       // one cache-line transfer for the notification
  c.max_put_size = static_cast<size_t>(std::numeric_limits<off_t>::max());
  c.max_message_size = kMaxMessageSize;
  c.devices = {"memfd"};
  return c;
}

absl::StatusOr<Capabilities> ProbeShm(const TransportOptions& options) {
  TR_ASSIGN_OR_RETURN(ShmOptions shm, ParseShmOptions(options.params));
  if (::access(shm.dir.c_str(), W_OK | X_OK) != 0) {
    return StatusFromErrno(errno, absl::StrCat("shm: socket directory ", shm.dir));
  }
  UniqueFd fd(::memfd_create("tokenrail-shm-probe", MFD_CLOEXEC));
  if (!fd.valid()) return StatusFromErrno(errno, "shm: memfd_create");
  return ShmCapabilities();
}

absl::StatusOr<std::unique_ptr<Context>> CreateShmContext(const TransportOptions& options) {
  TR_ASSIGN_OR_RETURN(std::unique_ptr<ShmContext> ctx, ShmContext::Create(options));
  return std::unique_ptr<Context>(std::move(ctx));
}

absl::StatusOr<std::unique_ptr<ShmContext>> ShmContext::Create(const TransportOptions& options) {
  TR_ASSIGN_OR_RETURN(ShmOptions shm, ParseShmOptions(options.params));
  std::unique_ptr<ShmContext> ctx(new ShmContext(options, shm));
  TR_RETURN_IF_ERROR(ctx->Init());
  return ctx;
}

absl::Status ShmContext::Init() {
  caps_ = ShmCapabilities();
  TR_ASSIGN_OR_RETURN(id_, Random64());
  if (const int stale = RemoveStaleSockets(shm_.dir, kSocketPrefix); stale > 0) {
    TR_VLOG(1, "shm") << "removed " << stale << " stale sockets of dead processes in " << shm_.dir;
  }
  socket_path_ = absl::StrCat(shm_.dir, "/", kSocketPrefix, ::getpid(), "-", Hex64(id_), ".sock");
  TR_ASSIGN_OR_RETURN(listen_fd_, ListenUnix(socket_path_));
  epoll_fd_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_fd_.valid()) return StatusFromErrno(errno, "shm: epoll_create1");
  TR_RETURN_IF_ERROR(Watch(epoll_fd_.get(), listen_fd_.get()));
  address_ = PackAddress(
      AddressInfo{id_, options_.name, socket_path_, static_cast<uint32_t>(::getpid()), BootId()});
  TR_VLOG(1, "shm") << "context '" << options_.name << "' " << Hex64(id_) << " listening on "
                    << socket_path_;
  return absl::OkStatus();
}

ShmContext::~ShmContext() {
  if (!endpoints_.empty() || !targets_.empty() || !sources_.empty()) {
    TR_LOG(ERROR, "shm") << "context '" << options_.name << "' destroyed with " << endpoints_.size()
                         << " endpoints and " << targets_.size() + sources_.size()
                         << " regions still alive";
  }
  for (ShmEndpoint* ep : endpoints_) ep->DetachContext();
  for (auto& [id, region] : targets_) region->DetachContext();
  for (ShmMemoryRegion* region : sources_) region->DetachContext();
  hellos_.clear();
  accepted_.clear();
  if (listen_fd_.valid()) {
    listen_fd_.Reset();
    ::unlink(socket_path_.c_str());
  }
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> ShmContext::RegisterMemory(void* data, size_t size,
                                                                         MemoryKind kind) {
  if (kind == MemoryKind::kCuda) {
    return absl::UnimplementedError(
        "shm: RegisterMemory(kCuda): the shm backend moves host memory only; use a "
        "GPU-capable backend (cuda_ipc) for device memory");
  }
  if (data == nullptr || size == 0) {
    return absl::InvalidArgumentError(absl::StrCat("shm: RegisterMemory of ", size, " bytes at 0x",
                                                   absl::Hex(reinterpret_cast<uintptr_t>(data)),
                                                   ": need non-null memory "
                                                   "and a non-zero size"));
  }
  auto region = std::make_unique<ShmMemoryRegion>(this, data, size);
  sources_.push_back(region.get());
  return std::unique_ptr<MemoryRegion>(std::move(region));
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> ShmContext::AllocateMemory(size_t size,
                                                                         MemoryKind kind) {
  if (kind == MemoryKind::kCuda) {
    return absl::UnimplementedError(
        "shm: AllocateMemory(kCuda): the shm backend allocates host memory only");
  }
  if (size == 0) return absl::InvalidArgumentError("shm: AllocateMemory of 0 bytes");
  TR_ASSIGN_OR_RETURN(const uint64_t cookie, Random64());
  TR_ASSIGN_OR_RETURN(SharedFile file, CreateSharedFile("tokenrail-shm-region", size));
  const uint64_t id = next_region_id_++;
  auto region = std::make_unique<ShmMemoryRegion>(this, id_, id, cookie, std::move(file));
  targets_[id] = region.get();
  for (ShmEndpoint* ep : endpoints_) ep->AnnounceRegion(*region);
  return std::unique_ptr<MemoryRegion>(std::move(region));
}

void ShmContext::ReleaseRegion(ShmMemoryRegion* region) {
  if (!region->is_target()) {
    sources_.erase(std::remove(sources_.begin(), sources_.end(), region), sources_.end());
    return;
  }
  targets_.erase(region->id());
  for (ShmEndpoint* ep : endpoints_) ep->RevokeRegion(region->id());
}

void ShmContext::DetachEndpoint(ShmEndpoint* ep) {
  Unwatch(ep->socket_fd());
  endpoints_.erase(std::remove(endpoints_.begin(), endpoints_.end(), ep), endpoints_.end());
}

void ShmContext::Unwatch(int fd) {
  // ENOENT (never added, or already removed) is fine.
  if (fd >= 0) (void)::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

absl::Status ShmContext::Progress() { return ProgressAll(); }

absl::StatusOr<bool> ShmContext::ArmEventFd() {
  TR_RETURN_IF_ERROR(ProgressAll());
  for (ShmEndpoint* ep : endpoints_) {
    if (!ep->failed() && ep->HasInbound()) return false;
  }
  for (ShmEndpoint* ep : endpoints_) {
    if (!ep->failed()) ep->Arm();
  }
  // Pairs with the producer's fence in ShmEndpoint::WakePeer: either it
  // sees our armed word, or we see what it published before.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (ShmEndpoint* ep : endpoints_) {
    if (!ep->failed() && ep->HasInbound()) return false;
  }
  return true;
}

absl::Status ShmContext::ProgressAll() {
  absl::Status s = AcceptAndReadHellos();
  // Endpoints report their own failures through their sticky status.
  for (ShmEndpoint* ep : endpoints_) ep->Service();
  return s;
}

absl::Status ShmContext::AcceptAndReadHellos() {
  absl::Status status;
  while (true) {
    absl::StatusOr<UniqueFd> fd = AcceptUnix(listen_fd_.get());
    if (!fd.ok()) {
      TR_LOG_ONCE(WARNING, "shm") << fd.status();
      status = fd.status();
      break;
    }
    if (!fd->valid()) break;
    if (accepted_.size() >= kMaxUnmatchedConnections) {
      TR_LOG_ONCE(WARNING, "shm") << "context '" << options_.name << "': more than "
                                  << kMaxUnmatchedConnections
                                  << " connections without a hello; dropping the oldest";
      accepted_.erase(accepted_.begin());
    }
    accepted_.push_back(std::make_unique<Handshake>(*std::move(fd)));
  }
  for (size_t i = 0; i < accepted_.size();) {
    Handshake& hs = *accepted_[i];
    absl::StatusOr<bool> got = ReadHello(hs);
    if (got.ok() && !*got) {
      ++i;
      continue;
    }
    if (got.ok() && hs.hello.to_id != id_) {
      got = absl::InvalidArgumentError(absl::StrCat("hello for context ", Hex64(hs.hello.to_id)));
    }
    if (got.ok()) {
      hellos_[hs.hello.from_id].push_back(std::move(accepted_[i]));
    } else {
      TR_VLOG(1, "shm") << "context '" << options_.name
                        << "': dropping an incoming connection: " << got.status();
    }
    accepted_.erase(accepted_.begin() + static_cast<ptrdiff_t>(i));
  }
  return status;
}

absl::StatusOr<bool> ShmContext::ReadHello(Handshake& hs) {
  TR_ASSIGN_OR_RETURN(std::optional<Frame> frame, hs.sock.Receive());
  if (!frame.has_value()) return false;
  if (frame->type != FrameType::kHello) {
    return absl::DataLossError(
        absl::StrCat("expected a hello frame, got type ", static_cast<uint32_t>(frame->type)));
  }
  TR_ASSIGN_OR_RETURN(hs.hello, DecodeHello(frame->payload));
  hs.channel_fd = std::move(frame->fd);
  return true;
}

absl::Status ShmContext::WaitFor(absl::Time deadline,
                                 absl::FunctionRef<absl::StatusOr<bool>()> step) {
  Backoff backoff(shm_.spin);
  while (true) {
    TR_ASSIGN_OR_RETURN(const bool done, step());
    if (done) return absl::OkStatus();
    if (backoff.Next()) {
      TR_RETURN_IF_ERROR(ProgressAll());
      if (absl::Now() >= deadline) return absl::DeadlineExceededError("deadline passed");
    }
  }
}

HelloFrame ShmContext::MyHello(const AddressInfo& peer) const {
  return HelloFrame{id_, peer.context_id, options_.name, static_cast<uint32_t>(::getpid())};
}

absl::StatusOr<ShmContext::Handshake> ShmContext::ConnectAsClient(const AddressInfo& peer,
                                                                  int channel_fd,
                                                                  absl::Time deadline) {
  absl::Status last = absl::OkStatus();
  UniqueFd fd;
  absl::Status s = WaitFor(deadline, [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<UniqueFd> c = ConnectUnix(peer.socket_path);
    if (c.ok()) {
      fd = *std::move(c);
      return true;
    }
    if (!absl::IsResourceExhausted(c.status())) return c.status();
    last = c.status();  // backlog full: the peer has not accepted yet
    return false;
  });
  if (absl::IsDeadlineExceeded(s) && !last.ok()) s = absl::DeadlineExceededError(last.message());
  TR_RETURN_IF_ERROR(s);
  Handshake hs(std::move(fd));
  UniqueFd dup(::fcntl(channel_fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) return StatusFromErrno(errno, "shm: dup of the channel fd");
  TR_RETURN_IF_ERROR(hs.sock.Send(FrameType::kHello, EncodeHello(MyHello(peer)), std::move(dup)));
  TR_RETURN_IF_ERROR(WaitFor(deadline, [&]() -> absl::StatusOr<bool> {
    TR_RETURN_IF_ERROR(hs.sock.Flush());
    return ReadHello(hs);
  }));
  return hs;
}

absl::StatusOr<ShmContext::Handshake> ShmContext::ConnectAsServer(const AddressInfo& peer,
                                                                  int channel_fd,
                                                                  absl::Time deadline) {
  std::unique_ptr<Handshake> hs;
  TR_RETURN_IF_ERROR(WaitFor(deadline, [&]() -> absl::StatusOr<bool> {
    TR_RETURN_IF_ERROR(AcceptAndReadHellos());
    auto it = hellos_.find(peer.context_id);
    while (it != hellos_.end() && !it->second.empty()) {
      hs = std::move(it->second.front());
      it->second.pop_front();
      // A client that gave up (its Connect timed out) left a dead hello: skip it.
      absl::StatusOr<std::optional<Frame>> probe = hs->sock.Receive();
      if (probe.ok() && !probe->has_value()) break;
      TR_VLOG(1, "shm") << "dropping a stale connection from context " << Hex64(peer.context_id);
      hs.reset();
    }
    if (it != hellos_.end() && it->second.empty()) hellos_.erase(it);
    return hs != nullptr;
  }));
  UniqueFd dup(::fcntl(channel_fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) return StatusFromErrno(errno, "shm: dup of the channel fd");
  TR_RETURN_IF_ERROR(hs->sock.Send(FrameType::kHello, EncodeHello(MyHello(peer)), std::move(dup)));
  return std::move(*hs);
}

absl::StatusOr<std::unique_ptr<Endpoint>> ShmContext::Connect(absl::string_view peer_address,
                                                              absl::Time deadline) {
  TR_ASSIGN_OR_RETURN(AddressInfo peer, UnpackAddress(peer_address));
  const std::string label = absl::StrCat("peer '", peer.name, "' (pid ", peer.pid, ")");
  if (peer.context_id == id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm: context '", options_.name, "' cannot connect to its own address"));
  }
  const std::string boot_id = BootId();
  if (!peer.boot_id.empty() && !boot_id.empty() && peer.boot_id != boot_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("shm: ", label, " runs on another host (boot id ", peer.boot_id, ", ours ",
                     boot_id, "); shm reaches only processes on this host"));
  }
  TR_ASSIGN_OR_RETURN(Channel inbound, Channel::Create(shm_.ring_entries, shm_.message_ring_bytes));
  absl::StatusOr<Handshake> hs = id_ < peer.context_id
                                     ? ConnectAsClient(peer, inbound.fd(), deadline)
                                     : ConnectAsServer(peer, inbound.fd(), deadline);
  if (absl::IsDeadlineExceeded(hs.status())) {
    return absl::DeadlineExceededError(absl::StrCat(
        "shm: connecting to ", label, " at ", peer.socket_path,
        " timed out (did it call Connect with our address?): ", hs.status().message()));
  }
  if (!hs.ok()) return Annotate(hs.status(), absl::StrCat("shm: connecting to ", label));
  if (hs->hello.from_id != peer.context_id || hs->hello.to_id != id_) {
    return absl::DataLossError(absl::StrCat("shm: ", label, " answered as context ",
                                            Hex64(hs->hello.from_id), " to context ",
                                            Hex64(hs->hello.to_id)));
  }
  TR_ASSIGN_OR_RETURN(Channel outbound,
                      Channel::Attach(hs->channel_fd.get(), absl::StrCat("channel of ", label)));
  auto ep = std::make_unique<ShmEndpoint>(this, std::move(peer), std::move(hs->sock),
                                          std::move(inbound), std::move(outbound));
  TR_RETURN_IF_ERROR(Watch(epoll_fd_.get(), ep->socket_fd()));
  endpoints_.push_back(ep.get());
  for (auto& [id, region] : targets_) ep->AnnounceRegion(*region);
  ep->AnnounceWatermark(next_region_id_);
  TR_VLOG(1, "shm") << "context '" << options_.name << "' connected to " << label;
  return std::unique_ptr<Endpoint>(std::move(ep));
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
