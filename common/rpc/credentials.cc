#include "common/rpc/credentials.h"

#include <fcntl.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/errno_status.h"
#include "common/fd.h"
#include "common/logging.h"
#include "common/rpc/auth.h"
#include "common/status.h"

namespace tokenrail {
namespace rpc {
namespace {

constexpr size_t kMaxPemBytes = 1 << 20;

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, absl::string_view what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return StatusFromErrno(errno, absl::StrCat("cannot open ", what, " file '", path, "'"));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return StatusFromErrno(errno, absl::StrCat("cannot stat ", what, " file '", path, "'"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " file '", path, "' is not a regular file"));
  }
  if (static_cast<size_t>(st.st_size) > kMaxPemBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " file '", path, "' is ", st.st_size,
                                                   " bytes; the limit is ", kMaxPemBytes));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = ::read(fd.get(), out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      return StatusFromErrno(errno, absl::StrCat("cannot read ", what, " file '", path, "'"));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

// True when `pem` holds a "-----BEGIN <label>-----" ... "-----END <label>-----"
// block whose label satisfies `want` and whose body is non-empty base64.
// Sets *encrypted when a matching block is an encrypted private key.
bool HasPemBlock(absl::string_view pem, PemKind kind, bool* encrypted) {
  constexpr absl::string_view kBegin = "-----BEGIN ";
  size_t pos = 0;
  while ((pos = pem.find(kBegin, pos)) != absl::string_view::npos) {
    const size_t label_start = pos + kBegin.size();
    const size_t label_end = pem.find("-----", label_start);
    if (label_end == absl::string_view::npos) return false;
    const absl::string_view label = pem.substr(label_start, label_end - label_start);
    const std::string end_marker = absl::StrCat("-----END ", label, "-----");
    const size_t body_start = label_end + 5;
    const size_t body_end = pem.find(end_marker, body_start);
    if (body_end == absl::string_view::npos) return false;
    pos = body_end + end_marker.size();
    const bool is_key = absl::EndsWith(label, "PRIVATE KEY");
    const bool matches = kind == PemKind::kCertificate ? label == "CERTIFICATE" : is_key;
    if (!matches) continue;
    if (absl::StrContains(label, "ENCRYPTED")) {
      *encrypted = true;
      continue;
    }
    std::string body;
    for (absl::string_view line :
         absl::StrSplit(pem.substr(body_start, body_end - body_start), '\n')) {
      line = absl::StripAsciiWhitespace(line);
      // Legacy PEM headers ("Proc-Type: ...") carry a colon; base64 never does.
      if (line.empty() || absl::StrContains(line, ':')) continue;
      absl::StrAppend(&body, line);
    }
    std::string decoded;
    if (!body.empty() && absl::Base64Unescape(body, &decoded) && !decoded.empty()) return true;
  }
  return false;
}

// The token check, run by gRPC core's server auth filter for every call before
// any handler (see the header for why it is not a grpc++ processor).
struct TokenProcessorState {
  std::string token;
};

absl::string_view SliceView(const grpc_slice& slice) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)),
                           GRPC_SLICE_LENGTH(slice));
}

void ProcessTokenMetadata(void* state, grpc_auth_context* /*context*/, const grpc_metadata* md,
                          size_t num_md, grpc_process_auth_metadata_done_cb cb, void* user_data) {
  const auto* s = static_cast<const TokenProcessorState*>(state);
  absl::string_view path;
  std::optional<absl::string_view> authorization;
  const grpc_metadata* auth_md = nullptr;
  for (size_t i = 0; i < num_md; ++i) {
    const absl::string_view key = SliceView(md[i].key);
    if (key == ":path") {
      path = SliceView(md[i].value);
    } else if (key == kAuthorizationKey && !authorization.has_value()) {
      authorization = SliceView(md[i].value);
      auth_md = &md[i];
    }
  }
  const absl::Status status = CheckBearer(s->token, path, authorization);
  if (status.ok()) {
    // Consume the token so handlers (and anything they log) never see it.
    cb(user_data, auth_md, auth_md == nullptr ? 0 : 1, nullptr, 0, GRPC_STATUS_OK, nullptr);
    return;
  }
  TR_VLOG(1, "rpc") << "refused call: " << status.message();
  const std::string message(status.message());
  cb(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_UNAUTHENTICATED, message.c_str());
}

void DestroyTokenState(void* state) { delete static_cast<TokenProcessorState*>(state); }

// grpc++ ServerCredentials over a core credentials object. AddPortToServer is
// the hook grpc::Server calls to bind each listening port.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  // The base class constructor initializes the gRPC library, so core
  // credentials are created after construction and handed over with Reset().
  CoreServerCredentials() = default;
  ~CoreServerCredentials() override {
    if (creds_ != nullptr) grpc_server_credentials_release(creds_);
  }

  // Takes ownership of `creds`.
  void Reset(grpc_server_credentials* creds) { creds_ = creds; }
  grpc_server_credentials* get() const { return creds_; }

  // A second processor would replace the token check; refuse loudly instead.
  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>& /*processor*/) override {
    TR_LOG(ERROR, "rpc") << "SetAuthMetadataProcessor ignored: tokenrail credentials already "
                            "authenticate calls with the bearer token";
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }

  grpc_server_credentials* creds_ = nullptr;
};

}  // namespace

absl::StatusOr<std::string> ReadPemFile(const std::string& path, PemKind kind,
                                        absl::string_view what) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": empty path"));
  TR_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(path, what));
  bool encrypted = false;
  if (HasPemBlock(pem, kind, &encrypted)) return pem;
  if (encrypted) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " file '", path,
                     "' holds an encrypted private key; tokenrail needs it unencrypted "
                     "(protect it with file permissions)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      what, " file '", path, "' is not a PEM ",
      kind == PemKind::kCertificate ? "certificate (no valid '-----BEGIN CERTIFICATE-----' block)"
                                    : "private key (no valid '-----BEGIN ... PRIVATE KEY-----' "
                                      "block)"));
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options) {
  const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (tls && (options.tls_cert_file.empty() || options.tls_key_file.empty())) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate and a key (--tls_cert and --tls_key)");
  }
  if (!tls && !options.tls_client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "a client CA (--tls_ca) on a server needs TLS: give --tls_cert and --tls_key too");
  }
  if (!options.auth_token.empty()) TR_RETURN_IF_ERROR(ValidateToken(options.auth_token));

  std::string cert, key, client_ca;
  if (tls) {
    TR_ASSIGN_OR_RETURN(cert, ReadPemFile(options.tls_cert_file, PemKind::kCertificate,
                                          "TLS certificate (--tls_cert)"));
    TR_ASSIGN_OR_RETURN(
        key, ReadPemFile(options.tls_key_file, PemKind::kPrivateKey, "TLS key (--tls_key)"));
    if (!options.tls_client_ca_file.empty()) {
      TR_ASSIGN_OR_RETURN(client_ca, ReadPemFile(options.tls_client_ca_file, PemKind::kCertificate,
                                                 "TLS CA (--tls_ca)"));
    }
  }

  // Constructed first: the base class initializes the gRPC library, which the
  // core calls below need.
  auto creds = std::make_shared<CoreServerCredentials>();
  if (tls) {
    grpc_ssl_pem_key_cert_pair pair = {key.c_str(), cert.c_str()};
    creds->Reset(grpc_ssl_server_credentials_create_ex(
        client_ca.empty() ? nullptr : client_ca.c_str(), &pair, 1,
        client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
        nullptr));
  } else {
    creds->Reset(grpc_insecure_server_credentials_create());
  }
  if (creds->get() == nullptr) {
    return absl::InternalError(
        absl::StrCat("gRPC could not create ", tls ? "TLS" : "plaintext", " server credentials"));
  }
  if (!options.auth_token.empty()) {
    grpc_auth_metadata_processor processor;
    processor.process = &ProcessTokenMetadata;
    processor.destroy = &DestroyTokenState;
    processor.state = new TokenProcessorState{options.auth_token};
    grpc_server_credentials_set_auth_metadata_processor(creds->get(), processor);
  }
  return std::shared_ptr<grpc::ServerCredentials>(std::move(creds));
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientOptions& options) {
  const bool client_cert = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (!options.UseTls()) {
    if (client_cert || !options.tls_server_name.empty()) {
      return absl::InvalidArgumentError(
          "client certificate or TLS server name given without TLS: pass --tls_ca (or enable "
          "TLS)");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (client_cert && (options.tls_cert_file.empty() || options.tls_key_file.empty())) {
    return absl::InvalidArgumentError(
        "a TLS client certificate needs both --tls_cert and --tls_key");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca_file.empty()) {
    TR_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(options.tls_ca_file, PemKind::kCertificate,
                                                        "TLS CA (--tls_ca)"));
  }
  if (client_cert) {
    TR_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                        ReadPemFile(options.tls_cert_file, PemKind::kCertificate,
                                    "TLS client certificate (--tls_cert)"));
    TR_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(options.tls_key_file, PemKind::kPrivateKey,
                                                         "TLS client key (--tls_key)"));
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::SslCredentials(ssl);
  if (creds == nullptr) return absl::InternalError("gRPC could not create TLS credentials");
  return creds;
}

}  // namespace rpc
}  // namespace tokenrail
