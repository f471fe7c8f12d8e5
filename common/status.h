// Status helpers shared by every tokenrail library.
//
// TR_RETURN_IF_ERROR(expr)       returns the absl::Status of `expr` when not OK.
// TR_ASSIGN_OR_RETURN(lhs, expr) evaluates an absl::StatusOr, returns its status
//                                when not OK, else moves the value into `lhs`.
// The TR_ prefix avoids clashing with protobuf's unprefixed macros.
#ifndef TOKENRAIL_COMMON_STATUS_H_
#define TOKENRAIL_COMMON_STATUS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define TR_STATUS_CONCAT_INNER_(a, b) a##b
#define TR_STATUS_CONCAT_(a, b) TR_STATUS_CONCAT_INNER_(a, b)

#define TR_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status tr_status_ = (expr);      \
    if (!tr_status_.ok()) return tr_status_; \
  } while (0)

#define TR_ASSIGN_OR_RETURN(lhs, expr) \
  TR_ASSIGN_OR_RETURN_IMPL_(TR_STATUS_CONCAT_(tr_statusor_, __LINE__), lhs, expr)

#define TR_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)     \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace tokenrail {

// Returns `status` with `context` prepended to its message ("context: message"),
// keeping the code. OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_STATUS_H_
