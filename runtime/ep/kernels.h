// Row kernels of the engine's data path: packing a token into a dispatch
// record payload (conversion or FP8 quantization), unpacking it into an
// expert row, and the FP32 accumulations of combine.
//
// Arithmetic contract (the package builds with -ffp-contract=off): every
// accumulation is acc = acc + term with term = w * v rounded first, exactly
// as runtime/ep/reference.cc does, so a fixed order of calls gives bitwise
// reproducible results on every instruction set the clones pick.
//
// Thread safety: pure functions; buffers must not overlap.
#ifndef TOKENRAIL_RUNTIME_EP_KERNELS_H_
#define TOKENRAIL_RUNTIME_EP_KERNELS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/ep/types.h"

namespace tokenrail {
namespace ep {

// The dtype of the rows handed to the experts for a given wire dtype: FP32
// and BF16 arrive as sent; FP8 is dequantized to BF16, or kept as FP8 codes
// plus tile scales when `fp8_keep_quantized`.
DType ExpertDType(DType wire, bool fp8_keep_quantized);

// x[hidden] (FP32 or BF16) -> payload in `wire` (FP32, BF16, or FP8 codes
// plus scales[tiles]). FP8 with a non-finite input value: InvalidArgument
// naming the tile; the payload is then filled with NaN codes (scale 1) so
// the record can still travel and the exchange completes.
absl::Status PackRow(const void* x, DType x_dtype, int64_t hidden, DType wire, void* payload,
                     float* scales);

// A record payload -> an expert row of ExpertDType(wire, keep): FP32 and
// BF16 copied, FP8 dequantized to BF16 (Fp8 value * scale, rounded once to
// BF16) or copied with its scales into out_scales.
void UnpackRow(const void* payload, const float* scales, DType wire, int64_t hidden,
               bool fp8_keep_quantized, void* out, float* out_scales);

// The first term of a sum that starts from 0: acc[i] = 0.0f + w * v[i]
// (bitwise what AccumulateWeighted gives on a zeroed acc, -0 becoming +0,
// without the extra pass).
void AssignWeighted(float* acc, const void* v, DType v_dtype, float w, int64_t n);
// acc[i] = 0.0f + v[i].
void Assign(float* acc, const void* v, DType v_dtype, int64_t n);
// acc[i] = acc[i] + w * v[i], v in FP32 or BF16.
void AccumulateWeighted(float* acc, const void* v, DType v_dtype, float w, int64_t n);
// acc[i] = acc[i] + v[i], v in FP32 or BF16.
void Accumulate(float* acc, const void* v, DType v_dtype, int64_t n);
// out = acc in `dtype` (FP32 copy, or BF16 round-to-nearest-even).
void StoreRow(const float* acc, int64_t n, DType dtype, void* out);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_KERNELS_H_
