#include "runtime/ep/kernels.h"

#include <algorithm>
#include <cstring>

#include "runtime/ep/numeric.h"

namespace tokenrail {
namespace ep {
namespace {

// Same multiversioning as numeric.cc: each clone performs the same IEEE
// operations (no FMA contraction, no reassociation), so results do not
// depend on which one the loader picks.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(TR_EP_NO_SIMD_CLONES)
#define TR_EP_KERNEL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TR_EP_KERNEL_CLONES
#endif

// Full blocks take the vector path even under GCC's cheap cost model.
constexpr int64_t kBlock = 256;

TR_EP_KERNEL_CLONES void AxpyF32(float* __restrict acc, const float* __restrict v, float w,
                                 int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) acc[i + j] = acc[i + j] + w * v[i + j];
  }
  for (; i < n; ++i) acc[i] = acc[i] + w * v[i];
}

TR_EP_KERNEL_CLONES void AxpyBf16(float* __restrict acc, const uint16_t* __restrict v, float w,
                                  int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) acc[i + j] = acc[i + j] + w * Bf16ToFloat(v[i + j]);
  }
  for (; i < n; ++i) acc[i] = acc[i] + w * Bf16ToFloat(v[i]);
}

TR_EP_KERNEL_CLONES void AddF32(float* __restrict acc, const float* __restrict v, int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) acc[i + j] = acc[i + j] + v[i + j];
  }
  for (; i < n; ++i) acc[i] = acc[i] + v[i];
}

TR_EP_KERNEL_CLONES void AddBf16(float* __restrict acc, const uint16_t* __restrict v, int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) acc[i + j] = acc[i + j] + Bf16ToFloat(v[i + j]);
  }
  for (; i < n; ++i) acc[i] = acc[i] + Bf16ToFloat(v[i]);
}

TR_EP_KERNEL_CLONES void SetAxF32(float* __restrict acc, const float* __restrict v, float w,
                                  int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) acc[i + j] = 0.0f + w * v[i + j];
  }
  for (; i < n; ++i) acc[i] = 0.0f + w * v[i];
}

TR_EP_KERNEL_CLONES void SetAxBf16(float* __restrict acc, const uint16_t* __restrict v, float w,
                                   int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) acc[i + j] = 0.0f + w * Bf16ToFloat(v[i + j]);
  }
  for (; i < n; ++i) acc[i] = 0.0f + w * Bf16ToFloat(v[i]);
}

TR_EP_KERNEL_CLONES void SetF32(float* __restrict acc, const float* __restrict v, int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) acc[i + j] = 0.0f + v[i + j];
  }
  for (; i < n; ++i) acc[i] = 0.0f + v[i];
}

TR_EP_KERNEL_CLONES void SetBf16(float* __restrict acc, const uint16_t* __restrict v, int64_t n) {
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) acc[i + j] = 0.0f + Bf16ToFloat(v[i + j]);
  }
  for (; i < n; ++i) acc[i] = 0.0f + Bf16ToFloat(v[i]);
}

}  // namespace

void AssignWeighted(float* acc, const void* v, DType v_dtype, float w, int64_t n) {
  if (v_dtype == DType::kFloat32) {
    SetAxF32(acc, static_cast<const float*>(v), w, n);
  } else {
    SetAxBf16(acc, static_cast<const uint16_t*>(v), w, n);
  }
}

void Assign(float* acc, const void* v, DType v_dtype, int64_t n) {
  if (v_dtype == DType::kFloat32) {
    SetF32(acc, static_cast<const float*>(v), n);
  } else {
    SetBf16(acc, static_cast<const uint16_t*>(v), n);
  }
}

DType ExpertDType(DType wire, bool fp8_keep_quantized) {
  if (wire != DType::kFp8E4M3) return wire;
  return fp8_keep_quantized ? DType::kFp8E4M3 : DType::kBFloat16;
}

absl::Status PackRow(const void* x, DType x_dtype, int64_t hidden, DType wire, void* payload,
                     float* scales) {
  const size_t n = static_cast<size_t>(hidden);
  if (wire == DType::kFp8E4M3) {
    absl::Status s = x_dtype == DType::kFloat32
                         ? QuantizeRowFp8(static_cast<const float*>(x), hidden,
                                          static_cast<uint8_t*>(payload), scales)
                         : QuantizeRowFp8FromBf16(static_cast<const uint16_t*>(x), hidden,
                                                  static_cast<uint8_t*>(payload), scales);
    if (!s.ok()) {
      std::memset(payload, kFp8E4M3NanCode, n);
      std::fill(scales, scales + Fp8TilesPerRow(hidden), 1.0f);
    }
    return s;
  }
  if (wire == x_dtype) {
    std::memcpy(payload, x, n * DTypeSize(wire));
  } else if (wire == DType::kBFloat16) {
    FloatToBf16(static_cast<const float*>(x), hidden, static_cast<uint16_t*>(payload));
  } else {
    Bf16ToFloat(static_cast<const uint16_t*>(x), hidden, static_cast<float*>(payload));
  }
  return absl::OkStatus();
}

void UnpackRow(const void* payload, const float* scales, DType wire, int64_t hidden,
               bool fp8_keep_quantized, void* out, float* out_scales) {
  if (wire != DType::kFp8E4M3) {
    std::memcpy(out, payload, static_cast<size_t>(hidden) * DTypeSize(wire));
    return;
  }
  if (fp8_keep_quantized) {
    std::memcpy(out, payload, static_cast<size_t>(hidden));
    std::memcpy(out_scales, scales, static_cast<size_t>(Fp8TilesPerRow(hidden)) * sizeof(float));
    return;
  }
  DequantizeRowFp8ToBf16(static_cast<const uint8_t*>(payload), scales, hidden,
                         static_cast<uint16_t*>(out));
}

void AccumulateWeighted(float* acc, const void* v, DType v_dtype, float w, int64_t n) {
  if (v_dtype == DType::kFloat32) {
    AxpyF32(acc, static_cast<const float*>(v), w, n);
  } else {
    AxpyBf16(acc, static_cast<const uint16_t*>(v), w, n);
  }
}

void Accumulate(float* acc, const void* v, DType v_dtype, int64_t n) {
  if (v_dtype == DType::kFloat32) {
    AddF32(acc, static_cast<const float*>(v), n);
  } else {
    AddBf16(acc, static_cast<const uint16_t*>(v), n);
  }
}

void StoreRow(const float* acc, int64_t n, DType dtype, void* out) {
  if (dtype == DType::kFloat32) {
    std::memcpy(out, acc, static_cast<size_t>(n) * sizeof(float));
  } else {
    FloatToBf16(acc, n, static_cast<uint16_t*>(out));
  }
}

}  // namespace ep
}  // namespace tokenrail
