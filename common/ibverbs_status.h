// Adapter: libibverbs errors (negative/positive errno returns and work
// completion statuses) to absl::Status.
#ifndef TOKENRAIL_COMMON_IBVERBS_STATUS_H_
#define TOKENRAIL_COMMON_IBVERBS_STATUS_H_

#include <infiniband/verbs.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tokenrail {

// Verbs calls return 0, an errno value, or -1 with errno set; `rc` is that
// return value. Reads errno when rc == -1.
absl::Status StatusFromIbv(int rc, absl::string_view context);

// A failed work completion. IBV_WC_RETRY_EXC_ERR and friends mean the remote
// side is gone (Unavailable); IBV_WC_REM_ACCESS_ERR means a bad key or range
// (InvalidArgument, reported by the remote side).
absl::Status StatusFromWc(ibv_wc_status status, absl::string_view context);

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_IBVERBS_STATUS_H_
