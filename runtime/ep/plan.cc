#include "runtime/ep/plan.h"

#include <utility>

namespace tokenrail {
namespace ep {

PooledBytes& PooledBytes::operator=(PooledBytes&& o) noexcept {
  if (this != &o) {
    Release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    pool_ = std::move(o.pool_);
  }
  return *this;
}

void PooledBytes::Release() {
  if (data_ == nullptr) return;
  if (std::shared_ptr<BytePool> pool = pool_.lock()) {
    pool->Return(data_, capacity_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
  size_ = capacity_ = 0;
}

BytePool::~BytePool() {
  absl::MutexLock lock(&mu_);
  for (auto& [capacity, data] : free_) std::free(data);
}

PooledBytes BytePool::Get(size_t n) {
  PooledBytes b;
  b.size_ = n;
  b.pool_ = weak_from_this();
  if (n == 0) return b;
  {
    absl::MutexLock lock(&mu_);
    auto it = free_.lower_bound(n);
    if (it != free_.end() && it->first / 2 <= n) {
      b.capacity_ = it->first;
      b.data_ = it->second;
      free_.erase(it);
      return b;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, 64, n) != 0) p = nullptr;
  b.data_ = static_cast<uint8_t*>(p);
  b.capacity_ = n;
  return b;
}

void BytePool::Return(uint8_t* data, size_t capacity) {
  uint8_t* drop = nullptr;
  {
    absl::MutexLock lock(&mu_);
    free_.emplace(capacity, data);
    if (free_.size() > kMaxFree) {
      // Keep the large ones: they are the expensive ones to fault in.
      drop = free_.begin()->second;
      free_.erase(free_.begin());
    }
  }
  std::free(drop);
}

}  // namespace ep
}  // namespace tokenrail
