#include "common/errno_status.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tokenrail {
namespace {

absl::StatusCode CodeFromErrno(int e) {
  switch (e) {
    case 0:
      return absl::StatusCode::kOk;
    case EINVAL:
    case EBADF:
    case ENAMETOOLONG:
    case E2BIG:
      return absl::StatusCode::kInvalidArgument;
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return absl::StatusCode::kNotFound;
    case EEXIST:
    case EADDRINUSE:
      return absl::StatusCode::kAlreadyExists;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
      return absl::StatusCode::kResourceExhausted;
    case ETIMEDOUT:
      return absl::StatusCode::kDeadlineExceeded;
    case EAGAIN:
    case EINTR:
    case ECONNRESET:
    case ECONNREFUSED:
    case ECONNABORTED:
    case EPIPE:
    case ENOTCONN:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return absl::StatusCode::kUnavailable;
    case ENOSYS:
    case EOPNOTSUPP:
      return absl::StatusCode::kUnimplemented;
    default:
      return absl::StatusCode::kUnknown;
  }
}

}  // namespace

absl::Status StatusFromErrno(int error_number, absl::string_view context) {
  if (error_number == 0) return absl::OkStatus();
  char buf[128];
  // GNU strerror_r returns the message pointer (possibly not `buf`).
  const char* text = strerror_r(error_number, buf, sizeof(buf));
  return absl::Status(CodeFromErrno(error_number),
                      absl::StrCat(context, ": ", text, " (errno ", error_number, ")"));
}

}  // namespace tokenrail
