#include "common/rpc/auth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/errno_status.h"
#include "common/fd.h"
#include "common/status.h"

namespace tokenrail {
namespace rpc {
namespace {

constexpr absl::string_view kBearerScheme = "Bearer ";

}  // namespace

bool ConstantTimeEquals(absl::string_view expected, absl::string_view given) {
  // Every byte of `expected` is compared against some byte of `given` (wrapped
  // around), so the loop length never depends on the caller's input.
  volatile uint8_t diff = expected.size() != given.size() ? 1 : 0;
  const size_t n = given.size();
  for (size_t i = 0; i < expected.size(); ++i) {
    const uint8_t g = n == 0 ? 0 : static_cast<uint8_t>(given[i % n]);
    diff = diff | (static_cast<uint8_t>(expected[i]) ^ g);
  }
  return diff == 0;
}

absl::Status ValidateToken(absl::string_view token) {
  if (token.empty()) return absl::InvalidArgumentError("auth token is empty");
  if (token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth token is ", token.size(), " bytes; the limit is ", kMaxTokenBytes));
  }
  for (size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c <= 0x20 || c >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "auth token has a non-printable or space character (0x%02x) at offset %d; use "
          "printable ASCII only",
          c, i));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("auth token file path is empty");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    return StatusFromErrno(errno, absl::StrCat("cannot open auth token file '", path, "'"));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return StatusFromErrno(errno, absl::StrCat("cannot stat auth token file '", path, "'"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth token file '", path, "' is not a regular file"));
  }
  if ((st.st_mode & S_IROTH) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "auth token file '%s' is readable by other users (mode %04o); run: chmod 600 '%s'", path,
        st.st_mode & 07777, path));
  }
  if (st.st_size > static_cast<off_t>(kMaxTokenBytes + 64)) {
    return absl::InvalidArgumentError(absl::StrCat("auth token file '", path, "' is ", st.st_size,
                                                   " bytes; a token is at most ", kMaxTokenBytes));
  }
  std::string contents(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < contents.size()) {
    const ssize_t r = ::read(fd.get(), contents.data() + got, contents.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      return StatusFromErrno(errno, absl::StrCat("cannot read auth token file '", path, "'"));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  contents.resize(got);
  const absl::string_view token = absl::StripAsciiWhitespace(contents);
  absl::Status valid = ValidateToken(token);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth token file '", path, "': ", valid.message()));
  }
  return std::string(token);
}

absl::StatusOr<std::string> GenerateToken() {
  UniqueFd fd(::open("/dev/urandom", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return StatusFromErrno(errno, "cannot open /dev/urandom");
  char bytes[32];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t r = ::read(fd.get(), bytes + got, sizeof(bytes) - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return StatusFromErrno(r < 0 ? errno : EIO, "cannot read /dev/urandom");
    got += static_cast<size_t>(r);
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

absl::Status WriteTokenFile(const std::string& path, absl::string_view token) {
  TR_RETURN_IF_ERROR(ValidateToken(token));
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) {
    return StatusFromErrno(errno, absl::StrCat("cannot create auth token file '", path, "'"));
  }
  const std::string line = absl::StrCat(token, "\n");
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t w = ::write(fd.get(), line.data() + done, line.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      return StatusFromErrno(errno, absl::StrCat("cannot write auth token file '", path, "'"));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd.get()) != 0) {
    return StatusFromErrno(errno, absl::StrCat("cannot sync auth token file '", path, "'"));
  }
  return absl::OkStatus();
}

std::string BearerValue(absl::string_view token) { return absl::StrCat(kBearerScheme, token); }

absl::Status CheckBearer(absl::string_view expected_token, absl::string_view path,
                         std::optional<absl::string_view> authorization) {
  if (absl::StartsWith(path, kHealthMethodPrefix)) return absl::OkStatus();
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        absl::StrCat(path,
                     ": missing 'authorization: Bearer <token>' metadata; this server requires the "
                     "auth token (pass --auth_token_file)"));
  }
  // The scheme is case-insensitive (RFC 6750 follows RFC 7235).
  if (authorization->size() < kBearerScheme.size() ||
      !absl::EqualsIgnoreCase(authorization->substr(0, kBearerScheme.size()), kBearerScheme)) {
    return absl::UnauthenticatedError(
        absl::StrCat(path, ": malformed authorization metadata: expected 'Bearer <token>'"));
  }
  if (!ConstantTimeEquals(expected_token, authorization->substr(kBearerScheme.size()))) {
    return absl::UnauthenticatedError(
        absl::StrCat(path, ": invalid bearer token (it does not match this server's token)"));
  }
  return absl::OkStatus();
}

}  // namespace rpc
}  // namespace tokenrail
