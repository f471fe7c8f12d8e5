#include "runtime/daemon/collectives.h"

#include "absl/strings/str_cat.h"
#include "common/bytes.h"
#include "common/logging.h"
#include "common/status.h"
#include "runtime/arena/layout.h"

namespace tokenrail {
namespace runtime {
namespace {

constexpr char kLog[] = "daemon";
constexpr uint32_t kOutcomeMagic = 0x4f435254;  // "TRCO"
constexpr uint16_t kOutcomeVersion = 1;

std::string Describe(const AttachMessage& m) {
  if (m.type == AttachMessageType::kAllocate)
    return absl::StrCat("AllocateSymmetric(", m.size, ")");
  return std::string(AttachMessageTypeName(m.type));
}

std::string DescribeKind(uint32_t kind, uint64_t size) {
  AttachMessage m;
  m.type = static_cast<AttachMessageType>(kind);
  m.size = size;
  return Describe(m);
}

}  // namespace

Collectives::Collectives(int node_id, int nodes, int ranks_per_node, uint64_t heap_bytes,
                         absl::Duration timeout, CollectivesHost host)
    : node_id_(node_id),
      nodes_(nodes),
      ranks_per_node_(ranks_per_node),
      heap_bytes_(heap_bytes),
      timeout_(timeout),
      host_(std::move(host)),
      rounds_entered_(static_cast<size_t>(ranks_per_node), 0) {}

Collectives::~Collectives() { Stop(); }

void Collectives::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Collectives::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Collectives::Enter(int r, uint64_t generation, const AttachMessage& request) {
  absl::Status refuse;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) {
      refuse = absl::UnavailableError("the daemon is stopping");
    } else if (!aborted_.ok()) {
      refuse = aborted_;
    } else {
      const uint64_t k = rounds_entered_[static_cast<size_t>(r)]++;
      std::vector<Entry>& round = pending_[k];
      round.resize(static_cast<size_t>(ranks_per_node_));
      round[static_cast<size_t>(r)] = {true, generation, request};
      return;
    }
  }
  host_.reply(r, generation, AttachMessage::Error(request.seq, refuse));
}

void Collectives::Abort(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (aborted_.ok()) aborted_ = status.ok() ? absl::UnavailableError("job aborted") : status;
}

std::vector<RegionInfo> Collectives::regions() const {
  absl::MutexLock lock(&mu_);
  return regions_;
}

uint64_t Collectives::used_bytes() const {
  absl::MutexLock lock(&mu_);
  return cursor_ * static_cast<uint64_t>(ranks_per_node_);
}

void Collectives::Run() {
  for (;;) {
    std::vector<std::vector<Entry>> aborted_rounds;
    std::vector<Entry> entries;
    absl::Status abort_status;
    uint64_t k = 0;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (stop_) return true;
        if (!aborted_.ok() && !pending_.empty()) return true;
        auto it = pending_.find(next_round_);
        if (it == pending_.end()) return false;
        for (const Entry& e : it->second) {
          if (!e.entered) return false;
        }
        return true;
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      if (!aborted_.ok()) {
        abort_status = aborted_;
        for (auto& [round, list] : pending_) aborted_rounds.push_back(std::move(list));
        pending_.clear();
      } else {
        k = next_round_++;
        entries = std::move(pending_[k]);
        pending_.erase(k);
      }
    }
    if (!abort_status.ok()) {
      for (const auto& list : aborted_rounds) {
        ReplyAll(list, Outcome{abort_status});
      }
      continue;
    }
    ReplyAll(entries, Decide(k, entries));
  }
}

Collectives::Outcome Collectives::LocalOutcome(const std::vector<Entry>& entries) const {
  Outcome o;
  const AttachMessage& first = entries[0].request;
  o.kind = static_cast<uint32_t>(first.type);
  o.size = first.type == AttachMessageType::kAllocate ? first.size : 0;
  for (size_t r = 1; r < entries.size(); ++r) {
    const AttachMessage& m = entries[r].request;
    if (m.type != first.type) {
      o.status = absl::InvalidArgumentError(
          absl::StrCat("collective mismatch on node ", node_id_, ": local rank 0 called ",
                       Describe(first), ", local rank ", r, " called ", Describe(m)));
      return o;
    }
    if (m.type == AttachMessageType::kAllocate && m.size != first.size) {
      o.status = absl::InvalidArgumentError(
          absl::StrCat("AllocateSymmetric sizes differ on node ", node_id_, ": local rank 0 asked ",
                       first.size, " bytes, local rank ", r, " asked ", m.size, " bytes"));
      return o;
    }
  }
  if (first.type != AttachMessageType::kAllocate) return o;
  if (first.size == 0) {
    o.status = absl::InvalidArgumentError("AllocateSymmetric(0): the size must be positive");
    return o;
  }
  absl::MutexLock lock(&mu_);
  if (regions_.size() >= kMaxRegions) {
    o.status = absl::ResourceExhaustedError(
        absl::StrCat("AllocateSymmetric: the job already has ", kMaxRegions, " regions"));
    return o;
  }
  o.offset = (cursor_ + kRegionAlignment - 1) / kRegionAlignment * kRegionAlignment;
  if (o.offset > heap_bytes_ || first.size > heap_bytes_ - o.offset) {
    o.status = absl::ResourceExhaustedError(
        absl::StrCat("AllocateSymmetric(", first.size, ") does not fit: the rank heaps of node ",
                     node_id_, " have ", heap_bytes_ - std::min(heap_bytes_, o.offset), " of ",
                     heap_bytes_, " bytes free (raise --arena_bytes)"));
  }
  return o;
}

Collectives::Outcome Collectives::Decide(uint64_t k, const std::vector<Entry>& entries) {
  Outcome local = LocalOutcome(entries);
  ByteWriter w;
  w.Put<uint32_t>(local.kind);
  w.Put<uint64_t>(local.size);
  w.Put<uint64_t>(local.offset);
  w.Put<int32_t>(static_cast<int32_t>(local.status.code()));
  w.PutBytes(local.status.message());
  const std::string payload = SealBlob(kOutcomeMagic, kOutcomeVersion, w.data());

  std::vector<std::string> payloads;
  if (nodes_ > 1) {
    absl::StatusOr<std::vector<std::string>> all = host_.node_barrier(
        absl::StrCat("tokenrail/collective/", k), payload, absl::Now() + timeout_);
    if (!all.ok()) {
      absl::MutexLock lock(&mu_);
      return Outcome{aborted_.ok() ? all.status() : aborted_};
    }
    payloads = *std::move(all);
  } else {
    payloads.push_back(payload);
  }
  if (payloads.size() != static_cast<size_t>(nodes_)) {
    return Outcome{absl::InternalError(absl::StrCat("collective ", k, ": got ", payloads.size(),
                                                    " node payloads for ", nodes_, " nodes"))};
  }
  std::vector<Outcome> per_node(payloads.size());
  for (size_t i = 0; i < payloads.size(); ++i) {
    const std::string what = absl::StrCat("collective payload of node ", i);
    absl::StatusOr<absl::string_view> body =
        UnsealBlob(payloads[i], kOutcomeMagic, kOutcomeVersion, what);
    if (!body.ok()) return Outcome{absl::InternalError(body.status().message())};
    ByteReader r(*body, what);
    auto kind = r.Get<uint32_t>();
    auto size = r.Get<uint64_t>();
    auto offset = r.Get<uint64_t>();
    auto code = r.Get<int32_t>();
    auto message = r.GetBytes(4096);
    if (!kind.ok() || !size.ok() || !offset.ok() || !code.ok() || !message.ok() ||
        !r.ExpectEnd().ok() || *code < 0 ||
        *code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
      return Outcome{absl::InternalError(absl::StrCat(what, " is malformed"))};
    }
    per_node[i] = {absl::Status(static_cast<absl::StatusCode>(*code), *message), *kind, *size,
                   *offset, RegionInfo()};
  }
  for (const Outcome& o : per_node) {
    if (!o.status.ok()) return o;  // the first failing node, in node order
  }
  const Outcome& first = per_node[0];
  for (size_t i = 1; i < per_node.size(); ++i) {
    const Outcome& o = per_node[i];
    if (o.kind != first.kind) {
      return Outcome{absl::InvalidArgumentError(absl::StrCat(
          "collective mismatch across nodes: node 0 called ", DescribeKind(first.kind, first.size),
          ", node ", i, " called ", DescribeKind(o.kind, o.size)))};
    }
    if (o.size != first.size) {
      return Outcome{absl::InvalidArgumentError(
          absl::StrCat("AllocateSymmetric sizes differ across nodes: node 0 asked ", first.size,
                       " bytes, node ", i, " asked ", o.size, " bytes"))};
    }
    if (o.offset != first.offset) {
      return Outcome{
          absl::InternalError(absl::StrCat("symmetric heaps diverged: node 0 offset ", first.offset,
                                           ", node ", i, " offset ", o.offset))};
    }
  }
  Outcome verdict = local;
  if (static_cast<AttachMessageType>(local.kind) == AttachMessageType::kAllocate) {
    RegionInfo region;
    {
      absl::MutexLock lock(&mu_);
      region = {static_cast<uint32_t>(regions_.size()), local.offset, local.size};
      regions_.push_back(region);
      cursor_ = local.offset + local.size;
    }
    verdict.region = region;
    host_.publish_region(region);
    TR_VLOG(1, kLog) << "region " << region.id << ": " << region.size << " bytes at heap offset "
                     << region.offset;
  }
  return verdict;
}

void Collectives::ReplyAll(const std::vector<Entry>& entries, const Outcome& verdict) {
  for (size_t r = 0; r < entries.size(); ++r) {
    const Entry& e = entries[r];
    if (!e.entered) continue;
    AttachMessage reply;
    if (!verdict.status.ok()) {
      reply = AttachMessage::Error(e.request.seq, verdict.status);
    } else if (e.request.type == AttachMessageType::kAllocate) {
      reply.type = AttachMessageType::kAllocated;
      reply.seq = e.request.seq;
      reply.region = verdict.region;
    } else {
      reply.type = AttachMessageType::kBarrierDone;
      reply.seq = e.request.seq;
    }
    host_.reply(static_cast<int>(r), e.generation, reply);
  }
}

}  // namespace runtime
}  // namespace tokenrail
