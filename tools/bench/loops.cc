#include "tools/bench/loops.h"

#include <sched.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/status.h"
#include "tools/bench/pattern.h"
#include "tools/bench/report.h"

namespace tokenrail {
namespace bench {
namespace {

using transport::Endpoint;
using transport::Notification;
using transport::Ticket;

constexpr int kSpinsBeforeYield = 1 << 14;

// Busy-polls like a latency benchmark must, then yields the core (two
// processes share two cores here), and enforces "no progress for `timeout`".
class Watchdog {
 public:
  explicit Watchdog(absl::Duration timeout)
      : timeout_ns_(absl::ToInt64Nanoseconds(timeout)), last_progress_(NowNanos()) {}

  void Progressed() {
    idle_ = 0;
    check_ = 0;
    last_progress_ = 0;  // refreshed lazily: reading the clock per event costs
  }
  // Call when an iteration of a wait loop did nothing; true when expired.
  bool Idle() {
    if (++idle_ > kSpinsBeforeYield) sched_yield();
    if ((++check_ & 255) != 0) return false;
    const int64_t now = NowNanos();
    if (last_progress_ == 0) last_progress_ = now;
    return now - last_progress_ > timeout_ns_;
  }

 private:
  int64_t timeout_ns_;
  int64_t last_progress_;
  int idle_ = 0;
  uint32_t check_ = 0;
};

std::string Where(const TestSpec& t) { return absl::StrCat(ModeName(t.mode), " size ", t.size); }

absl::StatusOr<Notification> AwaitNotification(Endpoint& ep, const TestSpec& t,
                                               absl::Duration timeout, uint64_t iteration) {
  Watchdog dog(timeout);
  Notification n;
  while (true) {
    TR_ASSIGN_OR_RETURN(size_t got, ep.PollNotifications(&n, 1));
    if (got == 1) return n;
    if (dog.Idle()) {
      return absl::DeadlineExceededError(absl::StrCat(Where(t), ": no notification for iteration ",
                                                      iteration, " from '", ep.peer_name(),
                                                      "' within ", absl::FormatDuration(timeout)));
    }
  }
}

// Records the first data error of a side; later ones add nothing new.
void KeepFirstError(absl::Status* first, absl::Status s) {
  if (first->ok() && !s.ok()) *first = std::move(s);
}

absl::Status CheckNotification(const Notification& n, const TestSpec& t, uint64_t iteration) {
  if (n.imm != static_cast<uint32_t>(iteration) || n.length != t.size) {
    return absl::DataLossError(
        absl::StrCat(Where(t), ": notification out of order or wrong length: expected iteration ",
                     static_cast<uint32_t>(iteration), " of ", t.size, " bytes, got imm ", n.imm,
                     " of ", n.length, " bytes"));
  }
  return absl::OkStatus();
}

// Checks the message of `iteration` in target slot iteration % slots.
absl::Status CheckData(const char* target, const TestSpec& t, uint32_t stream, uint64_t iteration,
                       uint64_t last_iteration, bool full) {
  Expectation e;
  e.size = t.size;
  e.stream = stream;
  e.iteration = iteration;
  e.period = t.slots;
  e.last_iteration = last_iteration;
  const char* data = target + (iteration % t.slots) * t.stride;
  absl::Status s = full                       ? VerifyFull(data, e)
                   : t.mode == Mode::kLatency ? VerifySampled(data, e)
                                              : VerifySpot(data, e);
  if (s.ok()) return s;
  return Annotate(s, absl::StrCat(Where(t), ", puts ",
                                  stream % 2 == 0 ? "leader->follower" : "follower->leader"));
}

void PrepareSource(char* source, const TestSpec& t, uint32_t stream) {
  for (uint32_t slot = 0; slot < t.slots; ++slot) {
    FillPattern(source + slot * t.stride, t.size, stream, slot);
  }
}

// Stamps the source slot for `iteration`, corrupting it when asked to.
void StampSource(char* source, const TestSpec& t, uint32_t stream, uint64_t iteration,
                 int64_t corrupt_at) {
  char* slot = source + (iteration % t.slots) * t.stride;
  StampPattern(slot, t.size, stream, iteration);
  if (corrupt_at >= 0 && iteration == static_cast<uint64_t>(corrupt_at)) slot[0] ^= 0x5a;
}

// ------------------------------------------------------------- latency

absl::StatusOr<SideResult> RunLatency(Session& s, const TestSpec& t, bool initiator,
                                      int64_t corrupt_at) {
  Endpoint& ep = s.endpoint();
  char* source = static_cast<char*>(s.source().data());
  const char* target = static_cast<const char*>(s.target().data());
  const uint32_t send_stream = StreamId(t.mode, initiator);
  const uint32_t recv_stream = StreamId(t.mode, !initiator);
  const uint64_t total = t.warmup + t.iters;
  PrepareSource(source, t, send_stream);
  SideResult r;
  r.samples_us.reserve(t.iters);
  Ticket tickets[2] = {0, 0};
  TR_RETURN_IF_ERROR(s.Barrier());
  for (uint64_t i = 0; i < total; ++i) {
    const uint64_t slot = i % 2;
    const uint64_t offset = slot * t.stride;
    if (tickets[slot] != 0) {
      TR_RETURN_IF_ERROR(ep.WaitComplete(tickets[slot], absl::Now() + s.timeout()));
    }
    StampSource(source, t, send_stream, i, corrupt_at);
    Notification n;
    if (initiator) {
      const int64_t t0 = NowNanos();
      TR_ASSIGN_OR_RETURN(tickets[slot], ep.Put(s.source(), offset, s.peer_target(), offset, t.size,
                                                static_cast<uint32_t>(i)));
      TR_ASSIGN_OR_RETURN(n, AwaitNotification(ep, t, s.timeout(), i));
      const int64_t t1 = NowNanos();
      if (i >= t.warmup) r.samples_us.push_back(static_cast<double>(t1 - t0) / 2e3);
    } else {
      TR_ASSIGN_OR_RETURN(n, AwaitNotification(ep, t, s.timeout(), i));
      TR_ASSIGN_OR_RETURN(tickets[slot], ep.Put(s.source(), offset, s.peer_target(), offset, t.size,
                                                static_cast<uint32_t>(i)));
    }
    // The peer writes slot i % 2 again only after this side answered i + 1,
    // so the check is exact and races with nothing.
    KeepFirstError(&r.verify, CheckNotification(n, t, i));
    const bool full = i == 0 || i + 1 == total;
    KeepFirstError(&r.verify, CheckData(target, t, recv_stream, i, i, full));
    r.full_checks += full;
    ++r.received;
  }
  for (Ticket ticket : tickets) {
    if (ticket != 0) TR_RETURN_IF_ERROR(ep.WaitComplete(ticket, absl::Now() + s.timeout()));
  }
  return r;
}

// ------------------------------------------------------------- bandwidth

constexpr uint32_t kAckMagic = 0x41425254;  // "TRBA"

std::string PackAck(uint64_t first, uint64_t count) {
  ByteWriter w;
  w.Put<uint32_t>(kAckMagic);
  w.Put<uint64_t>(first);
  w.Put<uint64_t>(count);
  return w.Release();
}

absl::Status CheckAck(absl::string_view msg, uint64_t first, uint64_t count, const TestSpec& t) {
  ByteReader r(msg, "bench ack");
  TR_ASSIGN_OR_RETURN(uint32_t magic, r.Get<uint32_t>());
  TR_ASSIGN_OR_RETURN(uint64_t got_first, r.Get<uint64_t>());
  TR_ASSIGN_OR_RETURN(uint64_t got_count, r.Get<uint64_t>());
  TR_RETURN_IF_ERROR(r.ExpectEnd());
  if (magic != kAckMagic || got_first != first || got_count != count) {
    return absl::InvalidArgumentError(absl::StrCat(Where(t), ": unexpected ack (iterations ",
                                                   got_first, "+", got_count, ", expected ", first,
                                                   "+", count, ")"));
  }
  return absl::OkStatus();
}

struct StreamRole {
  bool send = false;
  bool recv = false;
  uint32_t send_stream = 0;
  uint32_t recv_stream = 0;
  int64_t corrupt_at = -1;
};

// One phase: iterations [first, first + count) in each active direction.
absl::Status RunPhase(Session& s, const TestSpec& t, const StreamRole& role, uint64_t first,
                      uint64_t count, bool timed, SideResult* r) {
  Endpoint& ep = s.endpoint();
  char* source = static_cast<char*>(s.source().data());
  const char* target = static_cast<const char*>(s.target().data());
  const uint64_t last_iteration = t.warmup + t.iters - 1;
  const uint32_t window = t.window;
  std::vector<Ticket> tickets(window, 0);
  uint64_t posted = 0, completed = 0, received = 0;
  bool acked = !role.send || count == 0;
  bool receiving = role.recv && count > 0;
  int64_t start = 0, mark = 0;
  uint64_t in_chunk = 0;
  Notification batch[64];
  std::string message;
  Watchdog dog(s.timeout());

  while (!acked || receiving) {
    bool progressed = false;
    if (role.send) {
      // Reclaim completed puts in order; a slot is restamped only after its
      // previous put completed (window <= slots guarantees it is reclaimed).
      while (completed < posted) {
        TR_ASSIGN_OR_RETURN(bool done, ep.IsComplete(tickets[completed % window]));
        if (!done) break;
        ++completed;
        progressed = true;
      }
      if (posted < count && posted - completed < window) {
        const uint64_t i = first + posted;
        const uint64_t offset = (i % t.slots) * t.stride;
        StampSource(source, t, role.send_stream, i, role.corrupt_at);
        if (posted == 0) start = mark = NowNanos();
        TR_ASSIGN_OR_RETURN(
            tickets[posted % window],
            ep.Put(s.source(), offset, s.peer_target(), offset, t.size, static_cast<uint32_t>(i)));
        ++posted;
        progressed = true;
        if (timed && ++in_chunk == window) {
          const int64_t now = NowNanos();
          r->samples_us.push_back(static_cast<double>(now - mark) / 1e3 / window);
          mark = now;
          in_chunk = 0;
        }
      }
      if (!acked && posted == count) {
        TR_ASSIGN_OR_RETURN(bool got, ep.PollMessage(&message));
        if (got) {
          const int64_t end = NowNanos();
          TR_RETURN_IF_ERROR(CheckAck(message, first, count, t));
          acked = true;
          progressed = true;
          if (timed) {
            r->send_ns = end - start;
            if (in_chunk > 0) {
              r->samples_us.push_back(static_cast<double>(end - mark) / 1e3 / in_chunk);
            }
          }
        }
      }
    }
    if (receiving) {
      TR_ASSIGN_OR_RETURN(size_t got, ep.PollNotifications(batch, 64));
      for (size_t j = 0; j < got; ++j) {
        const uint64_t i = first + received;
        KeepFirstError(&r->verify, CheckNotification(batch[j], t, i));
        const bool full = i == 0;
        KeepFirstError(&r->verify, CheckData(target, t, role.recv_stream, i, last_iteration, full));
        r->full_checks += full;
        ++received;
      }
      if (got > 0) progressed = true;
      if (received >= count) {
        if (received > count) {
          return absl::DataLossError(
              absl::StrCat(Where(t), ": ", received, " notifications for ", count, " puts"));
        }
        TR_RETURN_IF_ERROR(ep.SendMessage(PackAck(first, count)));
        receiving = false;
      }
    }
    if (progressed) {
      dog.Progressed();
    } else if (dog.Idle()) {
      return absl::DeadlineExceededError(
          absl::StrCat(Where(t), ": no progress with '", ep.peer_name(), "' for ",
                       absl::FormatDuration(s.timeout()), " (posted ", posted, "/",
                       role.send ? count : 0, ", completed ", completed, ", received ", received,
                       "/", role.recv ? count : 0, ", acked ", acked ? "yes" : "no", ")"));
    }
  }
  // Untimed: every put locally complete, so the next phase may restamp.
  while (completed < posted) {
    TR_RETURN_IF_ERROR(ep.WaitComplete(tickets[completed % window], absl::Now() + s.timeout()));
    ++completed;
  }
  r->received += received;
  return absl::OkStatus();
}

absl::StatusOr<SideResult> RunStream(Session& s, const TestSpec& t, bool is_leader,
                                     int64_t corrupt_at) {
  StreamRole role;
  role.send = is_leader || t.mode == Mode::kBidirectional;
  role.recv = !is_leader || t.mode == Mode::kBidirectional;
  role.send_stream = StreamId(t.mode, is_leader);
  role.recv_stream = StreamId(t.mode, !is_leader);
  role.corrupt_at = corrupt_at;
  if (role.send) PrepareSource(static_cast<char*>(s.source().data()), t, role.send_stream);
  SideResult r;
  r.samples_us.reserve(t.iters / t.window + 2);
  TR_RETURN_IF_ERROR(s.Barrier());
  TR_RETURN_IF_ERROR(RunPhase(s, t, role, 0, t.warmup, /*timed=*/false, &r));
  // Both sides start the timed phase together (bidirectional needs it).
  TR_RETURN_IF_ERROR(s.Barrier());
  TR_RETURN_IF_ERROR(RunPhase(s, t, role, t.warmup, t.iters, /*timed=*/true, &r));
  if (role.recv) {
    // Nothing writes the slot of the last iteration any more: exact check.
    const uint64_t last = t.warmup + t.iters - 1;
    KeepFirstError(&r.verify, CheckData(static_cast<const char*>(s.target().data()), t,
                                        role.recv_stream, last, last, /*full=*/true));
    ++r.full_checks;
  }
  return r;
}

}  // namespace

uint32_t StreamId(Mode mode, bool from_leader) {
  return static_cast<uint32_t>(mode) * 2 + (from_leader ? 0 : 1);
}

absl::StatusOr<SideResult> RunTest(Session& session, const TestSpec& test, bool is_leader,
                                   int64_t corrupt_iteration) {
  const int64_t corrupt_at = is_leader && corrupt_iteration >= 0
                                 ? static_cast<int64_t>(test.warmup) + corrupt_iteration
                                 : -1;
  return test.mode == Mode::kLatency ? RunLatency(session, test, is_leader, corrupt_at)
                                     : RunStream(session, test, is_leader, corrupt_at);
}

}  // namespace bench
}  // namespace tokenrail
