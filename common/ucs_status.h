// Adapter: UCX ucs_status_t to absl::Status.
#ifndef TOKENRAIL_COMMON_UCS_STATUS_H_
#define TOKENRAIL_COMMON_UCS_STATUS_H_

#include <ucs/type/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tokenrail {

// "<context>: <ucs_status_string> (ucs N)". Connection and endpoint failures
// (UCS_ERR_UNREACHABLE, CONNECTION_RESET, ENDPOINT_TIMEOUT, ...) become
// Unavailable; UCS_ERR_TIMED_OUT becomes DeadlineExceeded.
absl::Status StatusFromUcs(ucs_status_t status, absl::string_view context);

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_UCS_STATUS_H_
