// The combine operation: receiver, forwarder and source steps (combine.h).
#include "runtime/ep/combine.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "runtime/ep/kernels.h"

namespace tokenrail {
namespace ep {
namespace {

constexpr int kStepBudget = 128;

class CombineOp final : public Op {
 public:
  CombineOp(std::shared_ptr<const DispatchHandle::State> dispatch, const CombineInput& input,
            std::shared_ptr<CombineHandle::State> state)
      : dispatch_(std::move(dispatch)), plan_(dispatch_->plan), in_(input), st_(std::move(state)) {}

  absl::Status Start(Wiring& w) override;
  absl::StatusOr<bool> Step(Wiring& w) override;
  bool done() const override { return receive_done_ && forward_done_ && source_done_; }
  void Complete(const absl::Status& status, Wiring& w, const EpOpStats& stats) override;
  std::string Describe() const override;
  void AddStats(EpStats* stats) const override { ++stats->combines; }

 private:
  absl::StatusOr<bool> ReceiverStep(Wiring& w);
  absl::StatusOr<bool> ForwardStep(Wiring& w);
  absl::StatusOr<bool> SourceStep(Wiring& w);
  // Checks a part's header: it must be for `token` of `src`.
  static absl::Status CheckPart(const char* rec, int32_t token, int src, const std::string& where);
  void WritePart(const Wiring& w, char* rec, int32_t token, int src) const;

  std::shared_ptr<const DispatchHandle::State> dispatch_;
  std::shared_ptr<const DispatchPlan> plan_;
  const CombineInput in_;
  std::shared_ptr<CombineHandle::State> st_;
  float* y_ = nullptr;
  std::vector<float> acc_;
  size_t out_row_bytes_ = 0;

  std::vector<size_t> recv_next_;  // [world]
  bool receive_done_ = false;
  std::vector<size_t> fwd_next_;  // [P]
  bool forward_done_ = false;
  int64_t next_token_ = 0;
  bool source_done_ = false;
};

absl::Status CombineOp::Start(Wiring& w) {
  const size_t n = static_cast<size_t>(plan_->tokens) * static_cast<size_t>(w.config.hidden);
  st_->y = w.pool->Get(n * sizeof(float));
  if (!st_->y.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("combine: cannot allocate ", n, " floats"));
  }
  st_->elements = static_cast<int64_t>(n);
  y_ = reinterpret_cast<float*>(st_->y.data());
  acc_.assign(static_cast<size_t>(w.config.hidden), 0.0f);
  out_row_bytes_ = static_cast<size_t>(w.config.hidden) * DTypeSize(in_.dtype);
  recv_next_.assign(static_cast<size_t>(w.W), 0);
  fwd_next_.assign(static_cast<size_t>(w.P), 0);
  forward_done_ = w.plan.flat;
  return absl::OkStatus();
}

absl::Status CombineOp::CheckPart(const char* rec, int32_t token, int src,
                                  const std::string& where) {
  if (RecordToken(rec) == token && RecordRank(rec) == src) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(where, ": a part for rank ", RecordRank(rec), " token ",
                                          RecordToken(rec), " where rank ", src, " token ", token,
                                          " was due"));
}

void CombineOp::WritePart(const Wiring& w, char* rec, int32_t token, int src) const {
  const CombineRecordLayout& c = w.plan.crec;
  StoreRecordHeader(rec, token, src);
  std::memset(rec + 8, 0, 8);
  StoreRow(acc_.data(), w.config.hidden, c.dtype, rec + c.payload_offset);
  const size_t end = c.payload_offset + c.payload_bytes;
  if (c.size > end) std::memset(rec + end, 0, c.size - end);
}

absl::StatusOr<bool> CombineOp::ReceiverStep(Wiring& w) {
  if (receive_done_) return false;
  const DispatchPlan& p = *plan_;
  const int64_t hidden = w.config.hidden;
  const char* out = static_cast<const char*>(in_.expert_out);
  const float* weights = dispatch_->weights.data();
  bool progress = false;
  bool all = true;
  for (int s = 0; s < w.W; ++s) {
    const DispatchPlan::FromSource& f = p.from[s];
    size_t& next = recv_next_[s];
    const int src_node = s / w.R;
    const bool remote = w.plan.flat && src_node != w.node;
    ChannelWriter* ch =
        remote ? nullptr : &w.rev_out[(s % w.R) * w.S + w.plan.sub_of_node(src_node)];
    OutboundStream* stream = remote ? &w.c_out[w.PeerIndex(s)] : nullptr;
    bool wrote = false;
    for (int budget = kStepBudget; budget > 0 && next < f.tokens.size(); --budget) {
      char* rec;
      if (ch != nullptr) {
        TR_ASSIGN_OR_RETURN(uint64_t free, ch->Free());
        rec = free > 0 ? ch->Slot(0) : nullptr;
      } else {
        rec = stream->NextRecord(w.puts);
        if (rec == nullptr && stream->full()) {
          TR_ASSIGN_OR_RETURN(bool posted, stream->Flush(w.puts, op_seq));
          if (posted) rec = stream->NextRecord(w.puts);
        }
      }
      if (rec == nullptr) break;
      for (int64_t i = f.rows.begin(next); i < f.rows.end(next); ++i) {
        const int64_t row = f.rows.values[i];
        if (i == f.rows.begin(next)) {
          AssignWeighted(acc_.data(), out + row * out_row_bytes_, in_.dtype, weights[row], hidden);
        } else {
          AccumulateWeighted(acc_.data(), out + row * out_row_bytes_, in_.dtype, weights[row],
                             hidden);
        }
      }
      WritePart(w, rec, f.tokens[next], s);
      if (ch != nullptr) {
        ch->Commit(1);
        w.CountIntra(s % w.R, w.plan.crec.size, 1);
        wrote = true;
      } else {
        stream->CommitRecord();
        if (stream->full()) TR_RETURN_IF_ERROR(stream->Flush(w.puts, op_seq).status());
      }
      ++next;
      progress = true;
    }
    if (wrote) ch->Publish();
    if (next == f.tokens.size() && stream != nullptr) {
      TR_ASSIGN_OR_RETURN(bool flushed, stream->Flush(w.puts, op_seq));
      if (!flushed) all = false;
    }
    all = all && next == f.tokens.size();
  }
  if (all) {
    receive_done_ = true;
    progress = true;
  }
  return progress;
}

absl::StatusOr<bool> CombineOp::ForwardStep(Wiring& w) {
  if (forward_done_) return false;
  const DispatchPlan& p = *plan_;
  const int64_t hidden = w.config.hidden;
  const CombineRecordLayout& c = w.plan.crec;
  bool progress = false;
  bool all = true;
  for (int q = 0; q < w.P; ++q) {
    const DispatchPlan::Forward& f = p.forward[q];
    const int src = w.PeerRank(q);
    const int sub = w.plan.sub_of_node(src / w.R);
    OutboundStream& out = w.c_out[q];
    size_t& next = fwd_next_[q];
    for (int budget = kStepBudget; budget > 0 && next < f.tokens.size(); --budget) {
      const int64_t b = f.ranks.begin(next), e = f.ranks.end(next);
      bool ready = true;
      for (int64_t i = b; i < e && ready; ++i) {
        TR_ASSIGN_OR_RETURN(uint64_t avail, w.rev_in[f.ranks.values[i] * w.S + sub].Available());
        ready = avail > 0;
      }
      if (!ready) break;
      char* rec = out.NextRecord(w.puts);
      if (rec == nullptr && out.full()) {
        TR_ASSIGN_OR_RETURN(bool posted, out.Flush(w.puts, op_seq));
        if (posted) rec = out.NextRecord(w.puts);
      }
      if (rec == nullptr) break;
      for (int64_t i = b; i < e; ++i) {
        ChannelReader& ch = w.rev_in[f.ranks.values[i] * w.S + sub];
        const char* part = ch.Slot(0);
        TR_RETURN_IF_ERROR(CheckPart(part, f.tokens[next], src, ch.name()));
        if (i == b) {
          Assign(acc_.data(), part + c.payload_offset, c.dtype, hidden);
        } else {
          Accumulate(acc_.data(), part + c.payload_offset, c.dtype, hidden);
        }
        ch.Release(1);
      }
      WritePart(w, rec, f.tokens[next], src);
      out.CommitRecord();
      if (out.full()) TR_RETURN_IF_ERROR(out.Flush(w.puts, op_seq).status());
      ++next;
      progress = true;
    }
    if (next == f.tokens.size()) {
      TR_ASSIGN_OR_RETURN(bool flushed, out.Flush(w.puts, op_seq));
      if (!flushed) all = false;
    }
    all = all && next == f.tokens.size();
  }
  for (ChannelReader& ch : w.rev_in) ch.Publish();
  if (all) {
    forward_done_ = true;
    progress = true;
  }
  return progress;
}

absl::StatusOr<bool> CombineOp::SourceStep(Wiring& w) {
  if (source_done_) return false;
  const DispatchPlan& p = *plan_;
  const int64_t hidden = w.config.hidden;
  const CombineRecordLayout& c = w.plan.crec;
  const int own_sub = w.plan.sub_of_node(w.node);
  bool progress = false;
  for (int budget = kStepBudget; budget > 0 && next_token_ < p.tokens; --budget) {
    const int64_t t = next_token_;
    const int64_t b = p.dests.begin(t), e = p.dests.end(t);
    bool ready = true;
    for (int64_t i = b; i < e && ready; ++i) {
      const int code = p.dests.values[i];
      if (code < w.R) {
        TR_ASSIGN_OR_RETURN(uint64_t avail, w.rev_in[code * w.S + own_sub].Available());
        ready = avail > 0;
      } else {
        TR_ASSIGN_OR_RETURN(const ChunkHeader* h, w.c_in[code - w.R].Current(op_seq));
        ready = h != nullptr;
      }
    }
    if (!ready) break;
    float* y = y_ + t * hidden;
    if (b == e) std::memset(y, 0, static_cast<size_t>(hidden) * sizeof(float));  // no expert
    for (int64_t i = b; i < e; ++i) {
      const int code = p.dests.values[i];
      // y = 0 + parts: the first part is assigned (0.0f + part), bitwise the
      // same as adding it to zeros.
      auto add = [&](const char* payload) {
        if (i == b) {
          Assign(y, payload, c.dtype, hidden);
        } else {
          Accumulate(y, payload, c.dtype, hidden);
        }
      };
      if (code < w.R) {
        ChannelReader& ch = w.rev_in[code * w.S + own_sub];
        TR_RETURN_IF_ERROR(CheckPart(ch.Slot(0), static_cast<int32_t>(t), w.me, ch.name()));
        add(ch.Slot(0) + c.payload_offset);
        ch.Release(1);
      } else {
        InboundStream& in = w.c_in[code - w.R];
        TR_ASSIGN_OR_RETURN(const ChunkHeader* h, in.Current(op_seq));
        if (h->kind != static_cast<uint32_t>(ChunkKind::kRecords)) {
          return absl::DataLossError(absl::StrCat(in.name(), ": a counts chunk in combine"));
        }
        const char* part = in.record(in.cursor);
        TR_RETURN_IF_ERROR(CheckPart(part, static_cast<int32_t>(t), w.me, in.name()));
        add(part + c.payload_offset);
        if (++in.cursor == h->records) in.Finish();
      }
    }
    ++next_token_;
    progress = true;
  }
  for (ChannelReader& ch : w.rev_in) ch.Publish();
  if (next_token_ == p.tokens) {
    // Every part of this operation consumed: a stream that still holds some
    // sent more than its tokens.
    for (InboundStream& in : w.c_in) {
      if (in.cursor != 0) {
        return absl::DataLossError(absl::StrCat(in.name(), ": more parts than tokens"));
      }
    }
    source_done_ = true;
    progress = true;
  }
  return progress;
}

absl::StatusOr<bool> CombineOp::Step(Wiring& w) {
  TR_ASSIGN_OR_RETURN(bool r, ReceiverStep(w));
  TR_ASSIGN_OR_RETURN(bool f, ForwardStep(w));
  TR_ASSIGN_OR_RETURN(bool s, SourceStep(w));
  return r || f || s;
}

std::string CombineOp::Describe() const {
  size_t sent = 0, total = 0;
  for (size_t s = 0; s < recv_next_.size(); ++s) {
    sent += recv_next_[s];
    total += plan_->from[s].tokens.size();
  }
  return absl::StrCat("combine (operation ", op_seq, "): receiver ", sent, "/", total,
                      " parts sent; forwarder ", forward_done_ ? "done" : "busy", "; source ",
                      next_token_, "/", plan_->tokens, " tokens reduced");
}

void CombineOp::Complete(const absl::Status& status, Wiring& w, const EpOpStats& stats) {
  st_->stats = stats;
  st_->Finish(status);
}

}  // namespace

std::unique_ptr<Op> MakeCombineOp(std::shared_ptr<const DispatchHandle::State> dispatch,
                                  const CombineInput& input,
                                  std::shared_ptr<CombineHandle::State> state) {
  return std::make_unique<CombineOp>(std::move(dispatch), input, std::move(state));
}

}  // namespace ep
}  // namespace tokenrail
