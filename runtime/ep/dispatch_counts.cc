// The dispatch operation's counts phase and output sizing (dispatch.h).
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "runtime/ep/dispatch_op.h"
#include "runtime/ep/kernels.h"

namespace tokenrail {
namespace ep {
namespace dispatch_internal {

absl::Status DispatchOp::Start(Wiring& w) {
  const size_t P = static_cast<size_t>(w.P);
  const size_t R = static_cast<size_t>(w.R);
  const size_t W = static_cast<size_t>(w.W);
  tiles_ = w.plan.drec.tiles;
  row_bytes_ = static_cast<size_t>(w.config.hidden) *
               DTypeSize(ExpertDType(w.config.dispatch_dtype, w.config.fp8_keep_quantized));
  fwd_done_.assign(P, 0);
  fwd_last_.assign(P, -1);
  ch_received_.assign(R, 0);
  peer_received_.assign(P, 0);
  last_token_.assign(W, -1);
  forward_done_ = w.plan.flat;
  if (reuse_) {
    const DispatchPlan& p = *plan_;
    ch_expected_ = p.channel_records_in;
    peer_expected_ = p.peer_records_in;
    fwd_expected_.assign(P, 0);
    if (!w.plan.flat) {
      for (size_t q = 0; q < P; ++q)
        fwd_expected_[q] = static_cast<int64_t>(p.forward[q].tokens.size());
    }
    next_from_.assign(W, 0);
    TR_RETURN_IF_ERROR(AllocateOutputs(w));
    receiver_ready_ = true;
    return absl::OkStatus();
  }
  peer_counts_sent_.assign(P, false);
  peer_counts_in_.assign(P, false);
  peer_counts_.assign(P, PeerCounts());
  channel_msg_.assign(R, std::string());
  channel_written_.assign(R, false);
  out_total_ = w.R;
  channel_read_.assign(R, false);
  channel_counts_.assign(R, ChannelCounts());
  fwd_expected_.assign(P, 0);
  building_->forward.assign(w.plan.flat ? 0 : P, DispatchPlan::Forward());
  building_->from.assign(W, DispatchPlan::FromSource());
  return absl::OkStatus();
}

// ---- counts ----

absl::StatusOr<bool> DispatchOp::SendPeerCounts(Wiring& w) {
  bool progress = false;
  const Layout& L = plan_->layout;
  for (int q = 0; q < w.P; ++q) {
    if (peer_counts_sent_[q]) continue;
    const int peer = w.PeerRank(q);
    PeerCounts pc;
    // The ranks the peer serves: its whole node (hierarchical) or itself.
    const int first = w.plan.flat ? peer : (peer / w.R) * w.R;
    const int scope = w.plan.scope_ranks;
    pc.records = w.plan.flat ? L.tokens_per_rank[peer] : L.tokens_per_node[peer / w.R];
    for (int i = 0; i < scope; ++i) {
      pc.tokens_per_rank.push_back(L.tokens_per_rank[first + i]);
      for (int e = 0; e < w.epr; ++e) {
        pc.tokens_per_expert.push_back(L.tokens_per_expert[(first + i) * w.epr + e]);
      }
    }
    if (pc.records != plan_->records_to_peer[q]) {
      return absl::InternalError(absl::StrCat("dispatch: layout says ", pc.records,
                                              " records for peer rank ", peer, ", the plan ",
                                              plan_->records_to_peer[q]));
    }
    TR_ASSIGN_OR_RETURN(bool sent, w.d_out[q].SendCounts(w.puts, op_seq, pc));
    if (sent) {
      peer_counts_sent_[q] = true;
      progress = true;
    }
  }
  return progress;
}

absl::StatusOr<bool> DispatchOp::ReceivePeerCounts(Wiring& w) {
  bool progress = false;
  for (int q = 0; q < w.P; ++q) {
    if (peer_counts_in_[q]) continue;
    InboundStream& in = w.d_in[q];
    TR_ASSIGN_OR_RETURN(const ChunkHeader* h, in.Current(op_seq));
    if (h == nullptr) continue;
    if (h->kind != static_cast<uint32_t>(ChunkKind::kCounts)) {
      return absl::FailedPreconditionError(absl::StrCat(
          in.name(), ": records arrived where the counts of operation ", op_seq,
          " were expected (the ranks disagree on whether this dispatch reuses a layout)"));
    }
    absl::StatusOr<PeerCounts> pc =
        DecodePeerCounts(in.body(), h->body_bytes, w.plan.scope_ranks, w.epr, int64_t{1} << 31);
    if (!pc.ok()) return Annotate(pc.status(), in.name());
    peer_counts_[q] = *std::move(pc);
    in.Finish();
    peer_counts_in_[q] = true;
    progress = true;
  }
  return progress;
}

absl::StatusOr<bool> DispatchOp::WriteChannelCounts(Wiring& w) {
  if (channel_msg_[0].empty()) {
    // Hierarchical channels also carry the remote sources' records: their
    // counts must be in first.
    if (!w.plan.flat) {
      for (int q = 0; q < w.P; ++q) {
        if (!peer_counts_in_[q]) return false;
      }
    }
    const Layout& L = plan_->layout;
    for (int j = 0; j < w.R; ++j) {
      const int dst = w.node * w.R + j;
      ChannelCounts cc;
      cc.op_seq = op_seq;
      cc.config_hash = w.hash;
      const int sources = w.plan.flat ? 1 : w.N;
      for (int i = 0; i < sources; ++i) {
        const int src_node = w.plan.flat ? w.node : i;
        ChannelCounts::Entry e;
        e.src_rank = src_node * w.R + w.local;
        if (src_node == w.node) {
          e.records = L.tokens_per_rank[dst];
          for (int x = 0; x < w.epr; ++x)
            e.tokens_per_expert.push_back(L.tokens_per_expert[dst * w.epr + x]);
        } else {
          const PeerCounts& pc = peer_counts_[static_cast<size_t>(w.PeerIndex(e.src_rank))];
          e.records = pc.tokens_per_rank[j];
          for (int x = 0; x < w.epr; ++x)
            e.tokens_per_expert.push_back(pc.tokens_per_expert[j * w.epr + x]);
        }
        cc.entries.push_back(std::move(e));
      }
      std::string& msg = channel_msg_[j];
      msg.assign(w.plan.counts_message_bytes, '\0');
      EncodeChannelCounts(cc, w.epr, msg.data());
    }
    if (!w.plan.flat) {
      for (int q = 0; q < w.P; ++q) fwd_expected_[q] = peer_counts_[q].records;
    }
  }
  bool progress = false;
  for (int j = 0; j < w.R; ++j) {
    if (channel_written_[j]) continue;
    TR_ASSIGN_OR_RETURN(bool ok,
                        w.fwd_out[j].WriteMessage(channel_msg_[j].data(), channel_msg_[j].size()));
    if (!ok) continue;
    channel_written_[j] = true;
    ++channel_counts_out_;
    w.CountIntra(j, w.plan.counts_slots * w.plan.drec.size, 0);
    progress = true;
  }
  return progress;
}

absl::StatusOr<bool> DispatchOp::ReadChannelCounts(Wiring& w) {
  bool progress = false;
  std::string msg;
  for (int p = 0; p < w.R; ++p) {
    if (channel_read_[p]) continue;
    ChannelReader& ch = w.fwd_in[p];
    TR_ASSIGN_OR_RETURN(bool ok, ch.ReadMessage(w.plan.counts_message_bytes, &msg));
    if (!ok) continue;
    const int entries = w.plan.flat ? 1 : w.N;
    absl::StatusOr<ChannelCounts> cc =
        DecodeChannelCounts(msg.data(), msg.size(), w.epr, entries, w.W);
    if (!cc.ok()) return Annotate(cc.status(), ch.name());
    if (cc->config_hash != w.hash) {
      return absl::FailedPreconditionError(absl::StrCat(
          ch.name(), ": the local rank ", p, " runs a different EpConfig (fingerprint 0x",
          absl::Hex(cc->config_hash), " vs 0x", absl::Hex(w.hash), ")"));
    }
    if (cc->op_seq != op_seq || static_cast<int>(cc->entries.size()) != entries) {
      return absl::DataLossError(absl::StrCat(ch.name(), ": counts of operation ", cc->op_seq,
                                              " with ", cc->entries.size(),
                                              " entries during operation ", op_seq));
    }
    for (int i = 0; i < entries; ++i) {
      const int want = (w.plan.flat ? w.node : i) * w.R + p;
      if (cc->entries[i].src_rank != want) {
        return absl::DataLossError(absl::StrCat(ch.name(), ": counts entry ", i, " names rank ",
                                                cc->entries[i].src_rank, ", expected ", want));
      }
    }
    channel_counts_[p] = *std::move(cc);
    channel_read_[p] = true;
    progress = true;
  }
  return progress;
}

namespace {

// Read once: sysconf(_SC_PHYS_PAGES) is a system call, and every dispatch asks.
double PhysicalMemoryBytes() {
  static const double bytes = [] {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 1e18;
  }();
  return bytes;
}

}  // namespace

absl::Status DispatchOp::SetupReceiver(Wiring& w) {
  DispatchPlan& p = *building_;
  const int epr = w.epr;
  count_.assign(static_cast<size_t>(w.W) * epr, 0);
  ch_expected_.assign(static_cast<size_t>(w.R), 0);
  peer_expected_.assign(static_cast<size_t>(w.P), 0);
  for (int ch = 0; ch < w.R; ++ch) {
    for (const ChannelCounts::Entry& e : channel_counts_[ch].entries) {
      ch_expected_[ch] += e.records;
      std::copy(e.tokens_per_expert.begin(), e.tokens_per_expert.end(),
                count_.begin() + static_cast<size_t>(e.src_rank) * epr);
    }
  }
  if (w.plan.flat) {
    for (int q = 0; q < w.P; ++q) {
      peer_expected_[q] = peer_counts_[q].records;
      std::copy(peer_counts_[q].tokens_per_expert.begin(), peer_counts_[q].tokens_per_expert.end(),
                count_.begin() + static_cast<size_t>(w.PeerRank(q)) * epr);
    }
  }
  p.expert_counts.assign(epr, 0);
  p.expert_offsets.assign(epr + 1, 0);
  base_.assign(count_.size(), 0);
  cursor_.assign(count_.size(), 0);
  const int64_t align = w.config.align;
  for (int e = 0; e < epr; ++e) {
    int64_t at = p.expert_offsets[e];
    for (int s = 0; s < w.W; ++s) {
      base_[static_cast<size_t>(s) * epr + e] = at;
      at += count_[static_cast<size_t>(s) * epr + e];
    }
    const int64_t n = at - p.expert_offsets[e];
    if (n > INT32_MAX)
      return absl::ResourceExhaustedError("dispatch: over 2^31 rows for one expert");
    p.expert_counts[e] = static_cast<int32_t>(n);
    p.expert_offsets[e + 1] = p.expert_offsets[e] + (n + align - 1) / align * align;
  }
  p.rows = p.expert_offsets[epr];
  // The counts come from peers: refuse sizes this host cannot hold before
  // allocating anything (a corrupt or hostile count must not abort us).
  const double need = static_cast<double>(p.rows) *
                      static_cast<double>(row_bytes_ + 4 * sizeof(int32_t) + sizeof(float));
  if (need > PhysicalMemoryBytes()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "dispatch: the peers' counts announce ", p.rows, " rows (", need,
        " bytes), more than this host's memory; counts corrupt or the batch too large"));
  }
  p.row_src_rank.assign(p.rows, -1);
  p.row_src_token.assign(p.rows, -1);
  p.row_topk_slot.assign(p.rows, -1);
  p.row_local_expert.resize(p.rows);
  for (int e = 0; e < epr; ++e) {
    std::fill(p.row_local_expert.begin() + p.expert_offsets[e],
              p.row_local_expert.begin() + p.expert_offsets[e + 1], e);
  }
  p.channel_records_in = ch_expected_;
  p.peer_records_in = peer_expected_;
  TR_RETURN_IF_ERROR(AllocateOutputs(w));
  receiver_ready_ = true;
  return absl::OkStatus();
}

absl::Status DispatchOp::AllocateOutputs(Wiring& w) {
  const DispatchPlan& p = *plan_;
  st_->x = w.pool->Get(static_cast<size_t>(p.rows) * row_bytes_);
  if (!st_->x.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("dispatch: cannot allocate ", p.rows, " rows of ", row_bytes_, " bytes"));
  }
  st_->weights.assign(static_cast<size_t>(p.rows), 0.0f);
  if (w.config.fp8_keep_quantized) st_->x_scales.assign(static_cast<size_t>(p.rows * tiles_), 0.0f);
  // Padding rows are zero; real rows are all written by Place.
  for (int e = 0; e < w.epr; ++e) {
    const int64_t from = p.expert_offsets[e] + p.expert_counts[e];
    const int64_t to = p.expert_offsets[e + 1];
    if (to > from) std::memset(st_->x.data() + from * row_bytes_, 0, (to - from) * row_bytes_);
  }
  return absl::OkStatus();
}

// ---- data ----

}  // namespace dispatch_internal
}  // namespace ep
}  // namespace tokenrail
