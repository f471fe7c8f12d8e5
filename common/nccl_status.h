// Adapter: ncclResult_t to absl::Status. Header-only, for CUDA-enabled code.
#ifndef TOKENRAIL_COMMON_NCCL_STATUS_H_
#define TOKENRAIL_COMMON_NCCL_STATUS_H_

#include <nccl.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tokenrail {

inline absl::Status StatusFromNccl(ncclResult_t r, absl::string_view context) {
  if (r == ncclSuccess) return absl::OkStatus();
  const std::string msg =
      absl::StrCat(context, ": ", ncclGetErrorString(r), " (nccl ", static_cast<int>(r), ")");
  switch (r) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::InvalidArgumentError(msg);
    case ncclSystemError:
    case ncclRemoteError:
      return absl::UnavailableError(msg);
    case ncclInProgress:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_NCCL_STATUS_H_
