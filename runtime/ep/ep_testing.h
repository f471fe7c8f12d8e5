// Correctness scenarios for the distributed engine, shared by the
// single-process tests (runtime/ep/engine_test.cc, ranks as threads) and the
// multi-process ones on launched clusters (test/ep/). Every rank generates
// the inputs of ALL ranks from the scenario's seed, so it can compute the
// single-process reference (reference.h) by itself and check its own
// results without gathering anything.
//
// Checks, per round (RunRank):
//   dispatch: rows, per-row metadata, counts, offsets and received tokens
//     equal ReferenceDispatch's; every payload row equals, bit for bit, the
//     source row after the wire's rounding (BF16 rounding, or FP8
//     quantize + dequantize-to-BF16; FP8 kept: the same codes and scales);
//     encoded payloads on a BF16 or FP32 wire are decoded (DecodePayloadRow
//     names a misplaced row; E4M3 is too coarse to carry the code);
//     FP8 rows are within the E4M3 bound of the original value:
//       |x - deq| <= Fp8ErrorBound(x, tile scale) + Bf16RoundingBound(deq).
//   combine: y against ReferenceCombine of the same expert outputs, within
//     tol * (sum over the token's experts of |w * out|) elementwise, where
//     tol = 2^-20 with FP32 parts (only the summation order differs) and
//     2^-6 with BF16 parts (each part is rounded to BF16 at most twice,
//     receiver and forwarder: (1 + 2^-8)^2 - 1 < 2^-7, plus the order).
//     Identity experts make this combine(dispatch(x)) = (sum of w) * x.
//   stats: inter-node record bytes = records sent to remote peers x record
//     size, exactly (records = tokens x destination peers).
// The report carries a hash of y's bits (determinism across runs, buffer
// sizes and routings of the same shape).
#ifndef TOKENRAIL_RUNTIME_EP_EP_TESTING_H_
#define TOKENRAIL_RUNTIME_EP_EP_TESTING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/ep/buffer.h"
#include "runtime/ep/config.h"

namespace tokenrail {
namespace ep {
namespace testing {

enum class RoutingPattern {
  kGate,       // node-limited gate on random logits
  kOneExpert,  // every token: slot 0 = one hot expert, other slots empty
  kSparse,     // gate, then random slots emptied (some tokens get none)
};
enum class ExpertKind { kIdentity, kLinear };
enum class PayloadKind { kEncoded, kRandom };

struct Scenario {
  EpConfig config;
  int64_t tokens = 64;            // per rank, before the variations below
  bool uneven_tokens = true;      // rank r gets tokens + (r * 7) % 13
  bool zero_token_ranks = false;  // every third rank (1, 4, ...) gets 0 tokens
  RoutingPattern routing = RoutingPattern::kGate;
  ExpertKind experts = ExpertKind::kIdentity;
  PayloadKind payload = PayloadKind::kEncoded;
  DType x_dtype = DType::kFloat32;           // dispatch input
  DType expert_out_dtype = DType::kFloat32;  // combine input
  int rounds = 1;
  // Rounds after the first reuse the first round's layout (same topk_idx,
  // new x).
  bool reuse_layout = false;
  uint64_t seed = 1;
  absl::Duration timeout = absl::Seconds(60);
};

// One rank's inputs for one round.
struct RankData {
  int64_t tokens = 0;
  std::vector<float> x;           // [tokens x hidden] FP32 values (BF16-exact if x_dtype is BF16)
  std::vector<uint16_t> x_bf16;   // the same as BF16 when x_dtype is BF16
  std::vector<int32_t> topk_idx;  // [tokens x top_k]
  std::vector<float> weights;
};

int64_t TokensOf(const Scenario& s, int rank);
absl::StatusOr<std::vector<RankData>> MakeInputs(const Scenario& s, int round);

struct RankReport {
  uint64_t y_hash = 0;         // over every round's y bits
  uint64_t dispatch_hash = 0;  // over every round's expert rows
  int64_t rows = 0;            // last round
  int64_t received_tokens = 0;
  double max_combine_error = 0;    // largest |y - ref| / (sum |w out|) seen
  double max_fp8_error_ratio = 0;  // largest |x - deq| / bound (<= 1)
  EpOpStats dispatch_stats;        // last round
  EpOpStats combine_stats;
  uint64_t expected_inter_record_bytes = 0;  // last round's dispatch
  std::string Summary() const;
};

// Runs the scenario's rounds on `buffer` as rank buffer.topology().global_rank
// and checks everything above. The first failed check is the error
// (DataLoss naming rank, round, row/token and values); runtime errors pass
// through.
absl::StatusOr<RankReport> RunRank(EpBuffer& buffer, const Scenario& s);

}  // namespace testing
}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_EP_TESTING_H_
