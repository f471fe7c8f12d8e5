// The dispatch operation: source, forwarder and receiver steps (dispatch.h).
#include "runtime/ep/dispatch.h"

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

void DispatchOp::PackRecord(const Wiring& w, int64_t t, char* rec) {
  const DispatchRecordLayout& d = w.plan.drec;
  const int k = d.top_k;
  StoreRecordHeader(rec, static_cast<int32_t>(t), w.me);
  std::memcpy(rec + d.experts_offset, in_.topk_idx + t * k, 4 * static_cast<size_t>(k));
  std::memcpy(rec + d.weights_offset, in_.topk_weights + t * k, 4 * static_cast<size_t>(k));
  const size_t meta_end =
      d.weights_offset + 4 * static_cast<size_t>(k) + 4 * static_cast<size_t>(d.tiles);
  std::memset(rec + meta_end, 0, d.payload_offset - meta_end);
  const size_t x_row = static_cast<size_t>(w.config.hidden) * DTypeSize(in_.x_dtype);
  absl::Status s =
      PackRow(static_cast<const char*>(in_.x) + t * x_row, in_.x_dtype, w.config.hidden, d.dtype,
              rec + d.payload_offset, reinterpret_cast<float*>(rec + d.scales_offset));
  if (!s.ok() && soft_.ok()) soft_ = Annotate(s, absl::StrCat("Dispatch: token ", t));
  const size_t end = d.payload_offset + d.payload_bytes;
  if (d.size > end) std::memset(rec + end, 0, d.size - end);
}

absl::StatusOr<bool> DispatchOp::SourceStep(Wiring& w) {
  if (source_done_) return false;
  if (!reuse_) {
    for (int q = 0; q < w.P; ++q) {
      if (!peer_counts_sent_[q]) return false;
    }
    if (channel_counts_out_ != out_total_) return false;
  }
  const DispatchPlan& p = *plan_;
  const size_t rec_bytes = w.plan.drec.size;
  char* slot[kMaxTopK];  // a token has at most top_k destinations
  bool progress = false;
  bool touched_local = false;
  for (int budget = kStepBudget; budget > 0 && next_token_ < p.tokens; --budget) {
    const int64_t t = next_token_;
    const int64_t b = p.dests.begin(t), e = p.dests.end(t);
    bool blocked = false;
    for (int64_t i = b; i < e && !blocked; ++i) {
      const int code = p.dests.values[i];
      char*& s = slot[i - b];
      if (code < w.R) {
        TR_ASSIGN_OR_RETURN(uint64_t free, w.fwd_out[code].Free());
        s = free > 0 ? w.fwd_out[code].Slot(0) : nullptr;
      } else {
        OutboundStream& out = w.d_out[code - w.R];
        s = out.NextRecord(w.puts);
        if (s == nullptr && out.full()) {
          TR_ASSIGN_OR_RETURN(bool posted, out.Flush(w.puts, op_seq));
          if (posted) s = out.NextRecord(w.puts);
        }
      }
      blocked = s == nullptr;
    }
    if (blocked) break;
    if (e > b) {
      PackRecord(w, t, slot[0]);
      for (int64_t i = b + 1; i < e; ++i) std::memcpy(slot[i - b], slot[0], rec_bytes);
      for (int64_t i = b; i < e; ++i) {
        const int code = p.dests.values[i];
        if (code < w.R) {
          w.fwd_out[code].Commit(1);
          w.CountIntra(code, rec_bytes, 1);
          touched_local = true;
        } else {
          OutboundStream& out = w.d_out[code - w.R];
          out.CommitRecord();
          if (out.full()) TR_RETURN_IF_ERROR(out.Flush(w.puts, op_seq).status());
        }
      }
    }
    ++next_token_;
    progress = true;
  }
  if (touched_local) {
    for (ChannelWriter& ch : w.fwd_out) ch.Publish();
  }
  if (next_token_ == p.tokens) {
    bool all = true;
    for (OutboundStream& out : w.d_out) {
      TR_ASSIGN_OR_RETURN(bool flushed, out.Flush(w.puts, op_seq));
      all = all && flushed;
    }
    if (all) {
      source_done_ = true;
      progress = true;
    }
  }
  return progress;
}

absl::StatusOr<bool> DispatchOp::ForwardStep(Wiring& w) {
  // Records follow the counts in every channel (and the counts say how many
  // records to expect from each source).
  if (forward_done_ || (!reuse_ && channel_counts_out_ != out_total_)) return false;
  const DispatchRecordLayout& d = w.plan.drec;
  const int k = d.top_k;
  const EpTopology& topo = w.config.topology;
  bool progress = false;
  bool all_done = true;
  uint8_t ranks[256];
  for (int q = 0; q < w.P; ++q) {
    InboundStream& in = w.d_in[q];
    const int src = w.PeerRank(q);
    for (int budget = kStepBudget; budget > 0 && fwd_done_[q] < fwd_expected_[q]; --budget) {
      TR_ASSIGN_OR_RETURN(const ChunkHeader* h, in.Current(op_seq));
      if (h == nullptr) break;
      if (h->kind != static_cast<uint32_t>(ChunkKind::kRecords)) {
        return absl::DataLossError(absl::StrCat(in.name(), ": a counts chunk among the records"));
      }
      const char* rec = in.record(in.cursor);
      const int32_t tok = RecordToken(rec);
      if (RecordRank(rec) != src || tok <= fwd_last_[q]) {
        return absl::DataLossError(absl::StrCat(in.name(), ": record from rank ", RecordRank(rec),
                                                " token ", tok, " after token ", fwd_last_[q],
                                                " (expected rank ", src, ")"));
      }
      bool on[256] = {};
      for (int i = 0; i < k; ++i) {
        const int32_t e = LoadI32(rec + d.experts_offset + 4 * i);
        if (e < -1 || e >= topo.experts) {
          return absl::DataLossError(absl::StrCat(in.name(), ": token ", tok, " names expert ", e));
        }
        if (e >= 0 && topo.node_of_expert(e) == w.node) on[topo.local_rank_of_expert(e)] = true;
      }
      int n = 0;
      for (int j = 0; j < w.R; ++j) {
        if (on[j]) ranks[n++] = static_cast<uint8_t>(j);
      }
      if (n == 0) {
        return absl::DataLossError(
            absl::StrCat(in.name(), ": token ", tok, " has no expert on node ", w.node));
      }
      if (reuse_) {
        const DispatchPlan::Forward& f = plan_->forward[q];
        const size_t idx = static_cast<size_t>(fwd_done_[q]);
        const int64_t b = f.ranks.begin(idx);
        if (f.tokens[idx] != tok || f.ranks.end(idx) - b != n ||
            std::memcmp(&f.ranks.values[b], ranks, n) != 0) {
          return absl::DataLossError(
              absl::StrCat(in.name(), ": token ", tok, " does not match the reused layout"));
        }
      }
      bool room = true;
      for (int i = 0; i < n && room; ++i) {
        TR_ASSIGN_OR_RETURN(uint64_t free, w.fwd_out[ranks[i]].Free());
        room = free > 0;
      }
      if (!room) break;
      for (int i = 0; i < n; ++i) {
        ChannelWriter& ch = w.fwd_out[ranks[i]];
        std::memcpy(ch.Slot(0), rec, d.size);
        ch.Commit(1);
        w.CountIntra(ranks[i], d.size, 1);
      }
      if (!reuse_) {
        DispatchPlan::Forward& f = building_->forward[q];
        f.tokens.push_back(tok);
        f.ranks.values.insert(f.ranks.values.end(), ranks, ranks + n);
        f.ranks.CloseItem();
      }
      fwd_last_[q] = tok;
      ++fwd_done_[q];
      ++in.cursor;
      progress = true;
      if (in.cursor == h->records) {
        in.Finish();
      } else if (fwd_done_[q] == fwd_expected_[q]) {
        return absl::DataLossError(
            absl::StrCat(in.name(), ": more records than the ", fwd_expected_[q], " announced"));
      }
    }
    all_done = all_done && fwd_done_[q] == fwd_expected_[q];
  }
  for (ChannelWriter& ch : w.fwd_out) ch.Publish();
  if (all_done) {
    forward_done_ = true;
    progress = true;
  }
  return progress;
}

absl::Status DispatchOp::Place(Wiring& w, const char* rec, int expected_src, int via_local) {
  const DispatchRecordLayout& d = w.plan.drec;
  const EpTopology& topo = w.config.topology;
  const int k = d.top_k;
  const int32_t src = RecordRank(rec);
  const int32_t tok = RecordToken(rec);
  const bool src_ok =
      expected_src >= 0 ? src == expected_src : (src >= 0 && src < w.W && src % w.R == via_local);
  if (!src_ok || tok <= last_token_[src]) {
    return absl::DataLossError(absl::StrCat(
        "dispatch receiver: record of rank ", src, " token ", tok, " on the path from local rank ",
        via_local,
        src_ok ? absl::StrCat(" after its token ", last_token_[src]) : " (not a source of it)"));
  }
  last_token_[src] = tok;
  const char* payload = rec + d.payload_offset;
  const float* scales = reinterpret_cast<const float*>(rec + d.scales_offset);
  const bool keep = w.config.fp8_keep_quantized;
  const int first_expert = topo.first_expert_of_rank(w.me);
  std::vector<int64_t>& rows = rows_scratch_;
  rows.clear();
  if (reuse_) {
    const DispatchPlan::FromSource& f = plan_->from[src];
    const size_t idx = next_from_[src]++;
    if (idx >= f.tokens.size() || f.tokens[idx] != tok) {
      return absl::DataLossError(absl::StrCat("dispatch receiver: token ", tok, " of rank ", src,
                                              " is not in the reused layout"));
    }
    for (int64_t i = f.rows.begin(idx); i < f.rows.end(idx); ++i) {
      const int64_t row = f.rows.values[i];
      const int slot = plan_->row_topk_slot[row];
      if (LoadI32(rec + d.experts_offset + 4 * slot) !=
          first_expert + plan_->row_local_expert[row]) {
        return absl::DataLossError(absl::StrCat("dispatch receiver: token ", tok, " of rank ", src,
                                                " changed experts since the reused layout"));
      }
      st_->weights[row] = LoadF32(rec + d.weights_offset + 4 * slot);
      rows.push_back(row);
    }
  } else {
    DispatchPlan& p = *building_;
    for (int i = 0; i < k; ++i) {
      const int32_t e = LoadI32(rec + d.experts_offset + 4 * i);
      if (e < -1 || e >= topo.experts) {
        return absl::DataLossError(
            absl::StrCat("dispatch receiver: token ", tok, " of rank ", src, " names expert ", e));
      }
      if (e < 0 || topo.rank_of_expert(e) != w.me) continue;
      const int le = e - first_expert;
      const size_t at = static_cast<size_t>(src) * w.epr + le;
      if (cursor_[at] >= count_[at]) {
        return absl::DataLossError(absl::StrCat("dispatch receiver: rank ", src, " sent more than ",
                                                count_[at], " tokens for local expert ", le));
      }
      const int64_t row = base_[at] + cursor_[at]++;
      p.row_src_rank[row] = src;
      p.row_src_token[row] = tok;
      p.row_topk_slot[row] = i;
      st_->weights[row] = LoadF32(rec + d.weights_offset + 4 * i);
      rows.push_back(row);
    }
    if (rows.empty()) {
      return absl::DataLossError(absl::StrCat("dispatch receiver: token ", tok, " of rank ", src,
                                              " has no expert on this rank"));
    }
    // Rows of one token in ascending order = ascending local expert (the
    // expert blocks are in order): the order combine sums them in.
    std::sort(rows.begin(), rows.end());
    DispatchPlan::FromSource& f = p.from[src];
    f.tokens.push_back(tok);
    f.rows.values.insert(f.rows.values.end(), rows.begin(), rows.end());
    f.rows.CloseItem();
  }
  uint8_t* x = st_->x.data();
  float* out_scales = keep ? st_->x_scales.data() + rows[0] * tiles_ : nullptr;
  UnpackRow(payload, scales, d.dtype, w.config.hidden, keep, x + rows[0] * row_bytes_, out_scales);
  for (size_t i = 1; i < rows.size(); ++i) {
    std::memcpy(x + rows[i] * row_bytes_, x + rows[0] * row_bytes_, row_bytes_);
    if (keep) {
      std::memcpy(st_->x_scales.data() + rows[i] * tiles_, out_scales, tiles_ * sizeof(float));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> DispatchOp::ReceiveStep(Wiring& w) {
  if (receive_done_ || !receiver_ready_) return false;
  bool progress = false;
  bool all = true;
  for (int p = 0; p < w.R; ++p) {
    ChannelReader& ch = w.fwd_in[p];
    const int expected_src = w.plan.flat ? w.node * w.R + p : -1;
    for (int budget = kStepBudget; budget > 0 && ch_received_[p] < ch_expected_[p]; --budget) {
      TR_ASSIGN_OR_RETURN(uint64_t avail, ch.Available());
      if (avail == 0) break;
      if (LoadI32(ch.Slot(0)) == kChannelCountsMarker) {
        return absl::FailedPreconditionError(
            absl::StrCat(ch.name(),
                         ": a counts message where records were expected (the ranks disagree on "
                         "whether this dispatch reuses a layout)"));
      }
      TR_RETURN_IF_ERROR(Annotate(Place(w, ch.Slot(0), expected_src, p), ch.name()));
      ch.Release(1);
      ++ch_received_[p];
      progress = true;
    }
    ch.Publish();
    all = all && ch_received_[p] == ch_expected_[p];
  }
  if (w.plan.flat) {
    for (int q = 0; q < w.P; ++q) {
      InboundStream& in = w.d_in[q];
      for (int budget = kStepBudget; budget > 0 && peer_received_[q] < peer_expected_[q];
           --budget) {
        TR_ASSIGN_OR_RETURN(const ChunkHeader* h, in.Current(op_seq));
        if (h == nullptr) break;
        if (h->kind != static_cast<uint32_t>(ChunkKind::kRecords)) {
          return absl::DataLossError(absl::StrCat(in.name(), ": a counts chunk among the records"));
        }
        TR_RETURN_IF_ERROR(Annotate(Place(w, in.record(in.cursor), w.PeerRank(q), -1), in.name()));
        ++in.cursor;
        ++peer_received_[q];
        progress = true;
        if (in.cursor == h->records) {
          in.Finish();
        } else if (peer_received_[q] == peer_expected_[q]) {
          return absl::DataLossError(
              absl::StrCat(in.name(), ": more records than the ", peer_expected_[q], " announced"));
        }
      }
      all = all && peer_received_[q] == peer_expected_[q];
    }
  }
  if (all) {
    TR_RETURN_IF_ERROR(FinishReceive(w));
    receive_done_ = true;
    progress = true;
  }
  return progress;
}

absl::Status DispatchOp::FinishReceive(Wiring& w) {
  if (reuse_) {
    for (int s = 0; s < w.W; ++s) {
      if (next_from_[s] != plan_->from[s].tokens.size()) {
        return absl::DataLossError(absl::StrCat("dispatch receiver: got ", next_from_[s],
                                                " tokens from rank ", s, ", the reused layout has ",
                                                plan_->from[s].tokens.size()));
      }
    }
    return absl::OkStatus();
  }
  for (size_t i = 0; i < count_.size(); ++i) {
    if (cursor_[i] != count_[i]) {
      return absl::DataLossError(absl::StrCat("dispatch receiver: rank ", i / w.epr, " announced ",
                                              count_[i], " tokens for local expert ", i % w.epr,
                                              " and sent ", cursor_[i]));
    }
  }
  int64_t received = 0;
  for (const DispatchPlan::FromSource& f : building_->from) received += f.tokens.size();
  building_->received_tokens = received;
  return absl::OkStatus();
}

absl::StatusOr<bool> DispatchOp::Step(Wiring& w) {
  bool progress = false;
  if (!reuse_ && !counts_done()) {
    TR_ASSIGN_OR_RETURN(bool a, SendPeerCounts(w));
    TR_ASSIGN_OR_RETURN(bool b, ReceivePeerCounts(w));
    TR_ASSIGN_OR_RETURN(bool c, WriteChannelCounts(w));
    TR_ASSIGN_OR_RETURN(bool d, ReadChannelCounts(w));
    progress = a || b || c || d;
    if (!receiver_ready_) {
      bool ready = true;
      for (int p = 0; p < w.R; ++p) ready = ready && channel_read_[p];
      if (w.plan.flat) {
        for (int q = 0; q < w.P; ++q) ready = ready && peer_counts_in_[q];
      }
      if (ready) {
        TR_RETURN_IF_ERROR(SetupReceiver(w));
        progress = true;
      }
    }
  }
  TR_ASSIGN_OR_RETURN(bool s, SourceStep(w));
  TR_ASSIGN_OR_RETURN(bool f, ForwardStep(w));
  TR_ASSIGN_OR_RETURN(bool r, ReceiveStep(w));
  return progress || s || f || r;
}

std::string DispatchOp::Describe() const {
  std::string out = absl::StrCat("dispatch (operation ", op_seq, ")");
  if (!reuse_ && !receiver_ready_) {
    absl::StrAppend(&out, ": exchanging counts (channels read ",
                    std::count(channel_read_.begin(), channel_read_.end(), true), "/",
                    channel_read_.size(), ", peer counts in ",
                    std::count(peer_counts_in_.begin(), peer_counts_in_.end(), true), "/",
                    peer_counts_in_.size(), ")");
    return out;
  }
  absl::StrAppend(&out, ": source ", next_token_, "/", plan_->tokens, source_done_ ? " done" : "",
                  "; forwarder ", forward_done_ ? "done" : "busy", "; receiver ",
                  receive_done_ ? "done" : "busy", " (channels");
  for (size_t p = 0; p < ch_received_.size(); ++p) {
    absl::StrAppend(&out, " ", ch_received_[p], "/", ch_expected_[p]);
  }
  absl::StrAppend(&out, ")");
  return out;
}

void DispatchOp::Complete(const absl::Status& status, Wiring& w, const EpOpStats& stats) {
  if (!status.ok()) {
    st_->Finish(status);
    return;
  }
  const DispatchPlan& p = *plan_;
  st_->plan = plan_;
  st_->stats = stats;
  DispatchOutput& o = st_->output;
  o.rows = p.rows;
  o.hidden = w.config.hidden;
  o.x_dtype = ExpertDType(w.config.dispatch_dtype, w.config.fp8_keep_quantized);
  o.x = st_->x.data();
  o.x_scales = w.config.fp8_keep_quantized ? st_->x_scales.data() : nullptr;
  o.weights = st_->weights;
  o.src_rank = p.row_src_rank;
  o.src_token = p.row_src_token;
  o.local_expert = p.row_local_expert;
  o.topk_slot = p.row_topk_slot;
  o.expert_counts = p.expert_counts;
  o.expert_offsets = p.expert_offsets;
  o.received_tokens = p.received_tokens;
  st_->Finish(soft_);
}

}  // namespace dispatch_internal

std::unique_ptr<Op> MakeDispatchOp(std::shared_ptr<const DispatchPlan> reused,
                                   std::shared_ptr<DispatchPlan> building,
                                   const DispatchInput& input,
                                   std::shared_ptr<DispatchHandle::State> state) {
  return std::make_unique<dispatch_internal::DispatchOp>(std::move(reused), std::move(building),
                                                         input, std::move(state));
}

}  // namespace ep
}  // namespace tokenrail
