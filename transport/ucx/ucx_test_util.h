// Helpers for the ucx backend's in-process tests: two contexts in one
// process, connected to each other, and a background thread that drives one
// context while the test thread blocks in the other.
#ifndef TOKENRAIL_TRANSPORT_UCX_UCX_TEST_UTIL_H_
#define TOKENRAIL_TRANSPORT_UCX_UCX_TEST_UTIL_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "transport/registry.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {
namespace ucx {

inline absl::StatusOr<std::unique_ptr<Context>> MakeUcxContext(
    const std::string& name, const std::map<std::string, std::string>& params) {
  TransportOptions o;
  o.name = name;
  o.params = params;
  o.connect_timeout = absl::Seconds(20);
  return CreateContext("ucx", o);
}

// Drives `ctx` from a background thread for the object's lifetime. The test
// thread must not touch `ctx` (or its endpoints/regions) meanwhile.
class Pump {
 public:
  explicit Pump(Context* ctx)
      : thread_([this, ctx] {
          while (!stop_.load(std::memory_order_relaxed)) {
            (void)ctx->Progress();
          }
        }) {}
  ~Pump() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct UcxPair {
  std::unique_ptr<Context> a, b;
  std::unique_ptr<Endpoint> ab;  // a's endpoint to b
  std::unique_ptr<Endpoint> ba;  // b's endpoint to a
};

// Two contexts with the given params, connected symmetrically.
inline absl::StatusOr<UcxPair> ConnectUcxPair(const std::map<std::string, std::string>& pa,
                                              const std::map<std::string, std::string>& pb) {
  UcxPair p;
  absl::StatusOr<std::unique_ptr<Context>> a = MakeUcxContext("a", pa);
  if (!a.ok()) return a.status();
  absl::StatusOr<std::unique_ptr<Context>> b = MakeUcxContext("b", pb);
  if (!b.ok()) return b.status();
  p.a = std::move(*a);
  p.b = std::move(*b);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  absl::StatusOr<std::unique_ptr<Endpoint>> ba;
  std::thread t([&] { ba = p.b->Connect(p.a->address(), deadline); });
  absl::StatusOr<std::unique_ptr<Endpoint>> ab = p.a->Connect(p.b->address(), deadline);
  t.join();
  if (!ab.ok()) return ab.status();
  if (!ba.ok()) return ba.status();
  p.ab = std::move(*ab);
  p.ba = std::move(*ba);
  return p;
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_UCX_UCX_TEST_UTIL_H_
