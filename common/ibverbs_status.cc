#include "common/ibverbs_status.h"

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace tokenrail {

absl::Status StatusFromIbv(int rc, absl::string_view context) {
  if (rc == 0) return absl::OkStatus();
  const int e = rc == -1 ? errno : (rc < 0 ? -rc : rc);
  return StatusFromErrno(e, context);
}

absl::Status StatusFromWc(ibv_wc_status status, absl::string_view context) {
  if (status == IBV_WC_SUCCESS) return absl::OkStatus();
  const std::string msg = absl::StrCat(context, ": ", ibv_wc_status_str(status), " (wc ",
                                       static_cast<int>(status), ")");
  switch (status) {
    case IBV_WC_REM_ACCESS_ERR:
    case IBV_WC_LOC_PROT_ERR:
    case IBV_WC_LOC_LEN_ERR:
    case IBV_WC_REM_INV_REQ_ERR:
      return absl::InvalidArgumentError(msg);
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR:
    case IBV_WC_REM_ABORT_ERR:
    case IBV_WC_WR_FLUSH_ERR:
    case IBV_WC_FATAL_ERR:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace tokenrail
