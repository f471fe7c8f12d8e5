#include "common/rpc/client_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/auth.h"
#include "common/rpc/server.h"
#include "common/status.h"

ABSL_FLAG(std::string, coordinator, "", "Coordinator address, HOST:PORT.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the bearer token (must not be readable by other users). Empty: send "
          "no token.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA that signed the server certificate; enables TLS. Empty: plaintext.");

namespace tokenrail {
namespace rpc {

absl::StatusOr<ClientOptions> ClientOptionsFromFlags() {
  ClientOptions options;
  const std::string token_file = absl::GetFlag(FLAGS_auth_token_file);
  if (!token_file.empty()) {
    TR_ASSIGN_OR_RETURN(options.auth_token, ReadTokenFile(token_file));
  }
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  return options;
}

absl::StatusOr<std::string> CoordinatorAddressFromFlags() {
  const std::string address = absl::GetFlag(FLAGS_coordinator);
  if (address.empty()) {
    return absl::InvalidArgumentError("--coordinator=HOST:PORT is required");
  }
  int port = 0;
  absl::Status parsed = ParseHostPort(address, nullptr, &port);
  if (!parsed.ok()) return Annotate(parsed, "--coordinator");
  if (port == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--coordinator='", address, "': port 0 is not a server's port"));
  }
  return address;
}

}  // namespace rpc
}  // namespace tokenrail
