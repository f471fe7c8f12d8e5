// What a `tokenrail-bench transport` run measures, and how the two sides
// agree on it. The leader resolves its options into a Plan (backend, params,
// sizes, per-size iteration counts, buffer layout) and sends it to the
// follower over the OOB channel; the follower runs exactly that plan, so both
// sides always agree on sizes, iterations and slots.
//
// Thread safety: value types and pure functions.
#ifndef TOKENRAIL_TOOLS_BENCH_PLAN_H_
#define TOKENRAIL_TOOLS_BENCH_PLAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tokenrail {
namespace bench {

enum class Mode : uint8_t {
  kLatency = 0,        // put + notification ping-pong; one-way = RTT / 2
  kBandwidth = 1,      // windowed puts leader -> follower
  kBidirectional = 2,  // windowed puts both ways at once
};
const char* ModeName(Mode mode);  // "lat", "bw", "bibw"

enum class Baseline : uint8_t { kNone = 0, kMemcpy = 1 };

// The leader's settings, filled from flags by the CLI. Defaults here are the
// CLI's defaults.
struct TransportBenchOptions {
  // Backend to measure; empty: every backend that `transports` allows and
  // that probes OK and reaches the peer, in preference order.
  std::string backend;
  std::string transports;                     // filter, as for the registry ("shm,ucx", "^verbs")
  std::map<std::string, std::string> params;  // TransportOptions::params
  std::vector<uint64_t> sizes;                // message sizes in bytes
  std::vector<Mode> modes = {Mode::kLatency, Mode::kBandwidth, Mode::kBidirectional};
  uint64_t iters = 1000;    // timed iterations per size and mode ...
  uint64_t min_iters = 10;  // ... reduced to max_bytes / size, but not below min_iters
  uint64_t max_bytes = 1ull << 30;
  uint64_t warmup = 100;             // untimed iterations first, capped at max(1, iters / 10)
  uint32_t window = 64;              // outstanding puts in the bandwidth modes
  uint64_t slot_bytes = 8ull << 20;  // per-buffer budget for rotating slots
  Baseline baseline = Baseline::kMemcpy;
  absl::Duration timeout = absl::Seconds(60);  // bound on every wait
  bool inter_node = false;                     // peer on another host (two-host mode)
  // Testing aid: the sender corrupts the stamp of this timed iteration of
  // every bandwidth test; -1 disables. Proves that verification bites.
  int64_t corrupt_iteration = -1;
};

// One (size, mode) test as both sides run it.
struct TestSpec {
  Mode mode = Mode::kLatency;
  uint64_t size = 0;
  uint64_t warmup = 0;
  uint64_t iters = 0;
  uint32_t window = 1;  // effective outstanding puts: min(window, slots)
  uint32_t slots = 2;   // rotating buffer slots; slot of iteration i is i % slots
  uint64_t stride = 0;  // bytes between slots (size rounded up to 64)
};

struct Plan {
  std::string backend;
  std::map<std::string, std::string> params;
  std::string leader_name;
  uint64_t region_bytes = 0;  // size of each side's source and target regions
  int64_t corrupt_iteration = -1;
  absl::Duration timeout = absl::Seconds(60);
  std::vector<TestSpec> tests;  // in run order
};

// Parses "8:64M" (powers of two from 8 to 64 MiB), "8,4K,1M" or a mix
// ("1,8:1K,3000"). Sizes are sorted and deduplicated; 0, > 1 GiB and
// inverted ranges are InvalidArgument naming the item.
absl::StatusOr<std::vector<uint64_t>> ParseSizeList(absl::string_view spec);

// Parses "lat,bw,bibw" (any subset, any order; run order is lat, bw, bibw).
absl::StatusOr<std::vector<Mode>> ParseModes(absl::string_view spec);

// Parses "k=v,k=v" into a map; an item without '=' or a duplicate key is
// InvalidArgument.
absl::StatusOr<std::map<std::string, std::string>> ParseParams(absl::string_view spec);
std::string FormatParams(const std::map<std::string, std::string>& params);  // "k=v,k=v"

// Resolves options into the plan for one backend: per-size iteration counts,
// slot layout, region size. InvalidArgument for inconsistent options.
absl::StatusOr<Plan> MakePlan(const TransportBenchOptions& options, const std::string& backend,
                              const std::string& leader_name);

// Wire form, sealed with the plan magic, version 1; Unpack never trusts input.
std::string PackPlan(const Plan& plan);
absl::StatusOr<Plan> UnpackPlan(absl::string_view blob);

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_PLAN_H_
