#include "runtime/ep/in_process_comm.h"

#include <sys/mman.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace tokenrail {
namespace ep {

class InProcessWorld::Comm final : public EpComm {
 public:
  Comm(InProcessWorld* world, int rank) : world_(world) {
    const Options& o = world->options_;
    topo_.nodes = o.nodes;
    topo_.ranks_per_node = o.ranks_per_node;
    topo_.world_size = o.nodes * o.ranks_per_node;
    topo_.global_rank = rank;
    topo_.node = rank / o.ranks_per_node;
    topo_.local_rank = rank % o.ranks_per_node;
  }

  const CommTopology& topology() const override { return topo_; }

  absl::StatusOr<CommRegion> AllocateSymmetric(size_t bytes, absl::Time deadline) override {
    return world_->Allocate(topo_.global_rank, bytes, deadline);
  }

  absl::Status Barrier(absl::Time deadline) override {
    return world_->Gather(topo_.global_rank, 0, deadline).status();
  }

  void* LocalPeerData(const CommRegion& region, int local_rank) override {
    if (local_rank < 0 || local_rank >= topo_.ranks_per_node) return nullptr;
    const int rank = topo_.node * topo_.ranks_per_node + local_rank;
    const char* mine = world_->heap(topo_.global_rank);
    return world_->heap(rank) + (static_cast<const char*>(region.data) - mine);
  }

  absl::StatusOr<uint64_t> Put(const CommRegion& src, size_t src_off, int dst_rank,
                               const CommRegion& dst, size_t dst_off, size_t len,
                               uint32_t tag) override {
    if (absl::Status f = world_->failure(); !f.ok()) return f;
    if (dst_rank < 0 || dst_rank >= topo_.world_size || src_off > src.size ||
        len > src.size - src_off || dst_off > dst.size || len > dst.size - dst_off ||
        tag > 0xffff) {
      return absl::InvalidArgumentError(
          absl::StrCat("Put: bad arguments (rank ", dst_rank, ", ", src_off, "+", len, " of ",
                       src.size, " -> ", dst_off, " of ", dst.size, ", tag ", tag, ")"));
    }
    const char* mine = world_->heap(topo_.global_rank);
    const size_t dst_region_off = static_cast<const char*>(dst.data) - mine;
    PendingPut p;
    p.src_rank = topo_.global_rank;
    p.id = next_id_++;
    p.src = static_cast<const char*>(src.data) + src_off;
    p.dst_rank = dst_rank;
    p.dst = world_->heap(dst_rank) + dst_region_off + dst_off;
    p.len = len;
    p.tag = tag;
    p.not_before = absl::Now() + world_->options_.put_delay;
    absl::MutexLock lock(&world_->put_mu_);
    world_->puts_.push_back(p);
    return p.id;
  }

  absl::StatusOr<bool> IsComplete(uint64_t id) override {
    if (absl::Status f = world_->failure(); !f.ok()) return f;
    Notifications& n = *world_->notes_[static_cast<size_t>(topo_.global_rank)];
    absl::MutexLock lock(&n.mu);
    return id < n.completed_below;
  }

  absl::StatusOr<size_t> PollNotifications(CommNotification* out, size_t max) override {
    if (absl::Status f = world_->failure(); !f.ok()) return f;
    Notifications& n = *world_->notes_[static_cast<size_t>(topo_.global_rank)];
    absl::MutexLock lock(&n.mu);
    size_t got = 0;
    while (got < max && !n.queue.empty()) {
      out[got++] = n.queue.front();
      n.queue.pop_front();
    }
    return got;
  }

  size_t max_outstanding_puts() const override { return 1024; }
  absl::Status status() const override { return world_->failure(); }

  void PublishEpCounters(const CommEpCounters& c) override {
    absl::MutexLock lock(&world_->mu_);
    world_->direct_bytes_[topo_.global_rank] = c.direct_bytes_intra_node;
    world_->tokens_per_expert_[topo_.global_rank].assign(c.tokens_per_expert,
                                                         c.tokens_per_expert + c.experts);
  }

 private:
  InProcessWorld* const world_;
  CommTopology topo_;
  uint64_t next_id_ = 1;
};

InProcessWorld::InProcessWorld(Options options) : options_(options) {
  const int w = world_size();
  for (int r = 0; r < w; ++r) {
    void* p = mmap(nullptr, options_.heap_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    TR_CHECK(p != MAP_FAILED) << "mmap of a " << options_.heap_bytes << "-byte test heap failed";
    heaps_.push_back(static_cast<char*>(p));
    notes_.push_back(std::make_unique<Notifications>());
  }
  for (int r = 0; r < w; ++r) comms_.push_back(std::make_unique<Comm>(this, r));
  {
    absl::MutexLock lock(&mu_);
    values_.assign(static_cast<size_t>(w), 0);
    rank_generation_.assign(static_cast<size_t>(w), 0);
    allocations_.assign(static_cast<size_t>(w), 0);
    direct_bytes_.assign(static_cast<size_t>(w), 0);
    tokens_per_expert_.assign(static_cast<size_t>(w), {});
  }
  delivery_ = std::thread([this] { Deliver(); });
}

InProcessWorld::~InProcessWorld() {
  {
    absl::MutexLock lock(&put_mu_);
    stop_ = true;
  }
  delivery_.join();
  for (char* h : heaps_) munmap(h, options_.heap_bytes);
}

EpComm* InProcessWorld::comm(int rank) { return comms_[static_cast<size_t>(rank)].get(); }

void InProcessWorld::Fail(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (failed_.ok()) failed_ = status;
}

absl::Status InProcessWorld::failure() const {
  absl::MutexLock lock(&mu_);
  return failed_;
}

uint64_t InProcessWorld::direct_bytes(int rank) const {
  absl::MutexLock lock(&mu_);
  return direct_bytes_[static_cast<size_t>(rank)];
}

std::vector<uint64_t> InProcessWorld::tokens_per_expert(int rank) const {
  absl::MutexLock lock(&mu_);
  return tokens_per_expert_[static_cast<size_t>(rank)];
}

void InProcessWorld::Deliver() {
  for (;;) {
    PendingPut p;
    {
      absl::MutexLock lock(&put_mu_);
      put_mu_.Await(absl::Condition(
          +[](InProcessWorld* w)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->put_mu_) { return w->stop_ || !w->puts_.empty(); },
          this));
      if (stop_) return;
      p = puts_.front();
      puts_.pop_front();
    }
    const absl::Duration wait = p.not_before - absl::Now();
    if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
    std::memmove(p.dst, p.src, p.len);
    {
      Notifications& n = *notes_[static_cast<size_t>(p.dst_rank)];
      absl::MutexLock lock(&n.mu);
      n.queue.push_back(CommNotification{p.src_rank, p.tag, p.len});
    }
    Notifications& s = *notes_[static_cast<size_t>(p.src_rank)];
    absl::MutexLock lock(&s.mu);
    // One FIFO for all puts: each source's complete in post order.
    s.completed_below = p.id + 1;
  }
}

absl::StatusOr<std::vector<uint64_t>> InProcessWorld::Gather(int rank, uint64_t value,
                                                             absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (!failed_.ok()) return failed_;
  const uint64_t g = rank_generation_[rank]++;
  values_[rank] = value;
  if (++arrived_ == world_size()) {
    results_.push_back(values_);
    arrived_ = 0;
    ++generation_;
  }
  auto done = [this, g]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return generation_ > g || !failed_.ok(); };
  if (!mu_.AwaitWithDeadline(absl::Condition(&done), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat("collective ", g, " of rank ", rank, ": not every rank arrived"));
  }
  if (generation_ <= g) return failed_;
  return results_[g];
}

absl::StatusOr<CommRegion> InProcessWorld::Allocate(int rank, size_t size, absl::Time deadline) {
  absl::StatusOr<std::vector<uint64_t>> sizes = Gather(rank, size, deadline);
  if (!sizes.ok()) return sizes.status();
  for (int r = 0; r < world_size(); ++r) {
    if ((*sizes)[r] != size) {
      return absl::InvalidArgumentError(absl::StrCat("AllocateSymmetric: rank ", r, " asked for ",
                                                     (*sizes)[r], " bytes, rank ", rank, " for ",
                                                     size));
    }
  }
  absl::MutexLock lock(&mu_);
  // The k-th allocation of every rank is region k.
  const size_t k = allocations_[rank]++;
  if (k == regions_.size()) {
    const size_t offset = (heap_top_ + 255) / 256 * 256;
    if (offset + size > options_.heap_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("AllocateSymmetric(", size,
                                                       "): the test heap of ", options_.heap_bytes,
                                                       " bytes is full"));
    }
    regions_.emplace_back(offset, size);
    heap_top_ = offset + size;
  }
  CommRegion r;
  r.id = static_cast<uint32_t>(k);
  r.size = regions_[k].second;
  r.data = heap(rank) + regions_[k].first;
  return r;
}

}  // namespace ep
}  // namespace tokenrail
