// FP8 E4M3 1x128-tile quantization on the GPU, bit-identical to the CPU
// version in runtime/ep/numeric.h (same scale rule: amax/448 clamped to
// FLT_MIN, 1 for an all-zero tile; q = E4M3(x * (1/scale)), round to nearest
// even, saturating at 448).
//
// Pointers are device pointers; `stream` is a cudaStream_t (nullptr = the
// legacy default stream). The calls enqueue work and return; errors of the
// launch come back as Status, errors of the kernel at the next synchronizing
// call. Built without CUDA, every call returns Unavailable.
#ifndef TOKENRAIL_RUNTIME_EP_CUDA_FP8_CUDA_H_
#define TOKENRAIL_RUNTIME_EP_CUDA_FP8_CUDA_H_

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tokenrail {
namespace ep {

// Number of usable GPUs; Unavailable (with CUDA's reason: no driver, no
// device, built without CUDA) when there are none.
absl::StatusOr<int> CudaDeviceCount();

// GPU memory with an owner (cudaMalloc / cudaFree), and synchronous copies.
class DeviceBuffer {
 public:
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes);
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), size_(o.size_) {}
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  ~DeviceBuffer();
  void* get() const { return ptr_; }
  size_t size() const { return size_; }
  absl::Status CopyFromHost(const void* src, size_t bytes);
  absl::Status CopyToHost(void* dst, size_t bytes) const;

 private:
  DeviceBuffer(void* ptr, size_t size) : ptr_(ptr), size_(size) {}
  void* ptr_;
  size_t size_;
};

// x[rows x hidden] (row stride `hidden`) -> q[rows x hidden] codes and
// scales[rows x ceil(hidden/128)].
absl::Status QuantizeFp8OnDevice(const float* x, int64_t rows, int64_t hidden, uint8_t* q,
                                 float* scales, void* stream);

// The inverse: out[rows x hidden] = decode(q) * scale of its tile.
absl::Status DequantizeFp8OnDevice(const uint8_t* q, const float* scales, int64_t rows,
                                   int64_t hidden, float* out, void* stream);

}  // namespace ep
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_EP_CUDA_FP8_CUDA_H_
