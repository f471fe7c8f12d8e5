// `tokenrail-bench proxy`: the proxy data path against the network it rides
// on, in one run. A 2-node x 1-rank cluster is launched (tokenrail-launch's
// library, in process) with one network namespace per node when running as
// root (else on loopback); both paths use UCX restricted to TCP, so they
// cross the same emulated network:
//   proxy   rank 0 -> its daemon -> the peer daemon -> rank 1 (RankClient::Put
//           with notification), latency (ping-pong) and windowed bandwidth;
//   direct  the same two rank processes, from the same namespaces, open their
//           own UCX contexts and run `tokenrail-bench transport`'s verified
//           loops (tools/bench/transport_bench.h) between them;
//   ping    RankClient::Ping, the rank -> daemon command round trip.
// Every proxy put carries the pattern of (size, stream, iteration)
// (tools/bench/pattern.h); the receiver samples every message, checks the
// first and last byte by byte, and checks tag order.
//
// Bandwidth runs in `rounds`: each round measures the proxy at every size,
// then the direct path at every size. On a shared 2-core host one
// measurement can be off by 2x either way, independently of the one before
// (consecutive rounds show it); the medians of the rounds filter that, and
// the rounds' pair ratios show the spread.
//
// Rows (JSON fields; the table shows the same):
//   bench=proxy, network (netns|loopback), mode (lat|bw|ping), size, iters,
//   proxy_p50_us, proxy_p99_us (lat: one-way = RTT/2; ping: round trip;
//   bw: time per put at the median bandwidth), proxy_gbytes_per_s (bw: median over
//   rounds), direct_p50_us, direct_p99_us (lat), direct_gbytes_per_s (bw:
//   median over rounds), ratio (bw: proxy / direct median bandwidth; lat:
//   direct / proxy latency, so 1.0 = no overhead and below 1 = proxy slower),
//   pair_ratio_min, pair_ratio_max (bw: the extremes of the rounds' proxy /
//   direct), rounds and window (bw), verified, checked. 1 GB = 1e9 bytes.
//   Target: ratio >= 0.8 at 1 MiB bw.
//
// Roles: the orchestrator (RunProxyBench) launches the cluster with
// `self_argv` + one plan argument as the rank command; each rank process
// (RunProxyRank, chosen by the CLI when IsProxyRankArgument(last argument))
// attaches to its daemon and runs the plan. Rank 0 measures and reports rows
// as "TR_PROXY_ROW {json}" lines, which the orchestrator prints.
//
// Thread safety: RunProxyBench must run on the main thread of a process that
// has not started other threads yet (it forks the launcher's janitor and
// spawns the cluster, see tools/launch/launcher.h).
#ifndef TOKENRAIL_TOOLS_BENCH_PROXY_BENCH_H_
#define TOKENRAIL_TOOLS_BENCH_PROXY_BENCH_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {

enum class ProxyNetwork { kAuto, kNetns, kLoopback };

constexpr uint32_t kMaxRounds = 100;

struct ProxyBenchOptions {
  std::vector<uint64_t> sizes = {8, 4096, 65536, 1 << 20, 4 << 20};
  uint64_t iters = 1000;    // timed iterations per size and mode ...
  uint64_t min_iters = 10;  // ... reduced to max_bytes / size, not below this
  uint64_t max_bytes = 256ull << 20;
  uint64_t warmup = 100;        // capped at max(1, iters / 10), as the transport bench
  uint32_t window = 16;         // outstanding puts in bw
  uint32_t rounds = 7;          // bw rounds, proxy then direct in each (1..kMaxRounds)
  bool latency = true;          // run the lat test
  bool bandwidth = true;        // run the bw test
  uint64_t ping_iters = 10000;  // RankClient::Ping round trips (0: skip)
  ProxyNetwork network = ProxyNetwork::kAuto;  // auto: netns when root
  // Transport params for the daemons and the direct baseline; tls=tcp (and
  // net_devices=eth0 under netns) are added unless given.
  std::map<std::string, std::string> params;
  bool direct = true;                          // measure the direct transport put too
  std::string daemon_path;                     // empty: tools/launch FindTokenraild()
  uint64_t arena_bytes = 0;                    // 0: tokenraild's default
  absl::Duration timeout = absl::Seconds(60);  // bound on every wait
};

Table ProxyTable();

// Runs the benchmark; prints a section line and one row per (mode, size).
// Unavailable/Internal when the cluster fails (its output went to stderr),
// DataLoss when a row failed verification.
absl::Status RunProxyBench(const ProxyBenchOptions& options,
                           const std::vector<std::string>& self_argv, Printer& printer);

// The rank side.
bool IsProxyRankArgument(absl::string_view arg);
absl::Status RunProxyRank(absl::string_view arg);

// The plan the orchestrator hands to the ranks (exposed for tests).
struct ProxyPlan {
  std::vector<uint64_t> sizes;
  uint64_t iters = 0, min_iters = 0, max_bytes = 0, warmup = 0, ping_iters = 0;
  uint32_t window = 1;
  uint32_t rounds = 1;
  bool latency = true, bandwidth = true;
  bool direct = true;
  std::string network;   // "netns" | "loopback", for the rows
  std::string hosts[2];  // each node's address (the direct OOB)
  std::map<std::string, std::string> params;
  absl::Duration timeout = absl::Seconds(60);
};
std::string EncodeProxyPlan(const ProxyPlan& plan);  // a command-line argument
absl::StatusOr<ProxyPlan> DecodeProxyPlan(absl::string_view arg);

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_PROXY_BENCH_H_
