// Adapter: CUDA runtime errors to absl::Status. Header-only so that targets
// built without CUDA never compile it; include it only from CUDA-enabled code.
#ifndef TOKENRAIL_COMMON_CUDA_STATUS_H_
#define TOKENRAIL_COMMON_CUDA_STATUS_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tokenrail {

// No driver or no device means "no GPU here": Unavailable, so callers skip or
// fall back. Out of memory is ResourceExhausted; bad values InvalidArgument.
inline absl::Status StatusFromCuda(cudaError_t err, absl::string_view context) {
  if (err == cudaSuccess) return absl::OkStatus();
  const std::string msg =
      absl::StrCat(context, ": ", cudaGetErrorName(err), ": ", cudaGetErrorString(err));
  switch (err) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
      return absl::UnavailableError(msg);
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(msg);
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidDevice:
      return absl::InvalidArgumentError(msg);
    case cudaErrorNotSupported:
      return absl::UnimplementedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_CUDA_STATUS_H_
