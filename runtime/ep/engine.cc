// The engine: region setup, the operation queue and the progress loop.
#include "runtime/ep/engine.h"

#include <sched.h>

#include <atomic>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "runtime/arena/doorbell.h"

namespace tokenrail {
namespace ep {
namespace {

constexpr char kLog[] = "ep";
// Idle policy: poll this long after the last progress (the latency path),
// then sleep on the bell in slices. With remote peers the slices stay short:
// the daemon's notifications do not ring our bell.
constexpr int64_t kSpinNs = 20'000;
constexpr int64_t kRemoteSliceNs = 50'000;
constexpr int64_t kLocalSliceNs = 2'000'000;
constexpr size_t kNotificationBatch = 64;
// How long a closing buffer waits for its last credits (its peers may still
// be finishing the last operation).
constexpr absl::Duration kQuiesceTimeout = absl::Seconds(30);
// A stalled operation refreshes its Progress() note this often.
constexpr int64_t kProgressNoteNs = 1'000'000'000;

std::atomic<uint64_t> g_next_engine_id{1};

}  // namespace

absl::StatusOr<bool> Wiring::ReturnCredits() {
  bool all = true;
  for (std::vector<InboundStream>* streams : {&d_in, &c_in}) {
    for (InboundStream& in : *streams) {
      TR_ASSIGN_OR_RETURN(
          bool ok, in.ReturnCredits(puts, plan.credit_source_offset, plan.credit_sink_offset));
      all = all && ok;
    }
  }
  return all;
}

EpOpStats Wiring::Counters() const {
  EpOpStats s;
  auto add = [&s](const StreamBytes& b, bool sent_by_me) {
    if (sent_by_me) {
      s.inter_node_record_bytes += b.records;
      s.inter_node_records += b.record_count;
      s.inter_node_metadata_bytes += b.metadata;
      s.inter_node_chunks += b.chunks;
    }
    s.inter_node_credit_bytes += b.credits;
  };
  for (const OutboundStream& o : d_out) add(o.bytes(), true);
  for (const OutboundStream& o : c_out) add(o.bytes(), true);
  for (const InboundStream& i : d_in) add(i.bytes(), false);
  for (const InboundStream& i : c_in) add(i.bytes(), false);
  s.intra_node_bytes = intra_bytes;
  s.intra_node_records = intra_records;
  s.self_bytes = self_bytes;
  return s;
}

Engine::Engine() : id_(g_next_engine_id.fetch_add(1)) {}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EpComm* comm, const EpConfig& config) {
  TR_RETURN_IF_ERROR(Validate(config));
  const CommTopology& t = comm->topology();
  if (t.nodes != config.topology.nodes || t.ranks_per_node != config.topology.ranks_per_node) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EpBuffer: the config says ", config.topology.nodes, " nodes x ",
        config.topology.ranks_per_node, " ranks, the job has ", t.nodes, " x ", t.ranks_per_node));
  }
  TR_ASSIGN_OR_RETURN(BufferPlan plan, MakeBufferPlan(config));
  const absl::Time deadline = absl::Now() + config.setup_timeout;
  absl::StatusOr<CommRegion> region = comm->AllocateSymmetric(plan.total_bytes, deadline);
  if (!region.ok()) {
    return Annotate(region.status(), absl::StrCat("EpBuffer: allocating the symmetric region of ",
                                                  plan.total_bytes, " bytes"));
  }
  std::unique_ptr<Engine> engine(new Engine());
  Wiring& w = engine->w_;
  w.comm = comm;
  w.config = config;
  w.plan = plan;
  w.hash = ConfigFingerprint(config);
  w.topo = t;
  w.me = t.global_rank;
  w.node = t.node;
  w.local = t.local_rank;
  w.R = t.ranks_per_node;
  w.N = t.nodes;
  w.W = t.world_size;
  w.P = plan.peers;
  w.S = plan.sub_streams;
  w.epr = plan.experts_per_rank;
  w.region = *region;
  char* base = static_cast<char*>(w.region.data);
  // Nobody writes into our region before the barrier below: start from
  // clean counters whatever the memory held.
  std::memset(base, 0, plan.fwd_offset);
  w.bell = reinterpret_cast<EngineBell*>(base + plan.bell_offset);
  TR_RETURN_IF_ERROR(Annotate(comm->Barrier(deadline), "EpBuffer: setup barrier"));

  std::vector<char*> peer_base(static_cast<size_t>(w.R));
  for (int j = 0; j < w.R; ++j) {
    peer_base[j] = static_cast<char*>(comm->LocalPeerData(w.region, j));
    if (peer_base[j] == nullptr) {
      return absl::InternalError(
          absl::StrCat("EpBuffer: no access to local rank ", j, "'s copy of region ", w.region.id));
    }
  }
  auto bell_of = [&](int j) {
    return reinterpret_cast<EngineBell*>(peer_base[j] + plan.bell_offset);
  };
  for (int j = 0; j < w.R; ++j) {
    char* jb = peer_base[j];
    const int rank_j = w.node * w.R + j;
    w.fwd_out.emplace_back(reinterpret_cast<RingCounters*>(jb + plan.fwd_counters(w.local)),
                           jb + plan.fwd_ring(w.local), plan.drec.size, plan.fwd_slots, bell_of(j),
                           absl::StrCat("dispatch channel ", w.me, "->", rank_j));
    w.fwd_in.emplace_back(reinterpret_cast<RingCounters*>(base + plan.fwd_counters(j)),
                          base + plan.fwd_ring(j), plan.drec.size, plan.fwd_slots, bell_of(j),
                          absl::StrCat("dispatch channel ", rank_j, "->", w.me));
  }
  for (int j = 0; j < w.R; ++j) {
    char* jb = peer_base[j];
    const int rank_j = w.node * w.R + j;
    for (int s = 0; s < w.S; ++s) {
      w.rev_out.emplace_back(
          reinterpret_cast<RingCounters*>(jb + plan.rev_counters(w.local, s)),
          jb + plan.rev_ring(w.local, s), plan.crec.size, plan.rev_slots, bell_of(j),
          absl::StrCat("combine channel ", w.me, "->", rank_j, " (node ", s, ")"));
      w.rev_in.emplace_back(
          reinterpret_cast<RingCounters*>(base + plan.rev_counters(j, s)),
          base + plan.rev_ring(j, s), plan.crec.size, plan.rev_slots, bell_of(j),
          absl::StrCat("combine channel ", rank_j, "->", w.me, " (node ", s, ")"));
    }
  }
  w.d_out.resize(static_cast<size_t>(w.P));
  w.c_out.resize(static_cast<size_t>(w.P));
  w.d_in.resize(static_cast<size_t>(w.P));
  w.c_in.resize(static_cast<size_t>(w.P));
  for (int q = 0; q < w.P; ++q) {
    const int peer = w.PeerRank(q);
    const int back = plan.PeerIndex(peer, w.me);  // our index among the peer's peers
    OutboundStream::Params o;
    o.peer_rank = peer;
    o.chunks = plan.chunks;
    o.config_hash = w.hash;
    o.stage_offset = plan.dispatch_out(q);
    o.remote_offset = plan.dispatch_in(back);
    o.chunk_bytes = plan.dchunk_bytes;
    o.max_records = plan.dchunk_records;
    o.record_bytes = plan.drec.size;
    o.data_kind = TagKind::kDispatchData;
    o.name = absl::StrCat("dispatch stream ", w.me, "->", peer);
    w.d_out[q].Init(&w.region, o);
    o.stage_offset = plan.combine_out(q);
    o.remote_offset = plan.combine_in(back);
    o.chunk_bytes = plan.cchunk_bytes;
    o.max_records = plan.cchunk_records;
    o.record_bytes = plan.crec.size;
    o.data_kind = TagKind::kCombineData;
    o.name = absl::StrCat("combine stream ", w.me, "->", peer);
    w.c_out[q].Init(&w.region, o);
    InboundStream::Params i;
    i.peer_rank = peer;
    i.chunks = plan.chunks;
    i.config_hash = w.hash;
    i.ring_offset = plan.dispatch_in(q);
    i.chunk_bytes = plan.dchunk_bytes;
    i.record_bytes = plan.drec.size;
    i.credit_kind = TagKind::kDispatchCredit;
    i.name = absl::StrCat("dispatch stream ", peer, "->", w.me);
    w.d_in[q].Init(&w.region, i);
    i.ring_offset = plan.combine_in(q);
    i.chunk_bytes = plan.cchunk_bytes;
    i.record_bytes = plan.crec.size;
    i.credit_kind = TagKind::kCombineCredit;
    i.name = absl::StrCat("combine stream ", peer, "->", w.me);
    w.c_in[q].Init(&w.region, i);
  }
  w.puts.Init(comm, comm->max_outstanding_puts());
  {
    absl::MutexLock lock(&engine->stats_mu_);
    engine->stats_.tokens_per_expert.assign(static_cast<size_t>(w.epr), 0);
  }
  Engine* raw = engine.get();
  engine->thread_ = std::thread([raw] { raw->Run(); });
  TR_VLOG(1, kLog) << "rank " << w.me << ": EpBuffer ready, " << ToString(config) << ", region "
                   << plan.total_bytes << " B (" << plan.fwd_slots << " dispatch / "
                   << plan.rev_slots << " combine slots per channel, " << plan.chunks
                   << " chunks of " << plan.dchunk_records << "/" << plan.cchunk_records
                   << " records per stream)";
  return engine;
}

Engine::~Engine() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  stopping_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

absl::Status Engine::Submit(std::unique_ptr<Op> op) {
  absl::MutexLock lock(&mu_);
  if (!failed_.ok() || stop_) {
    absl::Status s = stop_ ? absl::CancelledError("EpBuffer is shutting down") : failed_;
    op->Complete(s, w_, EpOpStats());
    return s;
  }
  op->op_seq = next_seq_++;
  queue_.push_back(std::move(op));
  return absl::OkStatus();
}

absl::Status Engine::status() const {
  absl::MutexLock lock(&mu_);
  return failed_;
}

std::string Engine::Progress() const {
  absl::MutexLock lock(&stats_mu_);
  return progress_;
}

EpStats Engine::stats() const {
  absl::MutexLock lock(&stats_mu_);
  return stats_;
}

void Engine::Run() {
  for (;;) {
    std::unique_ptr<Op> op;
    bool quiesce = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Engine* e)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu_) { return e->stop_ || !e->queue_.empty(); },
          this));
      if (stop_) {
        for (auto& pending : queue_) {
          pending->Complete(absl::CancelledError("EpBuffer destroyed before the operation ran"), w_,
                            EpOpStats());
        }
        queue_.clear();
        quiesce = failed_.ok();
      } else {
        op = std::move(queue_.front());
        queue_.pop_front();
        if (!failed_.ok()) {
          op->Complete(failed_, w_, EpOpStats());
          continue;
        }
      }
    }
    if (op == nullptr) {
      if (quiesce) Quiesce();
      return;
    }
    {
      absl::MutexLock lock(&stats_mu_);
      progress_ = absl::StrCat("running ", op->Describe());
    }
    const EpOpStats before = w_.Counters();
    const absl::Time start = absl::Now();
    absl::Status s = Execute(*op);
    EpOpStats after = w_.Counters();
    EpOpStats d;
    d.inter_node_record_bytes = after.inter_node_record_bytes - before.inter_node_record_bytes;
    d.inter_node_metadata_bytes =
        after.inter_node_metadata_bytes - before.inter_node_metadata_bytes;
    d.inter_node_credit_bytes = after.inter_node_credit_bytes - before.inter_node_credit_bytes;
    d.inter_node_chunks = after.inter_node_chunks - before.inter_node_chunks;
    d.inter_node_records = after.inter_node_records - before.inter_node_records;
    d.intra_node_bytes = after.intra_node_bytes - before.intra_node_bytes;
    d.intra_node_records = after.intra_node_records - before.intra_node_records;
    d.self_bytes = after.self_bytes - before.self_bytes;
    d.engine_time = absl::Now() - start;
    if (!s.ok()) {
      absl::MutexLock lock(&mu_);
      if (failed_.ok()) {
        failed_ = s;
        TR_LOG(ERROR, kLog) << "rank " << w_.me << ": " << s;
      }
    } else {
      absl::MutexLock lock(&stats_mu_);
      op->AddStats(&stats_);
      stats_.intra_node_bytes = after.intra_node_bytes;
      stats_.inter_node_bytes = after.inter_node_bytes();
      stats_.inter_node_record_bytes = after.inter_node_record_bytes;
    }
    if (s.ok()) {
      CommEpCounters c;
      c.direct_bytes_intra_node = after.intra_node_bytes;
      std::vector<uint64_t> tpe;
      {
        absl::MutexLock lock(&stats_mu_);
        tpe = stats_.tokens_per_expert;
      }
      c.tokens_per_expert = tpe.data();
      c.experts = static_cast<int>(tpe.size());
      w_.comm->PublishEpCounters(c);
    }
    {
      absl::MutexLock lock(&stats_mu_);
      progress_.clear();
    }
    op->Complete(s, w_, d);
  }
}

absl::Status Engine::PollComm(bool* progress) {
  CommNotification n[kNotificationBatch];
  TR_ASSIGN_OR_RETURN(size_t got, w_.comm->PollNotifications(n, kNotificationBatch));
  for (size_t i = 0; i < got; ++i) {
    const int q = w_.PeerIndex(n[i].src_rank);
    const uint32_t kind = TagKindOf(n[i].tag);
    if (q < 0) {
      return absl::DataLossError(absl::StrCat(
          "a notification (tag 0x", absl::Hex(n[i].tag), ") from rank ", n[i].src_rank,
          ", which is not a peer of rank ", w_.me, " (is something else using this rank client?)"));
    }
    switch (static_cast<TagKind>(kind)) {
      case TagKind::kDispatchData:
        TR_RETURN_IF_ERROR(w_.d_in[q].OnArrival(n[i].length));
        break;
      case TagKind::kCombineData:
        TR_RETURN_IF_ERROR(w_.c_in[q].OnArrival(n[i].length));
        break;
      case TagKind::kDispatchCredit:
        TR_RETURN_IF_ERROR(w_.d_out[q].AddCredits(TagValueOf(n[i].tag)));
        break;
      case TagKind::kCombineCredit:
        TR_RETURN_IF_ERROR(w_.c_out[q].AddCredits(TagValueOf(n[i].tag)));
        break;
      default:
        return absl::DataLossError(absl::StrCat("unknown notification tag 0x", absl::Hex(n[i].tag),
                                                " from rank ", n[i].src_rank));
    }
  }
  if (got > 0) *progress = true;
  const size_t before = w_.puts.outstanding();
  TR_RETURN_IF_ERROR(w_.puts.Poll());
  if (w_.puts.outstanding() != before) *progress = true;
  return absl::OkStatus();
}

void Engine::Idle(uint64_t seen, int64_t* spun_ns) {
  auto ready = [&] { return w_.bell->events.load(std::memory_order_acquire) != seen; };
  if (*spun_ns < kSpinNs) {
    const int64_t start = runtime::MonotonicNanos();
    for (int i = 0; i < 64 && !ready(); ++i) runtime::CpuRelax();
    *spun_ns += runtime::MonotonicNanos() - start;
    return;
  }
  const bool remote = w_.P > 0 || w_.puts.outstanding() > 0;
  runtime::SleepOnDoorbell(w_.bell->bell, ready, remote ? kRemoteSliceNs : kLocalSliceNs);
}

void Engine::Quiesce() {
  const absl::Time deadline = absl::Now() + kQuiesceTimeout;
  int64_t spun = 0;
  for (;;) {
    bool drained = w_.puts.outstanding() == 0;
    for (const OutboundStream& o : w_.d_out) drained = drained && o.drained();
    for (const OutboundStream& o : w_.c_out) drained = drained && o.drained();
    if (drained) return;
    const uint64_t seen = w_.bell->events.load(std::memory_order_acquire);
    bool progress = false;
    absl::Status s = PollComm(&progress);
    if (s.ok()) s = w_.comm->status();
    if (!s.ok() || absl::Now() >= deadline) {
      TR_LOG(WARNING, kLog) << "rank " << w_.me << ": EpBuffer closed before its peers "
                            << "acknowledged everything it sent"
                            << (s.ok() ? " (timed out)" : absl::StrCat(": ", s.ToString()));
      return;
    }
    if (progress) {
      spun = 0;
    } else {
      Idle(seen, &spun);
    }
  }
}

absl::Status Engine::Execute(Op& op) {
  if (op.blocking()) return op.RunBlocking(w_);
  TR_RETURN_IF_ERROR(op.Start(w_));
  int64_t spun = 0;
  int64_t next_note = runtime::MonotonicNanos() + kProgressNoteNs;
  for (;;) {
    const uint64_t seen = w_.bell->events.load(std::memory_order_acquire);
    bool progress = false;
    TR_RETURN_IF_ERROR(PollComm(&progress));
    absl::StatusOr<bool> stepped = op.Step(w_);
    if (!stepped.ok()) return stepped.status();
    TR_ASSIGN_OR_RETURN(bool credits_done, w_.ReturnCredits());
    if (op.done() && credits_done) return absl::OkStatus();
    if (progress || *stepped) {
      spun = 0;
      continue;
    }
    if (stopping_.load(std::memory_order_acquire)) {
      return absl::CancelledError(absl::StrCat("EpBuffer destroyed while running ", op.Describe()));
    }
    TR_RETURN_IF_ERROR(w_.comm->status());
    if (runtime::MonotonicNanos() >= next_note) {
      // Stalled for a while: say on what (EpBuffer::Progress, logs).
      const std::string note = op.Describe();
      TR_VLOG(1, kLog) << "rank " << w_.me << " waiting: " << note;
      absl::MutexLock lock(&stats_mu_);
      progress_ = note;
      next_note = runtime::MonotonicNanos() + kProgressNoteNs;
    }
    Idle(seen, &spun);
  }
}

}  // namespace ep
}  // namespace tokenrail
