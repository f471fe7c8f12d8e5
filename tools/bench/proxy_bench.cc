#include "tools/bench/proxy_bench.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/bytes.h"
#include "common/status.h"
#include "runtime/client/client.h"
#include "tools/bench/align.h"
#include "tools/bench/pattern.h"
#include "tools/bench/plan.h"
#include "tools/bench/transport_bench.h"
#include "tools/launch/launcher.h"
#include "tools/launch/netns.h"
#include "transport/oob.h"

namespace tokenrail {
namespace bench {
namespace {

using runtime::RankClient;
using runtime::RankNotification;
using runtime::Region;

constexpr char kPlanPrefix[] = "proxy-plan:";
constexpr uint32_t kPlanMagic = 0x58505254;  // "TRPX"
constexpr uint16_t kPlanVersion = 2;         // 2: bandwidth rounds, test bits
constexpr uint8_t kTestLatency = 1, kTestBandwidth = 2;
constexpr char kRowTag[] = "TR_PROXY_ROW ";

// Notification tags: data puts use the iteration's low 15 bits; the top of
// the 16-bit space is control.
constexpr uint32_t kTagAck = 0xffff;
constexpr uint32_t kTagAddress = 0xfffe;
constexpr uint32_t kDataTagMask = 0x7fff;

// Pattern streams of the proxy loops (distinct from the transport bench's).
constexpr uint32_t kStreamPing = 101, kStreamPong = 102, kStreamBw = 103;

// Budget per symmetric region (two per rank) for rotating slots.
constexpr uint64_t kRegionBudget = 32ull << 20;

// As MakePlan (plan.h): the same counts as the direct measurement.
uint64_t ItersFor(const ProxyPlan& p, uint64_t size) {
  return std::max(p.min_iters, std::min(p.iters, p.max_bytes / size));
}
uint64_t WarmupFor(const ProxyPlan& p, uint64_t iters) {
  return std::min(p.warmup, std::max<uint64_t>(1, iters / 10));
}

// Rotating message slots in each of the two symmetric regions: at least two,
// up to twice the window, within the budget.
struct Layout {
  uint64_t stride = 0;
  uint64_t slots = 0;
  uint32_t window = 1;  // effective: never more outstanding puts than slots
  uint64_t region_bytes = 0;
};

Layout LayoutFor(const ProxyPlan& p) {
  Layout l;
  const uint64_t largest = *std::max_element(p.sizes.begin(), p.sizes.end());
  l.stride = RoundUp(largest, 64);
  l.slots = std::max<uint64_t>(2, std::min<uint64_t>(2 * p.window, kRegionBudget / l.stride));
  l.window = static_cast<uint32_t>(std::min<uint64_t>(p.window, l.slots));
  l.region_bytes = l.slots * l.stride;
  return l;
}

double Micros(int64_t ns) { return static_cast<double>(ns) / 1e3; }

void Emit(const std::string& line) {
  const std::string text = line + "\n";
  [[maybe_unused]] ssize_t n = ::write(STDOUT_FILENO, text.data(), text.size());
}

// ---------------------------------------------------------------- rank side

class ProxyRank {
 public:
  ProxyRank(RankClient& rc, ProxyPlan plan) : rc_(rc), plan_(std::move(plan)) {}

  absl::Status Run();

 private:
  absl::Time Deadline() const { return absl::Now() + plan_.timeout; }
  bool leader() const { return me_ == 0; }
  char* SendSlot(uint64_t g) { return static_cast<char*>(send_.data) + (g % slots_) * stride_; }
  char* RecvSlot(uint64_t g) { return static_cast<char*>(recv_.data) + (g % slots_) * stride_; }
  size_t Offset(uint64_t g) const { return (g % slots_) * stride_; }

  // The next notification must come from the peer with `tag` and `length`.
  absl::Status Expect(uint32_t tag, size_t length, absl::string_view what);
  absl::Status Verify(const char* data, const Expectation& e, bool full, absl::string_view what);

  absl::Status Ping(Record* row);
  absl::Status Latency(uint64_t size, Record* row);
  // Time of the timed puts (rank 0; 0 on rank 1).
  absl::StatusOr<int64_t> Bandwidth(uint64_t size);
  absl::StatusOr<int64_t> BandwidthPhase(uint64_t size, uint64_t base, uint64_t count);
  // The direct transport's loops for every size.
  absl::Status Direct(bool latency, bool bandwidth, std::vector<Record>* direct);
  // Rank 0's bw row of plan_.sizes[i] from every round.
  Record BandwidthRow(size_t i, const std::vector<std::vector<Record>>& direct) const;

  RankClient& rc_;
  ProxyPlan plan_;
  int me_ = 0, peer_ = 1;
  Region send_, recv_;
  uint64_t stride_ = 0, slots_ = 0;
  uint32_t window_ = 1;
  uint64_t checked_ = 0;
  std::vector<std::vector<int64_t>> bw_ns_;  // [size][round]: rank 0's timed puts
};

absl::Status ProxyRank::Expect(uint32_t tag, size_t length, absl::string_view what) {
  TR_ASSIGN_OR_RETURN(RankNotification n, rc_.WaitNotification(Deadline()));
  if (n.src_rank != peer_ || n.tag != tag || n.length != length) {
    return absl::DataLossError(absl::StrCat(
        what, ": expected a notification from rank ", peer_, " with tag ", tag, " and length ",
        length, ", got rank ", n.src_rank, " tag ", n.tag, " length ", n.length));
  }
  return absl::OkStatus();
}

absl::Status ProxyRank::Verify(const char* data, const Expectation& e, bool full,
                               absl::string_view what) {
  ++checked_;
  return Annotate(full ? VerifyFull(data, e) : VerifySampled(data, e), what);
}

absl::Status ProxyRank::Ping(Record* row) {
  std::vector<double> samples;
  const uint64_t warmup = std::min<uint64_t>(plan_.ping_iters / 10 + 1, 1000);
  for (uint64_t i = 0; i < warmup + plan_.ping_iters; ++i) {
    const int64_t t0 = NowNanos();
    TR_RETURN_IF_ERROR(rc_.Ping(Deadline()));
    if (i >= warmup) samples.push_back(Micros(NowNanos() - t0));
  }
  const Summary s = Summarize(&samples);
  row->Set("mode", "ping").Set("size", int64_t{0}).Set("iters", plan_.ping_iters);
  row->Set("proxy_p50_us", s.p50).Set("proxy_p99_us", s.p99);
  return absl::OkStatus();
}

absl::Status ProxyRank::Latency(uint64_t size, Record* row) {
  const uint64_t iters = ItersFor(plan_, size), warmup = WarmupFor(plan_, iters);
  const uint32_t out_stream = leader() ? kStreamPing : kStreamPong;
  const uint32_t in_stream = leader() ? kStreamPong : kStreamPing;
  for (uint64_t g = 0; g < 2; ++g) FillPattern(SendSlot(g), size, out_stream, g);
  std::vector<double> samples;
  const std::string what = absl::StrCat("proxy lat ", FormatSize(size));
  for (uint64_t g = 0; g < warmup + iters; ++g) {
    const uint32_t tag = g & kDataTagMask;
    // Only two slots: iteration g's message is overwritten by g + 2, which
    // the peer sends only after it received our answer to g + 1.
    const Expectation e{size, in_stream, g, 2, g};
    const bool full = g == warmup || g + 1 == warmup + iters;
    if (g >= 2) StampPattern(SendSlot(g % 2), size, out_stream, g);
    if (leader()) {
      const int64_t t0 = NowNanos();
      TR_ASSIGN_OR_RETURN(uint64_t id,
                          rc_.Put(send_, Offset(g % 2), peer_, recv_, Offset(g % 2), size, tag));
      TR_RETURN_IF_ERROR(Expect(tag, size, what));
      const int64_t t1 = NowNanos();
      if (g >= warmup) samples.push_back(Micros(t1 - t0) / 2);
      TR_RETURN_IF_ERROR(rc_.WaitComplete(id, Deadline()));
      TR_RETURN_IF_ERROR(Verify(RecvSlot(g % 2), e, full, what));
    } else {
      TR_RETURN_IF_ERROR(Expect(tag, size, what));
      TR_ASSIGN_OR_RETURN(uint64_t id,
                          rc_.Put(send_, Offset(g % 2), peer_, recv_, Offset(g % 2), size, tag));
      // Checked after answering, so checking never sits in the round trip.
      TR_RETURN_IF_ERROR(Verify(RecvSlot(g % 2), e, full, what));
      TR_RETURN_IF_ERROR(rc_.WaitComplete(id, Deadline()));
    }
  }
  if (leader()) {
    const Summary s = Summarize(&samples);
    row->Set("mode", "lat").Set("size", size).Set("iters", iters);
    row->Set("proxy_p50_us", s.p50).Set("proxy_p99_us", s.p99);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ProxyRank::BandwidthPhase(uint64_t size, uint64_t base, uint64_t count) {
  const std::string what = absl::StrCat("proxy bw ", FormatSize(size));
  if (!leader()) {
    for (uint64_t k = 0; k < count; ++k) {
      const uint64_t g = base + k;
      TR_RETURN_IF_ERROR(Expect(g & kDataTagMask, size, what));
      // A later put to the same slot may already have landed: accepted.
      const Expectation e{size, kStreamBw, g, slots_, base + count - 1};
      TR_RETURN_IF_ERROR(Verify(RecvSlot(g), e, k == 0 || k + 1 == count, what));
    }
    TR_RETURN_IF_ERROR(rc_.Put(send_, 0, peer_, recv_, 0, 0, kTagAck).status());
    TR_RETURN_IF_ERROR(rc_.WaitAll(Deadline()));
    return 0;
  }
  std::vector<uint64_t> ids(count);
  const int64_t t0 = NowNanos();
  for (uint64_t k = 0; k < count; ++k) {
    const uint64_t g = base + k;
    // Slot g % slots_ was last used by g - slots_ <= g - window_: complete.
    if (k >= window_) TR_RETURN_IF_ERROR(rc_.WaitComplete(ids[k - window_], Deadline()));
    if (g >= slots_) StampPattern(SendSlot(g), size, kStreamBw, g);
    TR_ASSIGN_OR_RETURN(ids[k],
                        rc_.Put(send_, Offset(g), peer_, recv_, Offset(g), size, g & kDataTagMask));
  }
  TR_RETURN_IF_ERROR(Expect(kTagAck, 0, what));
  const int64_t elapsed = NowNanos() - t0;
  TR_RETURN_IF_ERROR(rc_.WaitAll(Deadline()));
  return elapsed;
}

absl::StatusOr<int64_t> ProxyRank::Bandwidth(uint64_t size) {
  const uint64_t iters = ItersFor(plan_, size), warmup = WarmupFor(plan_, iters);
  if (leader()) {
    for (uint64_t g = 0; g < slots_; ++g) FillPattern(SendSlot(g), size, kStreamBw, g);
  }
  TR_RETURN_IF_ERROR(BandwidthPhase(size, 0, warmup).status());
  return BandwidthPhase(size, warmup, iters);
}

Record ProxyRank::BandwidthRow(size_t i, const std::vector<std::vector<Record>>& direct) const {
  const uint64_t size = plan_.sizes[i], iters = ItersFor(plan_, size);
  const std::vector<int64_t>& ns = bw_ns_[i];
  std::vector<double> proxy_gbps, direct_gbps, ratios;
  for (size_t r = 0; r < ns.size(); ++r) {
    proxy_gbps.push_back(GigabytesPerSecond(static_cast<double>(size) * iters, ns[r] / 1e9));
    if (r >= direct.size()) continue;
    for (const Record& d : direct[r]) {
      if (d.GetString("mode").value_or("") != "bw" ||
          d.GetInt("size").value_or(-1) != static_cast<int64_t>(size)) {
        continue;
      }
      const double gbps = d.GetDouble("gbytes_per_s").value_or(0);
      direct_gbps.push_back(gbps);
      if (gbps > 0) ratios.push_back(proxy_gbps.back() / gbps);
    }
  }
  Record row;
  row.Set("mode", "bw").Set("size", size).Set("iters", iters);
  row.Set("window", static_cast<int64_t>(window_)).Set("rounds", static_cast<int64_t>(ns.size()));
  const double proxy = Summarize(&proxy_gbps).p50;
  row.Set("proxy_p50_us", proxy > 0 ? static_cast<double>(size) / proxy / 1e3 : 0.0);  // per put
  row.Set("proxy_gbytes_per_s", proxy);
  if (!direct_gbps.empty()) {
    const double direct_median = Summarize(&direct_gbps).p50;
    row.Set("direct_gbytes_per_s", direct_median);
    if (direct_median > 0) row.Set("ratio", proxy / direct_median);
  }
  if (!ratios.empty()) {
    const Summary pairs = Summarize(&ratios);
    row.Set("pair_ratio_min", pairs.min).Set("pair_ratio_max", pairs.max);
  }
  return row;
}

absl::Status ProxyRank::Direct(bool latency, bool bandwidth, std::vector<Record>* direct) {
  // Rank 1 listens on its node's address; the address reaches rank 0
  // through the proxy path itself.
  const absl::Time deadline = Deadline();
  if (!leader()) {
    TR_ASSIGN_OR_RETURN(transport::OobListener listener,
                        transport::OobListener::Listen(plan_.hosts[1], 0));
    const std::string address = absl::StrCat(plan_.hosts[1], ":", listener.port());
    std::memcpy(SendSlot(0), address.data(), address.size());
    TR_ASSIGN_OR_RETURN(uint64_t id,
                        rc_.Put(send_, 0, peer_, recv_, 0, address.size(), kTagAddress));
    TR_RETURN_IF_ERROR(rc_.WaitComplete(id, deadline));
    TR_ASSIGN_OR_RETURN(transport::OobChannel oob, listener.Accept(deadline));
    FollowerOptions fo;
    fo.name = "proxy-bench-direct-rank1";
    fo.timeout = plan_.timeout;
    return RunTransportFollower(fo, oob).status();
  }
  TR_ASSIGN_OR_RETURN(RankNotification n, rc_.WaitNotification(deadline));
  if (n.src_rank != peer_ || n.tag != kTagAddress || n.length == 0 || n.length > 256) {
    return absl::DataLossError(
        absl::StrCat("direct: bad address notification (rank ", n.src_rank, ", tag ", n.tag, ")"));
  }
  const std::string address(RecvSlot(0), n.length);
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port == 0 || port > 65535) {
    return absl::DataLossError(absl::StrCat("direct: bad peer address '", address, "'"));
  }
  TR_ASSIGN_OR_RETURN(transport::OobChannel oob,
                      transport::OobChannel::Connect(address.substr(0, colon),
                                                     static_cast<uint16_t>(port), deadline));
  TransportBenchOptions o;
  o.backend = "ucx";
  o.params = plan_.params;
  o.sizes = plan_.sizes;
  if (latency) o.modes.push_back(Mode::kLatency);
  if (bandwidth) o.modes.push_back(Mode::kBandwidth);
  o.iters = plan_.iters;
  o.min_iters = plan_.min_iters;
  o.max_bytes = plan_.max_bytes;
  o.warmup = plan_.warmup;
  o.window = window_;
  o.slot_bytes = kRegionBudget;
  o.baseline = Baseline::kNone;
  o.timeout = plan_.timeout;
  o.inter_node = true;
  TR_ASSIGN_OR_RETURN(*direct, RunTransportLeaderRecords(o, oob, "direct transport put"));
  return absl::OkStatus();
}

absl::Status ProxyRank::Run() {
  const runtime::RankTopology& t = rc_.topology();
  if (t.world_size != 2 || t.nodes != 2) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the proxy benchmark runs on 2 nodes x 1 rank, not ", t.nodes, " x ", t.ranks_per_node));
  }
  me_ = t.global_rank;
  peer_ = 1 - me_;
  const Layout layout = LayoutFor(plan_);
  stride_ = layout.stride;
  slots_ = layout.slots;
  window_ = layout.window;
  TR_ASSIGN_OR_RETURN(send_, rc_.AllocateSymmetric(layout.region_bytes));
  TR_ASSIGN_OR_RETURN(recv_, rc_.AllocateSymmetric(layout.region_bytes));
  TR_RETURN_IF_ERROR(rc_.Barrier(Deadline()));

  std::vector<Record> rows;
  if (leader() && plan_.ping_iters > 0) {
    Record row;
    TR_RETURN_IF_ERROR(Ping(&row));
    rows.push_back(std::move(row));
  }
  TR_RETURN_IF_ERROR(rc_.Barrier(Deadline()));
  for (size_t i = 0; plan_.latency && i < plan_.sizes.size(); ++i) {
    Record lat;
    TR_RETURN_IF_ERROR(Latency(plan_.sizes[i], &lat));
    TR_RETURN_IF_ERROR(rc_.Barrier(Deadline()));
    rows.push_back(std::move(lat));
  }
  // Bandwidth in rounds, proxy then direct, so both paths see the same
  // spells of a shared host's noise; each side's median filters its own.
  // Latency alone needs one direct run.
  bw_ns_.assign(plan_.sizes.size(), {});
  std::vector<std::vector<Record>> direct;  // [round]
  const uint32_t rounds = plan_.bandwidth ? plan_.rounds : 1;
  for (uint32_t round = 0; round < rounds; ++round) {
    for (size_t i = 0; plan_.bandwidth && i < plan_.sizes.size(); ++i) {
      TR_ASSIGN_OR_RETURN(const int64_t ns, Bandwidth(plan_.sizes[i]));
      TR_RETURN_IF_ERROR(rc_.Barrier(Deadline()));
      bw_ns_[i].push_back(ns);
    }
    if (!plan_.direct) continue;
    direct.emplace_back();
    TR_RETURN_IF_ERROR(Direct(plan_.latency && round == 0, plan_.bandwidth, &direct.back()));
    TR_RETURN_IF_ERROR(rc_.Barrier(Deadline()));
  }

  if (leader()) {
    for (size_t i = 0; plan_.bandwidth && i < plan_.sizes.size(); ++i) {
      rows.push_back(BandwidthRow(i, direct));
    }
    for (Record& row : rows) {
      Record out;
      out.Set("bench", "proxy").Set("network", plan_.network);
      for (const auto& [key, value] : row.fields()) {
        std::visit([&out, &key = key](const auto& v) { out.Set(key, v); }, value);
      }
      if (*row.GetString("mode") == "lat" && !direct.empty()) {
        for (const Record& d : direct[0]) {
          if (d.GetString("mode").value_or("") != "lat" ||
              d.GetInt("size").value_or(-1) != *row.GetInt("size")) {
            continue;
          }
          const double p50 = d.GetDouble("p50_us").value_or(0);
          out.Set("direct_p50_us", p50).Set("direct_p99_us", d.GetDouble("p99_us").value_or(0));
          const double proxy = *row.GetDouble("proxy_p50_us");
          if (proxy > 0) out.Set("ratio", p50 / proxy);
        }
      }
      out.Set("verified", true).Set("checked", checked_);
      Emit(absl::StrCat(kRowTag, out.ToJson()));
    }
  }
  return rc_.Detach();
}

}  // namespace

// -------------------------------------------------------------- plan blobs

std::string EncodeProxyPlan(const ProxyPlan& p) {
  ByteWriter w;
  w.Put<uint32_t>(static_cast<uint32_t>(p.sizes.size()));
  for (uint64_t s : p.sizes) w.Put<uint64_t>(s);
  for (uint64_t v : {p.iters, p.min_iters, p.max_bytes, p.warmup, p.ping_iters}) w.Put<uint64_t>(v);
  w.Put<uint32_t>(p.window);
  w.Put<uint32_t>(p.rounds);
  w.Put<uint8_t>((p.latency ? kTestLatency : 0) | (p.bandwidth ? kTestBandwidth : 0));
  w.Put<uint8_t>(p.direct ? 1 : 0);
  w.PutBytes(p.network);
  w.PutBytes(p.hosts[0]);
  w.PutBytes(p.hosts[1]);
  w.Put<uint32_t>(static_cast<uint32_t>(p.params.size()));
  for (const auto& [k, v] : p.params) {
    w.PutBytes(k);
    w.PutBytes(v);
  }
  w.Put<int64_t>(absl::ToInt64Milliseconds(p.timeout));
  return absl::StrCat(kPlanPrefix,
                      absl::BytesToHexString(SealBlob(kPlanMagic, kPlanVersion, w.data())));
}

absl::StatusOr<ProxyPlan> DecodeProxyPlan(absl::string_view arg) {
  if (!absl::ConsumePrefix(&arg, kPlanPrefix)) {
    return absl::InvalidArgumentError("proxy plan: missing 'proxy-plan:' prefix");
  }
  if (arg.size() % 2 != 0 ||
      !std::all_of(arg.begin(), arg.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return absl::InvalidArgumentError("proxy plan: not hexadecimal");
  }
  const std::string blob = absl::HexStringToBytes(arg);
  TR_ASSIGN_OR_RETURN(absl::string_view payload,
                      UnsealBlob(blob, kPlanMagic, kPlanVersion, "proxy plan"));
  ByteReader r(payload, "proxy plan");
  ProxyPlan p;
  TR_ASSIGN_OR_RETURN(const uint32_t count, r.Get<uint32_t>());
  if (count == 0 || count > 64) {
    return absl::InvalidArgumentError(absl::StrCat("proxy plan: ", count, " sizes"));
  }
  for (uint32_t i = 0; i < count; ++i) {
    TR_ASSIGN_OR_RETURN(const uint64_t s, r.Get<uint64_t>());
    if (s == 0 || s > (1ull << 30)) {
      return absl::InvalidArgumentError(absl::StrCat("proxy plan: size ", s));
    }
    p.sizes.push_back(s);
  }
  for (uint64_t* v : {&p.iters, &p.min_iters, &p.max_bytes, &p.warmup, &p.ping_iters}) {
    TR_ASSIGN_OR_RETURN(*v, r.Get<uint64_t>());
  }
  TR_ASSIGN_OR_RETURN(p.window, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(p.rounds, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(const uint8_t tests, r.Get<uint8_t>());
  if (tests == 0 || (tests & ~(kTestLatency | kTestBandwidth)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("proxy plan: tests 0x", absl::Hex(tests)));
  }
  p.latency = (tests & kTestLatency) != 0;
  p.bandwidth = (tests & kTestBandwidth) != 0;
  TR_ASSIGN_OR_RETURN(const uint8_t direct, r.Get<uint8_t>());
  p.direct = direct != 0;
  for (std::string* s : {&p.network, &p.hosts[0], &p.hosts[1]}) {
    TR_ASSIGN_OR_RETURN(absl::string_view v, r.GetBytes(256));
    *s = std::string(v);
  }
  TR_ASSIGN_OR_RETURN(const uint32_t params, r.Get<uint32_t>());
  if (params > 64)
    return absl::InvalidArgumentError(absl::StrCat("proxy plan: ", params, " params"));
  for (uint32_t i = 0; i < params; ++i) {
    TR_ASSIGN_OR_RETURN(absl::string_view k, r.GetBytes(256));
    TR_ASSIGN_OR_RETURN(absl::string_view v, r.GetBytes(4096));
    p.params[std::string(k)] = std::string(v);
  }
  TR_ASSIGN_OR_RETURN(const int64_t timeout_ms, r.Get<int64_t>());
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (p.iters == 0 || p.min_iters == 0 || p.max_bytes == 0 || p.window == 0 || p.window > 1024 ||
      p.rounds == 0 || p.rounds > kMaxRounds || timeout_ms <= 0) {
    return absl::InvalidArgumentError(
        "proxy plan: zero iterations, window, rounds or timeout, or too many rounds");
  }
  p.timeout = absl::Milliseconds(timeout_ms);
  return p;
}

bool IsProxyRankArgument(absl::string_view arg) { return absl::StartsWith(arg, kPlanPrefix); }

absl::Status RunProxyRank(absl::string_view arg) {
  TR_ASSIGN_OR_RETURN(ProxyPlan plan, DecodeProxyPlan(arg));
  TR_ASSIGN_OR_RETURN(runtime::AttachOptions options, runtime::AttachOptions::FromEnvironment());
  TR_ASSIGN_OR_RETURN(std::unique_ptr<RankClient> rc, RankClient::Attach(options));
  ProxyRank rank(*rc, std::move(plan));
  return rank.Run();
}

// ------------------------------------------------------------ orchestrator

Table ProxyTable() {
  using F = Table::Format;
  return Table({{"network", "network", F::kString, 8},
                {"mode", "mode", F::kString, 4},
                {"size", "size", F::kSize, 6},
                {"iters", "iters", F::kInt, 6},
                {"rounds", "rounds", F::kInt, 0},
                {"proxy_p50_us", "proxy_p50_us", F::kFixed2, 0},
                {"proxy_p99_us", "proxy_p99_us", F::kFixed2, 0},
                {"proxy_gbytes_per_s", "proxy_GB/s", F::kFixed3, 0},
                {"direct_p50_us", "direct_p50_us", F::kFixed2, 0},
                {"direct_gbytes_per_s", "direct_GB/s", F::kFixed3, 0},
                {"ratio", "ratio", F::kFixed2, 0},
                {"pair_ratio_min", "pair_min", F::kFixed2, 0},
                {"pair_ratio_max", "pair_max", F::kFixed2, 0},
                {"verified", "verified", F::kBool, 0}});
}

namespace {

// Rank 0's result rows go to the printer; everything else the cluster says
// goes to stderr, prefixed, so stdout holds only results.
class ResultSink : public launch::OutputSink {
 public:
  explicit ResultSink(Printer& printer)
      : printer_(printer), forward_(STDERR_FILENO, STDERR_FILENO) {}
  void Line(absl::string_view label, launch::Stream stream, absl::string_view line) override {
    if (label == "n0/r0") {
      absl::StatusOr<std::optional<Record>> r = Record::ParseTagged(kRowTag, line);
      if (!r.ok()) {
        error_ = r.status();
        return;
      }
      if (r->has_value()) {
        if (!(*r)->GetBool("verified").value_or(false)) verified_ = false;
        printer_.Row(**r);
        ++rows_;
        return;
      }
    }
    forward_.Line(label, stream, line);
  }
  size_t rows() const { return rows_; }
  bool verified() const { return verified_; }
  const absl::Status& error() const { return error_; }

 private:
  Printer& printer_;
  launch::PrefixingSink forward_;
  size_t rows_ = 0;
  bool verified_ = true;
  absl::Status error_;
};

}  // namespace

absl::Status RunProxyBench(const ProxyBenchOptions& options,
                           const std::vector<std::string>& self_argv, Printer& printer) {
  if (options.sizes.empty()) return absl::InvalidArgumentError("no sizes");
  if (!options.latency && !options.bandwidth) {
    return absl::InvalidArgumentError("no tests: choose lat, bw or both");
  }
  if (options.rounds == 0 || options.rounds > kMaxRounds) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rounds=", options.rounds, ": choose 1 to ", kMaxRounds));
  }
  if (self_argv.empty()) return absl::InvalidArgumentError("no rank command");
  const bool netns = options.network == ProxyNetwork::kNetns ||
                     (options.network == ProxyNetwork::kAuto && ::geteuid() == 0);
  ProxyPlan plan;
  plan.sizes = options.sizes;
  plan.iters = options.iters;
  plan.min_iters = options.min_iters;
  plan.max_bytes = options.max_bytes;
  plan.warmup = options.warmup;
  plan.window = options.window;
  plan.rounds = options.rounds;
  plan.latency = options.latency;
  plan.bandwidth = options.bandwidth;
  plan.ping_iters = options.ping_iters;
  plan.direct = options.direct;
  plan.timeout = options.timeout;
  plan.network = netns ? "netns" : "loopback";
  for (int node = 0; node < 2; ++node) {
    plan.hosts[node] = netns ? launch::NetnsCluster::NodeAddress(node) : "127.0.0.1";
  }
  // Both paths on TCP: between namespaces that is the emulated network; on
  // loopback it keeps the comparison on the same wire.
  plan.params = options.params;
  plan.params.emplace("tls", "tcp");
  if (netns) plan.params.emplace("net_devices", launch::NetnsCluster::kDevice);
  // Fails here, not in the ranks, when the options are inconsistent.
  {
    TransportBenchOptions check;
    check.sizes = plan.sizes;
    check.iters = plan.iters;
    check.min_iters = plan.min_iters;
    check.max_bytes = plan.max_bytes;
    check.warmup = plan.warmup;
    check.window = plan.window;
    check.timeout = plan.timeout;
    TR_RETURN_IF_ERROR(MakePlan(check, "ucx", "proxy-bench").status());
  }

  launch::LaunchOptions lo;
  lo.placement.nodes = 2;
  lo.placement.ranks_per_node = 1;
  lo.netns = netns;
  lo.job_name = "proxy-bench";
  lo.daemon_path = options.daemon_path.empty() ? launch::FindTokenraild() : options.daemon_path;
  lo.transport_params = FormatParams(plan.params);
  // Both regions must fit the rank's share of the arena, with room for the
  // rings: grow the daemon's default when large sizes need it.
  lo.arena_bytes = options.arena_bytes;
  if (lo.arena_bytes == 0) {
    lo.arena_bytes = std::max<uint64_t>(
        256ull << 20, RoundUp(2 * LayoutFor(plan).region_bytes + (64ull << 20), 1ull << 20));
  }
  lo.command = self_argv;
  lo.command.push_back(EncodeProxyPlan(plan));
  lo.failure_grace = absl::Seconds(5);
  TR_RETURN_IF_ERROR(launch::ValidateOptions(lo));

  printer.Section(absl::StrCat(
      "proxy puts (rank -> daemon -> daemon -> rank) vs direct ucx puts between the same two ",
      netns ? "network namespaces" : "processes on loopback", ", transport params ",
      FormatParams(plan.params),
      "\nratio: bw proxy/direct GB/s; lat direct/proxy p50 (1.0 = "
      "no overhead)"));
  ResultSink sink(printer);
  launch::Launcher launcher(std::move(lo), &sink);
  const int code = launcher.Run();
  TR_RETURN_IF_ERROR(sink.error());
  if (code != 0) {
    return absl::InternalError(
        absl::StrCat("the benchmark cluster failed (tokenrail-launch exit code ", code,
                     "); its output is above on stderr"));
  }
  if (sink.rows() == 0) return absl::InternalError("the benchmark ranks reported no results");
  if (!sink.verified()) return absl::DataLossError("a result failed verification");
  return absl::OkStatus();
}

}  // namespace bench
}  // namespace tokenrail
