// CUDA kernels behind fp8_cuda.h. One thread block per (tile, row): 128
// threads load one element each, reduce the tile's amax through warp shuffles
// and shared memory, then convert with the hardware's saturating E4M3
// conversion (cvt.rn.satfinite.e4m3x2.f32 on sm_89+).
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cfloat>

#include "absl/strings/str_cat.h"
#include "common/cuda_status.h"
#include "runtime/ep/cuda/fp8_cuda.h"

namespace tokenrail {
namespace ep {
namespace {

constexpr int kTile = 128;

__device__ float TileAmax(float v) {
  __shared__ float warp_max[kTile / 32];
  float m = fabsf(v);
  for (int offset = 16; offset > 0; offset /= 2) {
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
  }
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x / 32] = m;
  __syncthreads();
  float amax = warp_max[0];
  for (int w = 1; w < kTile / 32; ++w) amax = fmaxf(amax, warp_max[w]);
  return amax;
}

__global__ void QuantizeKernel(const float* __restrict__ x, int64_t hidden, int64_t tiles,
                               uint8_t* __restrict__ q, float* __restrict__ scales) {
  const int64_t row = blockIdx.y;
  const int64_t col = blockIdx.x * kTile + threadIdx.x;
  const bool in = col < hidden;
  const float v = in ? x[row * hidden + col] : 0.0f;  // padding lanes count as 0
  const float amax = TileAmax(v);
  float scale = amax / 448.0f;
  if (amax == 0.0f) {
    scale = 1.0f;
  } else if (scale < FLT_MIN) {
    scale = FLT_MIN;
  }
  const float inv = 1.0f / scale;
  if (in) {
    q[row * hidden + col] =
        static_cast<uint8_t>(__nv_cvt_float_to_fp8(__fmul_rn(v, inv), __NV_SATFINITE, __NV_E4M3));
  }
  if (threadIdx.x == 0) scales[row * tiles + blockIdx.x] = scale;
}

__global__ void DequantizeKernel(const uint8_t* __restrict__ q, const float* __restrict__ scales,
                                 int64_t hidden, int64_t tiles, float* __restrict__ out) {
  const int64_t row = blockIdx.y;
  const int64_t col = blockIdx.x * kTile + threadIdx.x;
  if (col >= hidden) return;
  const __half_raw h = __nv_cvt_fp8_to_halfraw(q[row * hidden + col], __NV_E4M3);
  out[row * hidden + col] = __fmul_rn(__half2float(__half(h)), scales[row * tiles + blockIdx.x]);
}

absl::Status CheckShape(int64_t rows, int64_t hidden) {
  if (rows < 0 || hidden < 0 || rows > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("fp8 on device: rows=", rows, " (0..65535) hidden=", hidden, " (>= 0)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> CudaDeviceCount() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) return StatusFromCuda(err, "cudaGetDeviceCount");
  if (n == 0) return absl::UnavailableError("no CUDA device");
  return n;
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  void* p = nullptr;
  if (absl::Status s = StatusFromCuda(cudaMalloc(&p, bytes), absl::StrCat("cudaMalloc ", bytes));
      !s.ok()) {
    return s;
  }
  return DeviceBuffer(p, bytes);
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

absl::Status DeviceBuffer::CopyFromHost(const void* src, size_t bytes) {
  if (bytes > size_) return absl::InvalidArgumentError(absl::StrCat("copy of ", bytes, " bytes"));
  return StatusFromCuda(cudaMemcpy(ptr_, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}

absl::Status DeviceBuffer::CopyToHost(void* dst, size_t bytes) const {
  if (bytes > size_) return absl::InvalidArgumentError(absl::StrCat("copy of ", bytes, " bytes"));
  return StatusFromCuda(cudaMemcpy(dst, ptr_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}

absl::Status QuantizeFp8OnDevice(const float* x, int64_t rows, int64_t hidden, uint8_t* q,
                                 float* scales, void* stream) {
  if (absl::Status s = CheckShape(rows, hidden); !s.ok()) return s;
  if (rows == 0 || hidden == 0) return absl::OkStatus();
  const int64_t tiles = (hidden + kTile - 1) / kTile;
  QuantizeKernel<<<dim3(tiles, rows), kTile, 0, static_cast<cudaStream_t>(stream)>>>(
      x, hidden, tiles, q, scales);
  return StatusFromCuda(cudaGetLastError(), "fp8 quantize launch");
}

absl::Status DequantizeFp8OnDevice(const uint8_t* q, const float* scales, int64_t rows,
                                   int64_t hidden, float* out, void* stream) {
  if (absl::Status s = CheckShape(rows, hidden); !s.ok()) return s;
  if (rows == 0 || hidden == 0) return absl::OkStatus();
  const int64_t tiles = (hidden + kTile - 1) / kTile;
  DequantizeKernel<<<dim3(tiles, rows), kTile, 0, static_cast<cudaStream_t>(stream)>>>(
      q, scales, hidden, tiles, out);
  return StatusFromCuda(cudaGetLastError(), "fp8 dequantize launch");
}

}  // namespace ep
}  // namespace tokenrail
