// Adapter: errno values to absl::Status (the only place errno is interpreted).
#ifndef TOKENRAIL_COMMON_ERRNO_STATUS_H_
#define TOKENRAIL_COMMON_ERRNO_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tokenrail {

// Maps `error_number` to the closest canonical code and a message of the form
// "<context>: <strerror> (errno N)". ECONNRESET, EPIPE and ECONNREFUSED become
// Unavailable (the peer is gone); ETIMEDOUT becomes DeadlineExceeded.
absl::Status StatusFromErrno(int error_number, absl::string_view context);

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_ERRNO_STATUS_H_
