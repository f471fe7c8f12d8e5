// Proxy: the thread loop, rank activation and pacing. Command execution is
// in proxy_commands.cc, the network side in proxy_network.cc.
#include "runtime/daemon/proxy.h"

#include <algorithm>

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
    for (PeerNode& node : fabric_->peers()) {
      Peer p;
      p.node = &node;
      if (node.node_id >= 0 && node.node_id < config.nodes) {
        peer_of_node_[static_cast<size_t>(node.node_id)] = static_cast<int>(peers_.size());
      }
      peers_.push_back(std::move(p));
    }
  }
}

Proxy::~Proxy() { Stop(); }

void Proxy::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Proxy::Stop() {
  stop_.store(true, std::memory_order_release);
  RingDoorbellAll(arena_.header().proxy_bell);
  if (thread_.joinable()) thread_.join();
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
  TR_LOG(ERROR, kLog) << status.message();
  if (callbacks_.rank_broken) callbacks_.rank_broken(r, status);
}

void Proxy::Run() {
  const int64_t spin_ns = absl::ToInt64Nanoseconds(config_.spin);
  const int64_t max_poll_ns =
      std::max<int64_t>(kFirstSleepNs, absl::ToInt64Nanoseconds(config_.max_poll_sleep));
  int64_t last_work = MonotonicNanos();
  int64_t sleep_ns = kFirstSleepNs;
  uint32_t idle_spins = 0;
  while (!stop_.load(std::memory_order_acquire)) {
    if (ops_waiting_.load(std::memory_order_acquire)) ApplyOps();
    size_t work = 0;
    for (int r = 0; r < config_.ranks_per_node; ++r) work += ServeRank(r);
    if (!peers_.empty()) work += ServeNetwork();
    work += FlushOverflow();
    RingBells();
    const int64_t now = MonotonicNanos();
    if (work > 0) {
      last_work = now;
      sleep_ns = kFirstSleepNs;
      continue;
    }
    if (now - last_work < spin_ns) {
      // Spin, yielding now and then (see kPollsPerYield): the rank we wait
      // for may be queued behind us on this core.
      if ((++idle_spins % kPollsPerYield) == 0) {
        SpinYield();
      } else {
        CpuRelax();
      }
      continue;
    }
    // Idle: sleep until a rank rings, an op arrives or (with peers) the
    // network needs polling. Backs off while nothing happens.
    // Ranks do not ring when they consume notifications: poll while some
    // wait for ring space.
    const bool network = !peers_.empty() || overflow_pending_;
    const int64_t slice = network ? sleep_ns : kIdleSleepNs;
    SleepOnDoorbell(
        arena_.header().proxy_bell,
        [&] {
          return stop_.load(std::memory_order_acquire) ||
                 ops_waiting_.load(std::memory_order_acquire) || AnyCommandWaiting();
        },
        slice);
    if (network) sleep_ns = std::min(sleep_ns * 2, max_poll_ns);
  }
}

}  // namespace runtime
}  // namespace tokenrail
