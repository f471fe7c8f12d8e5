// Bearer-token authentication for tokenrail's gRPC services: the token file,
// the per-call check the server runs, and the metadata clients send.
//
// Thread safety: free functions, no shared state.
#ifndef TOKENRAIL_COMMON_RPC_AUTH_H_
#define TOKENRAIL_COMMON_RPC_AUTH_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace rpc {

// Metadata key carrying "Bearer <token>" (lower case, as HTTP/2 sends it).
inline constexpr char kAuthorizationKey[] = "authorization";
// Calls under this path prefix never need the token (load balancers and
// health probes do not have it).
inline constexpr char kHealthMethodPrefix[] = "/grpc.health.v1.Health/";
// Longest token accepted (it travels in every call's headers).
inline constexpr size_t kMaxTokenBytes = 4096;

// Compares in time that depends only on expected.size(), never on where the
// first difference is, so a caller cannot guess the token byte by byte.
bool ConstantTimeEquals(absl::string_view expected, absl::string_view given);

// A token is 1..kMaxTokenBytes printable ASCII characters without spaces
// (it must be a valid HTTP header value). InvalidArgument otherwise; the
// message never contains the token.
absl::Status ValidateToken(absl::string_view token);

// Reads a token file: surrounding whitespace is stripped, the rest must pass
// ValidateToken. A file readable by other users (mode & 0004) is refused with
// FailedPrecondition telling how to fix it; a missing or unreadable file is
// the errno's status naming the path.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// 32 random bytes from the kernel, hex encoded (64 characters).
absl::StatusOr<std::string> GenerateToken();

// Writes `token` to a new file `path` created with mode 0600 (fails if the
// file exists), for launchers that generate a token per run.
absl::Status WriteTokenFile(const std::string& path, absl::string_view token);

// "Bearer <token>", the metadata value clients send.
std::string BearerValue(absl::string_view token);

// The server-side decision for one call. `path` is the ":path" pseudo-header
// ("/package.Service/Method"); `authorization` the metadata value, if any.
// OK for health calls and for a matching token, else Unauthenticated with a
// message that tells the caller what is wrong (missing, malformed, wrong).
absl::Status CheckBearer(absl::string_view expected_token, absl::string_view path,
                         std::optional<absl::string_view> authorization);

}  // namespace rpc
}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_RPC_AUTH_H_
