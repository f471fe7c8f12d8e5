// fp8_cuda.h for builds without the CUDA toolkit: nothing runs on a GPU.
#include "runtime/ep/cuda/fp8_cuda.h"

namespace tokenrail {
namespace ep {
namespace {
absl::Status NoCuda() {
  return absl::UnavailableError("tokenrail was built without CUDA (no /usr/local/cuda)");
}
}  // namespace

absl::StatusOr<int> CudaDeviceCount() { return NoCuda(); }

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t) { return NoCuda(); }
DeviceBuffer::~DeviceBuffer() = default;
absl::Status DeviceBuffer::CopyFromHost(const void*, size_t) { return NoCuda(); }
absl::Status DeviceBuffer::CopyToHost(void*, size_t) const { return NoCuda(); }

absl::Status QuantizeFp8OnDevice(const float*, int64_t, int64_t, uint8_t*, float*, void*) {
  return NoCuda();
}

absl::Status DequantizeFp8OnDevice(const uint8_t*, const float*, int64_t, int64_t, float*, void*) {
  return NoCuda();
}

}  // namespace ep
}  // namespace tokenrail
