// The client flags every tokenrail binary that talks to a coordinator shares
// (tokenraild, tokenrailctl, tokenrail-launch), so they are spelled the same
// everywhere:
//   --coordinator=HOST:PORT   --auth_token_file=FILE   --tls_ca=FILE
// Link //common/rpc:client_flags into a binary to get them; such a binary
// must not define flags of these names itself.
#ifndef TOKENRAIL_COMMON_RPC_CLIENT_FLAGS_H_
#define TOKENRAIL_COMMON_RPC_CLIENT_FLAGS_H_

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "common/rpc/options.h"

ABSL_DECLARE_FLAG(std::string, coordinator);
ABSL_DECLARE_FLAG(std::string, auth_token_file);
ABSL_DECLARE_FLAG(std::string, tls_ca);

namespace tokenrail {
namespace rpc {

// ClientOptions from --auth_token_file (read with ReadTokenFile) and --tls_ca.
// Call after flag parsing. The token file's error when it is unreadable or
// world-readable.
absl::StatusOr<ClientOptions> ClientOptionsFromFlags();

// --coordinator, checked to be HOST:PORT with a non-zero port.
// InvalidArgument when empty or malformed.
absl::StatusOr<std::string> CoordinatorAddressFromFlags();

}  // namespace rpc
}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_RPC_CLIENT_FLAGS_H_
