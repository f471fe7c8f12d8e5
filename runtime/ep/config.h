// Configuration of an expert-parallel buffer (EpBuffer, buffer.h): the job's
// shape, the payload formats and the communication buffer budget. Every rank
// of a job must use the same EpConfig (the engine checks a fingerprint on the
// wire and fails with FailedPrecondition naming the peer otherwise).
#ifndef TOKENRAIL_RUNTIME_EP_CONFIG_H_
#define TOKENRAIL_RUNTIME_EP_CONFIG_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace ep {

// How tokens cross nodes.
//   kHierarchical: DeepEP's internode path. A token crosses to each of its
//     destination nodes once, to the rank with the same local index (the
//     rail rank), which forwards it inside the node to every rank hosting one
//     of its experts; combine reduces on the way back (per rank, per node).
//   kFlat: one copy per destination rank, straight from the source, no
//     node-level forwarding or reduction (the benchmark's comparison).
enum class EpRouting { kHierarchical, kFlat };

// Local ranks are byte-sized in the forwarding plan (one node's fan-out).
inline constexpr int kMaxRanksPerNode = 256;

struct EpConfig {
  EpTopology topology;
  int top_k = 1;
  // M: the most nodes one token may reach (1..nodes). Dispatch rejects a
  // token whose experts span more nodes.
  int max_nodes = 1;
  // Columns per token, >= 1 (any value; FP8 tiles are padded inside).
  int64_t hidden = 0;
  // On the wire: kFloat32, kBFloat16 or kFp8E4M3 (one FP32 scale per 1x128
  // tile, quantized by the source).
  DType dispatch_dtype = DType::kBFloat16;
  // Partial sums on the wire: kBFloat16 or kFloat32; accumulation is FP32.
  DType combine_dtype = DType::kBFloat16;
  // FP8 dispatch only: hand the experts the FP8 codes plus tile scales
  // instead of rows dequantized to BF16.
  bool fp8_keep_quantized = false;
  // Pad each local expert's rows to a multiple of this (1..4096).
  int align = 1;
  // Communication buffers of one rank (rings and chunks in its symmetric
  // region); work larger than them streams through. Raised to
  // MinBufferBytes() when smaller. The size changes speed, never results.
  size_t buffer_bytes = size_t{8} << 20;
  EpRouting routing = EpRouting::kHierarchical;
  // Bound of EpBuffer::Create's collective steps (allocation, barrier).
  absl::Duration setup_timeout = absl::Seconds(60);
};

// InvalidArgument naming the offending values unless the topology, top_k
// and max_nodes pass Validate(topology, top_k, max_nodes) (types.h), hidden
// is in 1..2^24, combine_dtype is FP32 or BF16, fp8_keep_quantized comes with
// FP8 dispatch, align is in 1..4096, and the world has at most 65536 ranks,
// at most kMaxRanksPerNode per node.
absl::Status Validate(const EpConfig& config);

// Fingerprint of everything that shapes the wire format and the buffers.
uint32_t ConfigFingerprint(const EpConfig& config);

// "2x2 ranks, 16 experts, top-4, M=2, hidden 2048, bf16/bf16, align 1,
// hierarchical, buffers 8388608 B" (" (fp8 kept)" after the dtypes when set)
std::string ToString(const EpConfig& config);
absl::string_view RoutingName(EpRouting routing);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_CONFIG_H_
