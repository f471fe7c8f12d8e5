// gRPC credentials for tokenrail servers and clients, from ServerOptions /
// ClientOptions.
//
// Why the server side wraps gRPC core credentials: grpc++'s
// InsecureServerCredentials() aborts when given an AuthMetadataProcessor, and
// server interceptors cannot reject a call before its handler runs. Core
// credentials (insecure or TLS) accept a metadata processor, which runs in the
// server auth filter before any handler: a call without the token never
// reaches service code, for every service on the server (including ones other
// packages register), in plaintext and TLS alike.
//
// Thread safety: the returned credentials are immutable and shareable.
#ifndef TOKENRAIL_COMMON_RPC_CREDENTIALS_H_
#define TOKENRAIL_COMMON_RPC_CREDENTIALS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/rpc/options.h"

namespace tokenrail {
namespace rpc {

enum class PemKind { kCertificate, kPrivateKey };

// Reads a PEM file and checks that it holds at least one block of `kind`
// with a base64 body. `what` names the option in messages ("--tls_cert").
// NotFound / PermissionDenied naming the path when unreadable,
// InvalidArgument naming the path when it is not such a PEM file.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, PemKind kind,
                                        absl::string_view what);

// Listener credentials: TLS when options.tls_cert_file is set (key required),
// plaintext otherwise; with options.auth_token, the bearer-token check of
// auth.h on every call. InvalidArgument for inconsistent TLS options.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options);

// Channel credentials: TLS (CA from options.tls_ca_file, or the system roots;
// client certificate when given) or plaintext. The token is not part of them:
// CreateChannel (client.h) attaches it with an interceptor, because gRPC never
// sends call credentials over plaintext channels.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientOptions& options);

}  // namespace rpc
}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_RPC_CREDENTIALS_H_
