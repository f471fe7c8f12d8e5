// Proxy: the thread loop, rank activation and pacing. Command execution is
// in proxy_commands.cc, the network side in proxy_network.cc.
#include "runtime/daemon/proxy.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace tokenrail {
namespace runtime {
namespace {
constexpr char kLog[] = "proxy";
// Commands taken from one rank before looking at the others (fairness).
constexpr int kCommandBatch = 64;
// Sleep bounds while idle: first sleep, and the longest without peers (then
// only ranks, which ring the doorbell, and stop requests wake the proxy).
constexpr int64_t kFirstSleepNs = 20'000;
constexpr int64_t kIdleSleepNs = 50'000'000;
// Longest sleep on the transport's event fd: events wake the proxy, this only
// bounds the damage of one a transport failed to signal.
constexpr int64_t kEventSleepNs = 10'000'000;
// While the network is quiet, the loop looks at it once every this many
// rounds (each look costs syscalls; serving rank commands costs none).
constexpr uint32_t kRoundsPerNetworkLook = 16;
// While data moves, a look that found nothing is repeated after this long.
constexpr int64_t kBusyLookNs = 5'000;

void WriteEventFd(int fd) {
  const uint64_t one = 1;
  // EAGAIN: the counter is saturated, the reader wakes anyway.
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof(one));
}

void DrainEventFd(int fd) {
  uint64_t value;
  [[maybe_unused]] ssize_t n = ::read(fd, &value, sizeof(value));
}

}  // namespace

Proxy::Proxy(const Arena& arena, Fabric* fabric, ProxyConfig config, ProxyCallbacks callbacks)
    : arena_(arena),
      fabric_(fabric),
      config_(config),
      callbacks_(std::move(callbacks)),
      regions_(new RegionInfo[kMaxRegions]),
      slots_(static_cast<size_t>(config.ranks_per_node)),
      peer_of_node_(static_cast<size_t>(config.nodes), -1) {
  for (int r = 0; r < config.ranks_per_node; ++r) {
    counters_.push_back(std::make_unique<AtomicCounters>());
    active_.push_back(std::make_unique<std::atomic<bool>>(false));
  }
  if (fabric_ != nullptr) {
    // ServeNetwork progresses once per look, then only polls.
    fabric_->context().SetExplicitProgress(true);
    for (PeerNode& node : fabric_->peers()) {
      Peer p;
      p.node = &node;
      if (node.node_id >= 0 && node.node_id < config.nodes) {
        peer_of_node_[static_cast<size_t>(node.node_id)] = static_cast<int>(peers_.size());
      }
      peers_.push_back(std::move(p));
    }
  }
  engage_.seq.store(0, std::memory_order_relaxed);
  engage_.sleepers.store(0, std::memory_order_relaxed);
  if (!peers_.empty() && fabric_->context().EventFd() >= 0) {
    wake_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (wake_fd_.valid()) {
      net_fd_ = fabric_->context().EventFd();
    } else {
      TR_LOG(WARNING, kLog) << "eventfd: " << std::strerror(errno)
                            << "; polling the network instead of sleeping on it";
    }
  }
}

Proxy::~Proxy() { Stop(); }

void Proxy::Start() {
  if (net_fd_ >= 0) bridge_ = std::thread([this] { Bridge(); });
  thread_ = std::thread([this] { Run(); });
}

void Proxy::Stop() {
  stop_.store(true, std::memory_order_release);
  RingDoorbellAll(arena_.header().proxy_bell);
  RingDoorbellAll(engage_);
  if (wake_fd_.valid()) WriteEventFd(wake_fd_.get());
  if (thread_.joinable()) thread_.join();
  if (bridge_.joinable()) bridge_.join();
}

void Proxy::ActivateRank(int r) {
  absl::MutexLock lock(&mu_);
  ops_.push_back({OpKind::kActivate, r});
  const uint64_t ticket = ++ops_submitted_;
  ops_waiting_.store(true, std::memory_order_release);
  RingDoorbellAll(arena_.header().proxy_bell);
  while (ops_applied_ < ticket && !stop_.load(std::memory_order_acquire)) {
    ops_done_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
  }
}

void Proxy::DeactivateRank(int r) {
  absl::MutexLock lock(&mu_);
  ops_.push_back({OpKind::kDeactivate, r});
  const uint64_t ticket = ++ops_submitted_;
  ops_waiting_.store(true, std::memory_order_release);
  RingDoorbellAll(arena_.header().proxy_bell);
  while (ops_applied_ < ticket && !stop_.load(std::memory_order_acquire)) {
    ops_done_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
  }
}

void Proxy::AddRegion(const RegionInfo& info) {
  const uint32_t n = region_count_.load(std::memory_order_relaxed);
  TR_CHECK(info.id == n && n < kMaxRegions) << "region ids must be consecutive";
  regions_[n] = info;
  region_count_.store(n + 1, std::memory_order_release);
}

uint64_t Proxy::Pending() const {
  uint64_t n = in_flight_.load(std::memory_order_relaxed);
  for (int r = 0; r < config_.ranks_per_node; ++r) {
    if (!active_[static_cast<size_t>(r)]->load(std::memory_order_acquire)) continue;
    const RingIndexes& ring = arena_.control(r).commands;
    const uint64_t head = ring.head.load(std::memory_order_acquire);
    const uint64_t tail = ring.tail.load(std::memory_order_acquire);
    if (head > tail && head - tail <= kCommandEntries) n += head - tail;
  }
  return n;
}

ProxyStats Proxy::Stats() const {
  ProxyStats s;
  s.intra_node_puts = intra_puts_.load(std::memory_order_relaxed);
  s.inter_node_puts = inter_puts_.load(std::memory_order_relaxed);
  s.intra_node_bytes = intra_bytes_.load(std::memory_order_relaxed);
  s.inter_node_bytes = inter_bytes_.load(std::memory_order_relaxed);
  s.notifications_delivered = notifications_delivered_.load(std::memory_order_relaxed);
  s.in_flight = in_flight_.load(std::memory_order_relaxed);
  for (const auto& c : counters_) {
    s.ranks.push_back({c->bytes_intra.load(std::memory_order_relaxed),
                       c->bytes_inter.load(std::memory_order_relaxed),
                       c->puts.load(std::memory_order_relaxed),
                       c->notifications.load(std::memory_order_relaxed)});
  }
  return s;
}

void Proxy::ApplyOps() {
  std::deque<Op> ops;
  {
    absl::MutexLock lock(&mu_);
    ops.swap(ops_);
    ops_waiting_.store(false, std::memory_order_relaxed);
  }
  for (const Op& op : ops) Apply(op);
  absl::MutexLock lock(&mu_);
  ops_applied_ += ops.size();
  ops_done_.SignalAll();
}

void Proxy::Apply(const Op& op) {
  Slot& s = slots_[static_cast<size_t>(op.rank)];
  if (op.kind == OpKind::kActivate) {
    arena_.ResetRank(op.rank);
    s.active = true;
    s.broken = false;
    ++s.generation;
    s.commands = arena_.command_consumer(op.rank);
    s.completions = arena_.completion_producer(op.rank);
    s.notifications = arena_.notify_producer(op.rank);
    s.overflow.clear();
  } else {
    s.active = false;
    s.overflow.clear();
  }
  active_[static_cast<size_t>(op.rank)]->store(s.active, std::memory_order_release);
}

bool Proxy::AnyCommandWaiting() {
  for (int r = 0; r < config_.ranks_per_node; ++r) {
    Slot& s = slots_[static_cast<size_t>(r)];
    if (s.active && !s.broken && s.commands.HasData()) return true;
  }
  return false;
}

void Proxy::RingBells() {
  for (int r = 0; r < config_.ranks_per_node; ++r) {
    Slot& s = slots_[static_cast<size_t>(r)];
    if (s.ring_completion_bell) RingDoorbell(arena_.control(r).completion_bell);
    if (s.ring_notify_bell) RingDoorbell(arena_.control(r).notify_bell);
    s.ring_completion_bell = s.ring_notify_bell = false;
  }
}

size_t Proxy::ServeRank(int r) {
  Slot& s = slots_[static_cast<size_t>(r)];
  if (!s.active || s.broken) return 0;
  size_t n = 0;
  Command c;
  while (n < kCommandBatch) {
    const RingResult res = s.commands.TryPop(&c);
    if (res == RingResult::kEmpty) break;
    if (res != RingResult::kOk) {
      BreakRank(r, absl::DataLossError(
                       absl::StrCat("local rank ", r, " corrupted its command ring indices")));
      break;
    }
    Execute(r, c);
    ++n;
    if (s.broken) break;
  }
  return n;
}

void Proxy::BreakRank(int r, absl::Status status) {
  Slot& s = slots_[static_cast<size_t>(r)];
  if (s.broken) return;
  s.broken = true;
  // Its commands will never be served: other threads (Pending, the bridge)
  // must stop counting them.
  active_[static_cast<size_t>(r)]->store(false, std::memory_order_release);
  TR_LOG(ERROR, kLog) << status.message();
  if (callbacks_.rank_broken) callbacks_.rank_broken(r, status);
}

void Proxy::Run() {
  const int64_t spin_ns = absl::ToInt64Nanoseconds(config_.spin);
  int64_t last_work = MonotonicNanos();
  int64_t poll_sleep_ns = kFirstSleepNs;
  while (!stop_.load(std::memory_order_acquire)) {
    if (ops_waiting_.load(std::memory_order_acquire)) ApplyOps();
    size_t work = 0;
    for (int r = 0; r < config_.ranks_per_node; ++r) work += ServeRank(r);
    int64_t now = MonotonicNanos();
    if (!peers_.empty() &&
        (now < network_busy_until_ ? now >= next_busy_look_
                                   : ++rounds_since_look_ >= kRoundsPerNetworkLook)) {
      rounds_since_look_ = 0;
      const size_t net = ServeNetwork();
      work += net;
      if (net > 0 || in_flight_total_ > 0) network_busy_until_ = now + spin_ns;
      // A look that found nothing costs syscalls; the next waits a little.
      next_busy_look_ = net > 0 ? now : now + kBusyLookNs;
    }
    work += FlushOverflow();
    RingBells();
    if (work > 0) {
      last_work = now;
      idle_rounds_ = 0;
      poll_sleep_ns = kFirstSleepNs;
      continue;
    }
    ++idle_rounds_;
    if (now - last_work < spin_ns) {
      // Spin, yielding now and then (see kPollsPerYield): the rank we wait
      // for may be queued behind us on this core.
      if ((idle_rounds_ % kPollsPerYield) == 0) {
        SpinYield();
      } else {
        CpuRelax();
      }
      continue;
    }
    if (!Sleep(&poll_sleep_ns)) {
      // The transport made progress (bytes moving): keep spinning on it.
      now = MonotonicNanos();
      last_work = now;
      network_busy_until_ = now + spin_ns;
    }
    idle_rounds_ = 0;
    rounds_since_look_ = kRoundsPerNetworkLook;  // look at the network at once
  }
}

bool Proxy::Sleep(int64_t* poll_sleep_ns) {
  // Ranks do not ring when they consume notifications: poll while some
  // wait for ring space.
  const bool overflow = overflow_pending_;
  if (net_fd_ >= 0) {
    absl::StatusOr<bool> armed = fabric_->context().ArmEventFd();
    if (!armed.ok()) {
      TR_LOG_ONCE(WARNING, kLog) << "transport ArmEventFd: " << armed.status();
    } else if (!*armed) {
      return false;
    }
    const bool poll = overflow || !armed.ok();
    BlockOnNetwork(poll ? *poll_sleep_ns : kEventSleepNs);
    if (poll) BackOff(poll_sleep_ns);
    return true;
  }
  // Without an event fd, the network (if any) is polled.
  const bool poll = !peers_.empty() || overflow;
  SleepOnDoorbell(
      arena_.header().proxy_bell,
      [&] {
        return stop_.load(std::memory_order_acquire) ||
               ops_waiting_.load(std::memory_order_acquire) || AnyCommandWaiting();
      },
      poll ? *poll_sleep_ns : kIdleSleepNs);
  if (poll) BackOff(poll_sleep_ns);
  return true;
}

void Proxy::BackOff(int64_t* poll_sleep_ns) const {
  *poll_sleep_ns =
      std::min(*poll_sleep_ns * 2,
               std::max<int64_t>(kFirstSleepNs, absl::ToInt64Nanoseconds(config_.max_poll_sleep)));
}

void Proxy::BlockOnNetwork(int64_t timeout_ns) {
  block_round_.fetch_add(1, std::memory_order_relaxed);
  blocked_.store(1, std::memory_order_seq_cst);
  RingDoorbell(engage_);  // the bridge watches the proxy doorbell from now on
  // Whatever a rank posts after this check, the bridge sees (it checks after
  // announcing itself on the doorbell) and wakes us for.
  if (!stop_.load(std::memory_order_acquire) && !ops_waiting_.load(std::memory_order_acquire) &&
      !AnyCommandWaiting()) {
    pollfd fds[2] = {{net_fd_, POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    const timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000),
                      static_cast<long>(timeout_ns % 1'000'000'000)};
    // EINTR: a spurious wake-up; the loop re-checks everything.
    if (::ppoll(fds, 2, &ts, nullptr) > 0 && (fds[1].revents & POLLIN) != 0) {
      DrainEventFd(wake_fd_.get());
    }
  }
  blocked_.store(0, std::memory_order_release);
}

bool Proxy::CommandsWaitingShared() const {
  for (int r = 0; r < config_.ranks_per_node; ++r) {
    if (!active_[static_cast<size_t>(r)]->load(std::memory_order_acquire)) continue;
    const RingIndexes& ring = arena_.control(r).commands;
    if (ring.head.load(std::memory_order_acquire) != ring.tail.load(std::memory_order_acquire)) {
      return true;
    }
  }
  return false;
}

void Proxy::Bridge() {
  Doorbell& bell = arena_.header().proxy_bell;
  uint32_t kicked_round = 0;  // the block this thread already woke
  auto stopping = [&] { return stop_.load(std::memory_order_acquire); };
  // A block of the proxy this thread has not woken yet.
  auto fresh_block = [&] {
    return blocked_.load(std::memory_order_seq_cst) != 0 &&
           block_round_.load(std::memory_order_relaxed) != kicked_round;
  };
  auto wanted = [&] {
    return ops_waiting_.load(std::memory_order_acquire) || CommandsWaitingShared();
  };
  while (!stopping()) {
    if (!fresh_block()) {
      // Parked while the proxy runs (or after waking it, until it blocks
      // again): ranks ring the doorbell without a syscall meanwhile.
      SleepOnDoorbell(
          engage_, [&] { return stopping() || fresh_block(); }, kIdleSleepNs);
      continue;
    }
    const uint32_t round = block_round_.load(std::memory_order_relaxed);
    // Stays asleep across the proxy's network wake-ups until a rank rings.
    SleepOnDoorbell(
        bell, [&] { return stopping() || !fresh_block() || wanted(); }, kIdleSleepNs);
    if (fresh_block() && block_round_.load(std::memory_order_relaxed) == round && wanted()) {
      WriteEventFd(wake_fd_.get());
      kicked_round = round;
    }
  }
}

}  // namespace runtime
}  // namespace tokenrail
