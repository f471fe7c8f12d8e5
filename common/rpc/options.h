// Options of tokenrail's gRPC servers and clients: one struct each, filled
// once in main() (from flags, see client_flags.h) and passed down.
//
// Security model (issue 3, "Security"):
//   - With a token, every RPC except grpc.health.v1.Health must carry the
//     metadata "authorization: Bearer <token>"; the server compares it in
//     constant time and answers UNAUTHENTICATED otherwise.
//   - With TLS files, the listener speaks TLS (server certificate and key);
//     with a client CA as well, clients must present a certificate it signed.
//   - Without a token the server accepts every call: only for loopback
//     development and tests.
#ifndef TOKENRAIL_COMMON_RPC_OPTIONS_H_
#define TOKENRAIL_COMMON_RPC_OPTIONS_H_

#include <cstdint>
#include <string>

namespace tokenrail {
namespace rpc {

// Request messages above this are refused by the server (RESOURCE_EXHAUSTED).
inline constexpr int kDefaultMaxReceiveMessageBytes = 4 << 20;
// Clients accept large responses (a topology of many nodes with 64 KiB
// addresses each exceeds gRPC's 4 MiB client default).
inline constexpr int kDefaultClientMaxReceiveMessageBytes = 256 << 20;

struct ServerOptions {
  // HOST:PORT to bind; port 0 picks a free port (Server::port() reports it).
  std::string listen_address = "127.0.0.1:0";
  // Bearer token every non-health RPC must present; empty disables auth.
  // Read it with ReadTokenFile() (auth.h), which refuses world-readable files.
  std::string auth_token;
  // PEM files. cert and key together enable TLS; client_ca additionally
  // requires and verifies client certificates (mutual TLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  int max_receive_message_bytes = kDefaultMaxReceiveMessageBytes;
  // Names the server in logs ("coordinator", "node").
  std::string name = "rpc";
};

struct ClientOptions {
  // Attached to every call as "authorization: Bearer <token>"; empty = none.
  std::string auth_token;
  // Speak TLS. Implied by tls_ca_file. Without a CA file the system roots
  // verify the server (a self-signed coordinator then fails the handshake).
  bool tls = false;
  // PEM CA bundle that signed the server certificate.
  std::string tls_ca_file;
  // Client certificate and key, for servers that require mutual TLS.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Overrides the host name checked against the server certificate (the
  // target's host by default).
  std::string tls_server_name;
  int max_receive_message_bytes = kDefaultClientMaxReceiveMessageBytes;
  // gRPC shares one connection among channels to the same target with the
  // same arguments; true gives this channel its own (to simulate many
  // daemons from one process).
  bool dedicated_connection = false;

  bool UseTls() const { return tls || !tls_ca_file.empty(); }
};

}  // namespace rpc
}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_RPC_OPTIONS_H_
