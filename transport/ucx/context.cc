// UcxContext: set-up and teardown, connection, memory, progress. Active
// message dispatch is in context_am.cc.
#include "transport/ucx/context.h"

#include <poll.h>
#include <sched.h>

#include <algorithm>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/ucs_status.h"
#include "transport/ucx/endpoint.h"
#include "transport/ucx/memory.h"
#include "transport/ucx/wire.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

constexpr char kLog[] = "ucx";

// Waiting: busy-poll this many idle rounds, then yield, then sleep.
constexpr int kSpinRounds = 256;
constexpr int kYieldRounds = 2048;
// Longest sleep on the event fd between checks of the wait's condition.
constexpr absl::Duration kMaxEventWait = absl::Milliseconds(10);
// Bounded wait for rendezvous receives into a region being deregistered.
constexpr absl::Duration kRegionDrainTimeout = absl::Seconds(5);
// Bounded wait at teardown for closed endpoints' requests to drain.
constexpr absl::Duration kTeardownDrainTimeout = absl::Seconds(1);

uint64_t RandomNonZero() {
  thread_local absl::BitGen gen;
  uint64_t v = 0;
  while (v == 0) v = absl::Uniform<uint64_t>(gen);
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<UcxContext>> UcxContext::Create(const TransportOptions& options) {
  TR_ASSIGN_OR_RETURN(UcxOptions o, ParseUcxOptions(options.params));
  o.name = options.name;
  o.connect_timeout = options.connect_timeout;
  TR_ASSIGN_OR_RETURN(UcpContextPtr ucp, CreateUcpContext(o, /*transport_overrides=*/false));
  TR_ASSIGN_OR_RETURN(ResourceReport report, ProbeResources(ucp.get()));
  if (report.overrides_apply) {
    // Same resources, now with the shared-memory settings the probe assumed.
    ucp.reset();
    TR_ASSIGN_OR_RETURN(ucp, CreateUcpContext(o, /*transport_overrides=*/true));
  }
  std::unique_ptr<UcxContext> ctx(new UcxContext(std::move(o), std::move(ucp), std::move(report)));
  TR_RETURN_IF_ERROR(ctx->Init());
  return ctx;
}

UcxContext::UcxContext(UcxOptions options, UcpContextPtr ucp, ResourceReport report)
    : options_(std::move(options)),
      id_(RandomNonZero()),
      host_id_(HostId()),
      report_(std::move(report)),
      caps_(CapabilitiesFrom(report_, options_)),
      ucp_(std::move(ucp)) {}

absl::Status UcxContext::Init() {
  ucp_worker_params_t wp = {};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  ucp_worker_h worker = nullptr;
  TR_RETURN_IF_ERROR(
      StatusFromUcs(ucp_worker_create(ucp_.get(), &wp, &worker), "ucx: ucp_worker_create"));
  worker_.reset(worker);
  // Without an event fd (a transport that cannot signal) callers poll.
  if (const ucs_status_t efd = ucp_worker_get_efd(worker, &event_fd_); efd != UCS_OK) {
    TR_LOG(WARNING, kLog) << "ucx: ucp_worker_get_efd: " << ucs_status_string(efd)
                          << "; waits will poll";
    event_fd_ = -1;
  }

  ucp_worker_attr_t wattr = {};
  wattr.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
  TR_RETURN_IF_ERROR(StatusFromUcs(ucp_worker_query(worker, &wattr), "ucx: ucp_worker_query"));
  if (wattr.max_am_header < sizeof(PutHeader)) {
    return absl::FailedPreconditionError(
        absl::StrCat("ucx: UCP allows active-message headers of ", wattr.max_am_header,
                     " bytes, the put header needs ", sizeof(PutHeader)));
  }

  const std::pair<uint16_t, ucp_am_recv_callback_t> handlers[] = {
      {kAmHello, &AmCallback<kAmHello>},       {kAmPut, &AmCallback<kAmPut>},
      {kAmNotify, &AmCallback<kAmNotify>},     {kAmAckReq, &AmCallback<kAmAckReq>},
      {kAmAck, &AmCallback<kAmAck>},           {kAmMessage, &AmCallback<kAmMessage>},
      {kAmKeyQuery, &AmCallback<kAmKeyQuery>}, {kAmKeyReply, &AmCallback<kAmKeyReply>},
      {kAmBye, &AmCallback<kAmBye>},
  };
  for (const auto& [id, cb] : handlers) {
    ucp_am_handler_param_t hp = {};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                    UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    hp.id = id;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    hp.cb = cb;
    hp.arg = this;
    TR_RETURN_IF_ERROR(StatusFromUcs(ucp_worker_set_am_recv_handler(worker, &hp),
                                     absl::StrCat("ucx: registering active message ", id)));
  }

  ucp_address_t* raw_addr = nullptr;
  size_t addr_len = 0;
  TR_RETURN_IF_ERROR(StatusFromUcs(ucp_worker_get_address(worker, &raw_addr, &addr_len),
                                   "ucx: ucp_worker_get_address"));
  UcpWorkerAddress worker_address(worker, raw_addr, addr_len);
  AddressInfo info;
  info.context_id = id_;
  info.name = options_.name;
  info.worker_address.assign(worker_address.data(), worker_address.size());
  info.host_id = host_id_;
  info.rma_classes = report_.rma_classes;
  address_ = EncodeAddress(info);
  TR_VLOG(1, kLog) << "context '" << options_.name << "' id 0x" << std::hex << id_ << std::dec
                   << ": RMA classes " << static_cast<int>(report_.rma_classes) << ", put mode "
                   << PutModeName(options_.put_mode) << ", native_rma " << caps_.native_rma;
  return absl::OkStatus();
}

UcxContext::~UcxContext() {
  // Endpoints and regions should be gone already (transport.h); whatever is
  // left is closed here so that no UCX handle outlives the worker.
  std::vector<std::unique_ptr<Peer>> peers;
  for (auto& [id, peer] : peers_) peers.push_back(std::move(peer));
  peers_.clear();
  for (auto& peer : retired_) peers.push_back(std::move(peer));
  retired_.clear();
  if (worker_ != nullptr) {
    for (auto& peer : peers) peer->Close();
    (void)WaitFor(
        [&]() -> absl::StatusOr<bool> {
          return std::all_of(peers.begin(), peers.end(),
                             [](const std::unique_ptr<Peer>& p) { return p->Drained(); });
        },
        absl::Now() + kTeardownDrainTimeout, [] { return std::string("ucx: teardown"); });
  }
  for (UcxRemoteRegion* r : std::set<UcxRemoteRegion*>(remote_regions_)) r->ReleaseKey();
  remote_regions_.clear();
  for (UcxMemoryRegion* r : std::set<UcxMemoryRegion*>(live_regions_)) r->Orphan();
  live_regions_.clear();
  dirty_.clear();
  worker_.reset();  // no UCX callback runs after this
  peers.clear();
  ucp_.reset();
}

absl::StatusOr<std::unique_ptr<Endpoint>> UcxContext::Connect(absl::string_view peer_address,
                                                              absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) deadline = absl::Now() + options_.connect_timeout;
  TR_ASSIGN_OR_RETURN(AddressInfo info, DecodeAddress(peer_address));
  if (info.context_id == id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("ucx: context '", options_.name, "' cannot connect to its own address"));
  }
  Peer* peer = nullptr;
  auto it = peers_.find(info.context_id);
  if (it != peers_.end()) {
    if (it->second->bound()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "ucx: context '", options_.name, "' is already connected to peer '", info.name, "'"));
    }
    if (it->second->error().ok() && it->second->ep() == nullptr) {
      peer = it->second.get();  // its hello arrived before this call
    } else {
      RetirePeer(it->second.get());
    }
  }
  if (peer == nullptr) {
    peer = NewPeer(info.context_id);
    auto hello = pending_hellos_.find(info.context_id);
    if (hello != pending_hellos_.end()) {
      peer->OnHello(hello->second);
      pending_hellos_.erase(hello);
    }
  }
  closed_ids_.erase(info.context_id);

  absl::Status s = peer->Open(info);
  if (s.ok()) {
    s = WaitFor(
        [&]() -> absl::StatusOr<bool> {
          TR_RETURN_IF_ERROR(peer->error());
          return peer->hello_received();
        },
        deadline,
        [&] {
          return absl::StrCat("ucx: connecting '", options_.name, "' to peer '", info.name,
                              "' (did it call Connect with this context's address?)");
        });
  }
  if (!s.ok()) {
    peer->Close();
    RetirePeer(peer);
    return s;
  }
  peer->set_bound();
  TR_VLOG(1, kLog) << "'" << options_.name << "' connected to " << peer->Describe()
                   << (peer->use_rma() ? " (RMA puts)" : " (active-message puts)");
  return std::unique_ptr<Endpoint>(new UcxEndpoint(this, peer));
}

Peer* UcxContext::NewPeer(uint64_t remote_id) {
  auto peer = std::make_unique<Peer>(this, remote_id, next_peer_serial_++);
  Peer* raw = peer.get();
  peers_[remote_id] = std::move(peer);
  return raw;
}

void UcxContext::RetirePeer(Peer* peer) {
  auto it = peers_.find(peer->remote_id());
  if (it == peers_.end() || it->second.get() != peer) return;
  retired_.push_back(std::move(it->second));
  peers_.erase(it);
}

void UcxContext::ClosePeer(Peer* peer) {
  peer->Close();
  closed_ids_.insert(peer->remote_id());
  RetirePeer(peer);
}

void UcxContext::ReapRetired() {
  retired_.erase(
      std::remove_if(retired_.begin(), retired_.end(),
                     [](const std::unique_ptr<Peer>& p) { return p->Drained() && !p->dirty; }),
      retired_.end());
}

void UcxContext::MarkDirty(Peer* peer) {
  if (peer->dirty) return;
  peer->dirty = true;
  dirty_.push_back(peer);
}

bool UcxContext::ProgressOnce() {
  bool any = false;
  for (int i = 0; i < 16 && ucp_worker_progress(worker_.get()) != 0; ++i) any = true;
  while (!dirty_.empty()) {
    std::vector<Peer*> dirty;
    dirty.swap(dirty_);
    for (Peer* p : dirty) {
      p->dirty = false;
      p->Service();
    }
    any = true;
  }
  if (!retired_.empty()) ReapRetired();
  return any;
}

absl::Status UcxContext::Progress() {
  ProgressOnce();
  return absl::OkStatus();
}

absl::StatusOr<bool> UcxContext::ArmEventFd() {
  // ucp_worker_arm is valid only once progress found nothing to do.
  if (ProgressOnce() || event_fd_ < 0) return false;
  for (const auto& [id, peer] : peers_) {
    if (peer->HasDeliveries()) return false;
  }
  const ucs_status_t s = ucp_worker_arm(worker_.get());
  if (s == UCS_ERR_BUSY) return false;  // events arrived meanwhile
  TR_RETURN_IF_ERROR(StatusFromUcs(s, "ucx: ucp_worker_arm"));
  return true;
}

absl::Status UcxContext::WaitFor(absl::FunctionRef<absl::StatusOr<bool>()> done,
                                 absl::Time deadline, absl::FunctionRef<std::string()> what) {
  const absl::Time start = absl::Now();
  int idle = 0;
  for (;;) {
    // Checked before progressing: in a window of puts the awaited ticket is
    // often complete already, and a progress round costs a system call.
    TR_ASSIGN_OR_RETURN(bool finished, done());
    if (finished) return absl::OkStatus();
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(what(), ": timed out after ", absl::FormatDuration(now - start)));
    }
    if (ProgressOnce()) {
      idle = 0;
      continue;
    }
    ++idle;
    if (idle < kSpinRounds) continue;
    if (idle < kYieldRounds || event_fd_ < 0) {
      sched_yield();
      continue;
    }
    // Long wait: sleep until the network has work for us. The slice bounds
    // the wait for conditions no event announces (and the deadline check).
    TR_ASSIGN_OR_RETURN(const bool armed, ArmEventFd());
    if (!armed) continue;
    pollfd p{event_fd_, POLLIN, 0};
    const absl::Duration slice = std::min(kMaxEventWait, deadline - now);
    const int64_t ms = (absl::ToInt64Microseconds(slice) + 999) / 1000;
    (void)::poll(&p, 1, static_cast<int>(std::max<int64_t>(ms, 0)));
  }
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> UcxContext::RegisterMemory(void* data, size_t size,
                                                                         MemoryKind kind) {
  if (data == nullptr) return absl::InvalidArgumentError("ucx: RegisterMemory of a null pointer");
  return MapRegion(data, size, kind, /*allocate=*/false);
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> UcxContext::AllocateMemory(size_t size,
                                                                         MemoryKind kind) {
  return MapRegion(nullptr, size, kind, /*allocate=*/true);
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> UcxContext::MapRegion(void* data, size_t size,
                                                                    MemoryKind kind,
                                                                    bool allocate) {
  if (size == 0) return absl::InvalidArgumentError("ucx: cannot register a region of 0 bytes");
  if (kind == MemoryKind::kCuda && !report_.cuda_memory) {
    return absl::UnimplementedError(
        "ucx: this UCX build has no CUDA support (UCP reports no cuda memory type); "
        "GPU memory cannot be registered");
  }
  ucp_mem_map_params_t mp = {};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS |
                  UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
  mp.length = size;
  mp.memory_type = kind == MemoryKind::kCuda ? UCS_MEMORY_TYPE_CUDA : UCS_MEMORY_TYPE_HOST;
  if (allocate) {
    // Memory UCP allocates comes from a shared-memory transport where there
    // is one, so that peers on this host can map it (native RMA).
    mp.flags = UCP_MEM_MAP_ALLOCATE;
  } else {
    mp.field_mask |= UCP_MEM_MAP_PARAM_FIELD_ADDRESS;
    mp.address = data;
  }
  ucp_mem_h memh = nullptr;
  TR_RETURN_IF_ERROR(StatusFromUcs(
      ucp_mem_map(ucp_.get(), &mp, &memh),
      absl::StrCat("ucx: ", allocate ? "allocating " : "registering ", size, " bytes")));
  UcpMem mem(ucp_.get(), memh);
  if (allocate) {
    ucp_mem_attr_t attr = {};
    attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
    TR_RETURN_IF_ERROR(StatusFromUcs(ucp_mem_query(memh, &attr), "ucx: ucp_mem_query"));
    if (attr.address == nullptr || attr.length < size) {
      return absl::InternalError(
          absl::StrCat("ucx: UCP allocated ", attr.length, " bytes for a request of ", size));
    }
    data = attr.address;
  }
  const uint64_t id = next_region_id_++;
  const uint64_t cookie = RandomNonZero();
  auto region =
      std::make_unique<UcxMemoryRegion>(this, data, size, kind, id, cookie, std::move(mem));
  regions_[id] = RegionEntry{static_cast<char*>(data), size, cookie, kind, region.get(), 0};
  live_regions_.insert(region.get());
  return std::unique_ptr<MemoryRegion>(std::move(region));
}

void UcxContext::RemoveRegion(UcxMemoryRegion* region) {
  live_regions_.erase(region);
  auto it = regions_.find(region->id());
  if (it == regions_.end()) return;
  it->second.owner = nullptr;  // ValidatePut now rejects puts into it
  if (it->second.receives_in_flight > 0) {
    absl::Status s = WaitFor(
        [&]() -> absl::StatusOr<bool> { return regions_[region->id()].receives_in_flight == 0; },
        absl::Now() + kRegionDrainTimeout,
        [&] { return absl::StrCat("ucx: draining receives into region ", region->id()); });
    if (!s.ok()) TR_LOG(ERROR, kLog) << s.message();
  }
  regions_.erase(region->id());
}

uint32_t UcxContext::ValidatePut(uint64_t region_id, uint64_t cookie, uint64_t offset,
                                 uint64_t length, char** target, MemoryKind* kind) const {
  auto it = regions_.find(region_id);
  if (it == regions_.end() || it->second.owner == nullptr) return kRejectUnknownRegion;
  const RegionEntry& r = it->second;
  if (r.cookie != cookie) return kRejectBadCookie;
  if (offset > r.size || length > r.size - offset) return kRejectOutOfBounds;
  *target = r.base + offset;
  *kind = r.kind;
  return 0;
}

uint32_t UcxContext::KeyVerdictFor(uint64_t region_id, uint64_t cookie, uint64_t size) const {
  auto it = regions_.find(region_id);
  if (it == regions_.end() || it->second.owner == nullptr) return kKeyUnknownRegion;
  if (it->second.cookie != cookie) return kKeyBadCookie;
  if (it->second.size != size) return kKeyBadSize;
  return kKeyValid;
}

void UcxContext::RegionReceiveStarted(uint64_t region_id) {
  auto it = regions_.find(region_id);
  if (it != regions_.end()) ++it->second.receives_in_flight;
}

void UcxContext::RegionReceiveDone(uint64_t region_id) {
  auto it = regions_.find(region_id);
  if (it != regions_.end() && it->second.receives_in_flight > 0) {
    --it->second.receives_in_flight;
  }
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
