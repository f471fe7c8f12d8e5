// The rank program of the multi-process tests, run by tokenrail-launch once
// per rank. It talks to its node's daemon through the rank client library
// and reports in machine-readable lines on stdout (the harness parses them):
//
//   TR_TOPOLOGY rank=R node=N local=L world=W nodes=N2 rpn=P
//   TR_RESULT rank=R ok=1 puts=.. notifications=.. bytes=..     (exchange)
//   TR_READY rank=R pid=P / TR_STREAMING rank=R                  (stream)
//   TR_FAULT rank=R node=N code=UNAVAILABLE unix_ms=T msg=...     (stream)
//   TR_ERROR rank=R code=.. msg=..                                (any failure)
//
// --mode=exchange: every rank puts encoded messages of several sizes to
//   every rank (itself, its node, the other nodes), checks every received
//   byte and that each source's notifications arrive in post order, waits
//   for its puts, barriers, re-checks everything, detaches. Exit 0.
// --mode=stream: puts to every peer in a loop until the runtime reports a
//   failure (the harness kills a rank or a daemon meanwhile), then prints
//   TR_FAULT with the error and the wall-clock time it was seen. Exit 3.
//   With no failure within --stream_seconds it prints TR_NOFAULT, exit 2.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/init.h"
#include "common/status.h"
#include "runtime/client/client.h"
#include "transport/conformance/pattern.h"

ABSL_FLAG(std::string, mode, "exchange", "exchange | stream");
ABSL_FLAG(int, iterations, 5, "exchange: messages per (source, destination) pair");
ABSL_FLAG(int, stream_bytes, 65536, "stream: bytes per put");
ABSL_FLAG(double, stream_seconds, 60, "stream: give up (TR_NOFAULT) after this long");

namespace tokenrail {
namespace {

using runtime::RankClient;
using runtime::RankNotification;
using runtime::Region;

// Sizes cycle through these: 1 byte, odd sizes, a page and a bit, 256 KiB + 3.
constexpr size_t kSizes[] = {1, 100, 4099, 65536, 262147};
constexpr size_t kSlot = 262147 + 13;  // room for the largest, odd stride on purpose
constexpr absl::Duration kWait = absl::Seconds(60);

int g_rank = -1;

void Report(const std::string& line) {
  // One write per line: the launcher forwards whole lines.
  const std::string text = line + "\n";
  [[maybe_unused]] ssize_t n = ::write(STDOUT_FILENO, text.data(), text.size());
}

int64_t UnixMillis() { return absl::ToUnixMillis(absl::Now()); }

int ReportError(const absl::Status& s) {
  Report(absl::StrCat("TR_ERROR rank=", g_rank, " code=", absl::StatusCodeToString(s.code()),
                      " msg=", s.message()));
  return 1;
}

uint64_t Seed(int src, int dst, int iteration) {
  return (uint64_t{static_cast<uint32_t>(src)} << 40) ^
         (uint64_t{static_cast<uint32_t>(dst)} << 20) ^ static_cast<uint64_t>(iteration) ^
         0x5eed0000000000ull;
}

int EnvInt(const char* name) {
  const char* v = std::getenv(name);
  int out = -1;
  if (v == nullptr || !absl::SimpleAtoi(v, &out)) return -1;
  return out;
}

// The topology the daemon reports must match what the launcher told us.
absl::Status CheckTopology(const runtime::RankTopology& t) {
  Report(absl::StrCat("TR_TOPOLOGY rank=", t.global_rank, " node=", t.node_id,
                      " local=", t.local_rank, " world=", t.world_size, " nodes=", t.nodes,
                      " rpn=", t.ranks_per_node, " job=", t.job_id));
  const struct {
    const char* var;
    int have;
  } checks[] = {{"RANK", t.global_rank},
                {"WORLD_SIZE", t.world_size},
                {"LOCAL_RANK", t.local_rank},
                {"LOCAL_WORLD_SIZE", t.ranks_per_node},
                {"TOKENRAIL_NODE_ID", t.node_id}};
  for (const auto& c : checks) {
    if (EnvInt(c.var) != c.have) {
      return absl::InternalError(
          absl::StrCat("topology: ", c.var, "=", EnvInt(c.var), " but the daemon says ", c.have));
    }
  }
  if (t.global_rank != t.node_id * t.ranks_per_node + t.local_rank ||
      t.world_size != t.nodes * t.ranks_per_node) {
    return absl::InternalError("topology: global rank or world size inconsistent");
  }
  const char* job = std::getenv("TOKENRAIL_JOB_ID");
  if (job == nullptr || t.job_id != job) {
    return absl::InternalError(absl::StrCat("topology: job ", t.job_id, " != TOKENRAIL_JOB_ID"));
  }
  return absl::OkStatus();
}

absl::Status Exchange(RankClient& rc) {
  const runtime::RankTopology& t = rc.topology();
  const int world = t.world_size, me = t.global_rank;
  const int iters = absl::GetFlag(FLAGS_iterations);
  const size_t slots = static_cast<size_t>(world) * iters;
  // Symmetric: the same two allocations in the same order on every rank.
  TR_ASSIGN_OR_RETURN(Region send, rc.AllocateSymmetric(slots * kSlot));
  TR_ASSIGN_OR_RETURN(Region recv, rc.AllocateSymmetric(slots * kSlot));
  std::memset(recv.data, 0, recv.size);
  auto slot = [iters](int peer, int it) {
    return (static_cast<size_t>(peer) * iters + it) * kSlot;
  };
  auto size_of = [](int it) { return kSizes[it % (sizeof(kSizes) / sizeof(kSizes[0]))]; };
  // Nobody may put into a region before its owner cleared it.
  TR_RETURN_IF_ERROR(rc.Barrier(absl::Now() + kWait));

  uint64_t puts = 0, bytes = 0;
  for (int it = 0; it < iters; ++it) {
    for (int k = 0; k < world; ++k) {
      const int dst = (me + k) % world;  // spread the load: not everyone at rank 0 first
      uint8_t* src = static_cast<uint8_t*>(send.data) + slot(dst, it);
      transport::FillPattern(src, size_of(it), Seed(me, dst, it));
      TR_RETURN_IF_ERROR(
          rc.Put(send, slot(dst, it), dst, recv, slot(me, it), size_of(it), it).status());
      ++puts;
      bytes += size_of(it);
    }
  }

  // Every source sends `iters` notifications, tags 0, 1, 2, ... in order.
  std::vector<int> next_tag(world, 0);
  uint64_t notifications = 0;
  const absl::Time deadline = absl::Now() + kWait;
  while (notifications < static_cast<uint64_t>(world) * iters) {
    TR_ASSIGN_OR_RETURN(RankNotification n, rc.WaitNotification(deadline));
    if (n.src_rank < 0 || n.src_rank >= world) {
      return absl::DataLossError(absl::StrCat("notification from unknown rank ", n.src_rank));
    }
    const int it = next_tag[n.src_rank];
    if (it >= iters || n.tag != static_cast<uint32_t>(it)) {
      return absl::DataLossError(absl::StrCat("from rank ", n.src_rank, ": tag ", n.tag,
                                              " arrived, expected ", it, " (order broken)"));
    }
    if (n.length != size_of(it)) {
      return absl::DataLossError(absl::StrCat("from rank ", n.src_rank, " tag ", it, ": length ",
                                              n.length, ", expected ", size_of(it)));
    }
    const uint8_t* got = static_cast<const uint8_t*>(recv.data) + slot(n.src_rank, it);
    const size_t bad = transport::FirstPatternMismatch(got, n.length, Seed(n.src_rank, me, it));
    if (bad != n.length) {
      return absl::DataLossError(absl::StrCat("from rank ", n.src_rank, " tag ", it, ": byte ", bad,
                                              " of ", n.length, " is wrong"));
    }
    ++next_tag[n.src_rank];
    ++notifications;
  }
  TR_RETURN_IF_ERROR(rc.WaitAll(absl::Now() + kWait));
  TR_RETURN_IF_ERROR(rc.Barrier(absl::Now() + kWait));
  // After the barrier nothing may still be writing: everything intact.
  for (int src = 0; src < world; ++src) {
    for (int it = 0; it < iters; ++it) {
      const uint8_t* got = static_cast<const uint8_t*>(recv.data) + slot(src, it);
      if (transport::FirstPatternMismatch(got, size_of(it), Seed(src, me, it)) != size_of(it)) {
        return absl::DataLossError(
            absl::StrCat("slot of rank ", src, " tag ", it, " changed after the barrier"));
      }
    }
  }
  TR_RETURN_IF_ERROR(rc.Detach());
  Report(absl::StrCat("TR_RESULT rank=", me, " ok=1 puts=", puts, " notifications=", notifications,
                      " bytes=", bytes));
  return absl::OkStatus();
}

// Streams puts until the runtime reports a failure. Returns the exit code.
int Stream(RankClient& rc) {
  const runtime::RankTopology& t = rc.topology();
  const int world = t.world_size, me = t.global_rank;
  const size_t bytes = static_cast<size_t>(absl::GetFlag(FLAGS_stream_bytes));
  auto fault = [&](const absl::Status& s) {
    Report(absl::StrCat("TR_FAULT rank=", me, " node=", t.node_id,
                        " code=", absl::StatusCodeToString(s.code()), " unix_ms=", UnixMillis(),
                        " msg=", s.message()));
    return 3;
  };
  absl::StatusOr<Region> send = rc.AllocateSymmetric(bytes * world);
  if (!send.ok()) return fault(send.status());
  absl::StatusOr<Region> recv = rc.AllocateSymmetric(bytes * world);
  if (!recv.ok()) return fault(recv.status());
  std::memset(send->data, me, send->size);
  if (absl::Status s = rc.Barrier(absl::Now() + kWait); !s.ok()) return fault(s);
  Report(absl::StrCat("TR_READY rank=", me, " pid=", ::getpid()));

  const absl::Time give_up = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_stream_seconds));
  RankNotification notes[64];
  for (uint64_t round = 0; absl::Now() < give_up; ++round) {
    for (int k = 1; k < world; ++k) {
      const int dst = (me + k) % world;
      absl::StatusOr<uint64_t> id = rc.Put(*send, dst * bytes, dst, *recv, me * bytes, bytes,
                                           static_cast<uint32_t>(round & 0xffff));
      if (!id.ok()) return fault(id.status());
    }
    // Bounded by the runtime's failure detection, not by this deadline.
    if (absl::Status s = rc.WaitAll(absl::Now() + kWait); !s.ok()) return fault(s);
    for (;;) {
      absl::StatusOr<size_t> n = rc.PollNotifications(notes, 64);
      if (!n.ok()) return fault(n.status());
      if (*n == 0) break;
    }
    if (round == 0) Report(absl::StrCat("TR_STREAMING rank=", me));
  }
  Report(absl::StrCat("TR_NOFAULT rank=", me));
  return 2;
}

int Main(int argc, char** argv) {
  InitMain(argc, argv, "cluster_rank --mode=exchange|stream (run by tokenrail-launch)");
  g_rank = EnvInt("RANK");
  absl::StatusOr<runtime::AttachOptions> options = runtime::AttachOptions::FromEnvironment();
  if (!options.ok()) return ReportError(options.status());
  absl::StatusOr<std::unique_ptr<RankClient>> rc = RankClient::Attach(*options);
  if (!rc.ok()) return ReportError(rc.status());
  if (absl::Status s = CheckTopology((*rc)->topology()); !s.ok()) return ReportError(s);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "stream") return Stream(**rc);
  if (mode != "exchange") return ReportError(absl::InvalidArgumentError("--mode: " + mode));
  if (absl::Status s = Exchange(**rc); !s.ok()) return ReportError(s);
  return 0;
}

}  // namespace
}  // namespace tokenrail

int main(int argc, char** argv) { return tokenrail::Main(argc, argv); }
