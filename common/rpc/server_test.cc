// Real in-process servers on port 0: the token check, health, reflection,
// TLS (certificates generated at run time with the openssl CLI) and limits.
#include "common/rpc/server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/rpc/auth.h"
#include "common/rpc/client.h"
#include "common/rpc/credentials.h"
#include "gtest/gtest.h"

namespace tokenrail {
namespace rpc {
namespace {

constexpr char kToken[] = "s3cret-token";
constexpr char kEcho[] = "/tokenrail.test.Echo/Echo";

// Echoes one request; remembers the metadata keys its handler saw.
class EchoService : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    {
      absl::MutexLock lock(&mu_);
      seen_keys_.clear();
      for (const auto& [key, value] : ctx->client_metadata()) {
        seen_keys_.emplace_back(key.data(), key.size());
      }
    }
    if (ctx->method() != kEcho) return grpc::CallbackGenericService::CreateReactor(ctx);
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      Reactor() { StartRead(&buf_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
          return;
        }
        StartWrite(&buf_);
      }
      void OnWriteDone(bool ok) override {
        Finish(ok ? grpc::Status::OK : grpc::Status(grpc::StatusCode::UNKNOWN, "write failed"));
      }
      void OnDone() override { delete this; }

     private:
      grpc::ByteBuffer buf_;
    };
    return new Reactor;
  }

  std::vector<std::string> seen_keys() {
    absl::MutexLock lock(&mu_);
    return seen_keys_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> seen_keys_ ABSL_GUARDED_BY(mu_);
};

grpc::Status Call(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                  const std::string& request, std::string* response = nullptr) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1);
  grpc::ByteBuffer resp;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  if (status.ok() && response != nullptr) {
    std::vector<grpc::Slice> slices;
    (void)resp.Dump(&slices);
    response->clear();
    for (const grpc::Slice& s : slices) {
      response->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return status;
}

std::shared_ptr<grpc::Channel> Channel(const Server& server, ClientOptions options) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ch = CreateChannel(server.address(), options);
  EXPECT_TRUE(ch.ok()) << ch.status();
  return ch.ok() ? *ch : nullptr;
}

std::string TmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

class ServerTest : public ::testing::Test {
 protected:
  // Self-signed server certificate for 127.0.0.1/localhost, a second
  // unrelated key, and a self-signed client certificate (its own CA).
  static void SetUpTestSuite() {
    dir_ = new std::string(TmpDir() + "/certs");
    ASSERT_EQ(std::system(("mkdir -p " + *dir_).c_str()), 0);
    const std::string openssl = "/usr/bin/openssl";
    if (::access(openssl.c_str(), X_OK) != 0) return;
    const std::string quiet = " >/dev/null 2>&1";
    ASSERT_EQ(std::system((openssl +
                           " req -x509 -newkey rsa:2048 -nodes -days 2 -subj "
                           "/CN=localhost -addext "
                           "subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
                           *dir_ + "/server.key -out " + *dir_ + "/server.crt" + quiet)
                              .c_str()),
              0);
    ASSERT_EQ(std::system((openssl +
                           " req -x509 -newkey rsa:2048 -nodes -days 2 -subj "
                           "/CN=tokenrail-client -keyout " +
                           *dir_ + "/client.key -out " + *dir_ + "/client.crt" + quiet)
                              .c_str()),
              0);
    ASSERT_EQ(std::system((openssl + " genrsa -out " + *dir_ + "/other.key 2048" + quiet).c_str()),
              0);
    have_certs_ = true;
  }

  static std::string Path(const std::string& name) { return *dir_ + "/" + name; }

  // A generic service binds to one server only: a fresh one per start.
  EchoService* NewEcho() {
    echoes_.push_back(std::make_unique<EchoService>());
    return echoes_.back().get();
  }

  absl::Status TryStart(const ServerOptions& options) {
    return Server::Start(options, {}, NewEcho()).status();
  }

  std::unique_ptr<Server> StartServer(ServerOptions options) {
    echo_ = NewEcho();
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options, {}, echo_);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }

  static ServerOptions TlsOptions() {
    ServerOptions o;
    o.auth_token = kToken;
    o.tls_cert_file = Path("server.crt");
    o.tls_key_file = Path("server.key");
    return o;
  }

  // Declared before any server a test holds, so they outlive it.
  std::vector<std::unique_ptr<EchoService>> echoes_;
  EchoService* echo_ = nullptr;
  static std::string* dir_;
  static bool have_certs_;
};

std::string* ServerTest::dir_ = nullptr;
bool ServerTest::have_certs_ = false;

#define REQUIRE_CERTS() \
  if (!have_certs_) GTEST_SKIP() << "/usr/bin/openssl is not installed: cannot make test certs"

TEST_F(ServerTest, BindsPortZeroAndReportsThePort) {
  ServerOptions o;
  std::unique_ptr<Server> server = StartServer(o);
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  EXPECT_EQ(server->address(), absl::StrCat("127.0.0.1:", server->port()));
  EXPECT_FALSE(server->tls());
  std::string out;
  EXPECT_TRUE(Call(Channel(*server, {}), kEcho, "hello", &out).ok());
  EXPECT_EQ(out, "hello");
}

TEST_F(ServerTest, RefusesBadAddressAndBusyPort) {
  ServerOptions bad;
  bad.listen_address = "127.0.0.1";
  EXPECT_EQ(TryStart(bad).code(), absl::StatusCode::kInvalidArgument);
  bad.listen_address = "127.0.0.1:99999";
  EXPECT_EQ(TryStart(bad).code(), absl::StatusCode::kInvalidArgument);

  std::unique_ptr<Server> first = StartServer(ServerOptions());
  ASSERT_NE(first, nullptr);
  ServerOptions busy;
  busy.listen_address = first->address();
  absl::Status second = TryStart(busy);
  EXPECT_EQ(second.code(), absl::StatusCode::kUnavailable) << second;
  EXPECT_TRUE(absl::StrContains(second.message(), first->address())) << second;
}

TEST_F(ServerTest, MissingTokenIsUnauthenticated) {
  ServerOptions o;
  o.auth_token = kToken;
  std::unique_ptr<Server> server = StartServer(o);
  grpc::Status s = Call(Channel(*server, {}), kEcho, "x");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "missing")) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), kEcho)) << s.error_message();
}

TEST_F(ServerTest, WrongTokenIsUnauthenticated) {
  ServerOptions o;
  o.auth_token = kToken;
  std::unique_ptr<Server> server = StartServer(o);
  ClientOptions c;
  c.auth_token = "s3cret-tokeX";
  grpc::Status s = Call(Channel(*server, c), kEcho, "x");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "invalid bearer token")) << s.error_message();
  absl::Status described = DescribeCallError(s, "coordinator", server->address(), nullptr);
  EXPECT_TRUE(absl::StartsWith(described.message(), "coordinator refused the token: "))
      << described;
}

TEST_F(ServerTest, RightTokenPassesAndIsNotShownToHandlers) {
  ServerOptions o;
  o.auth_token = kToken;
  std::unique_ptr<Server> server = StartServer(o);
  ClientOptions c;
  c.auth_token = kToken;
  std::shared_ptr<grpc::Channel> ch = Channel(*server, c);
  std::string out;
  grpc::Status s = Call(ch, kEcho, "payload", &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out, "payload");
  for (const std::string& key : echo_->seen_keys()) EXPECT_NE(key, kAuthorizationKey);
  // Authenticated, then routed: an unknown method is UNIMPLEMENTED, not refused.
  EXPECT_EQ(Call(ch, "/tokenrail.test.Echo/Nope", "x").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(ServerTest, HealthNeedsNoTokenAndReportsServing) {
  ServerOptions o;
  o.auth_token = kToken;
  std::unique_ptr<Server> server = StartServer(o);
  std::string out;
  grpc::Status s = Call(Channel(*server, {}), "/grpc.health.v1.Health/Check", "", &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out, std::string("\x08\x01", 2));  // HealthCheckResponse{status: SERVING}
}

TEST_F(ServerTest, ReflectionListsServicesWithToken) {
  ServerOptions o;
  o.auth_token = kToken;
  std::unique_ptr<Server> server = StartServer(o);
  ClientOptions c;
  c.auth_token = kToken;
  std::shared_ptr<grpc::Channel> ch = Channel(*server, c);
  // ServerReflectionRequest{list_services: "*"} over the bidi stream.
  class Reflect : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    explicit Reflect(grpc::GenericStub* stub) {
      ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      stub->PrepareBidiStreamingCall(
          &ctx_, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
          grpc::StubOptions(), this);
      grpc::Slice req(std::string("\x3a\x01*", 3));
      request_ = grpc::ByteBuffer(&req, 1);
      StartWrite(&request_);
      StartRead(&response_);
      StartCall();
    }
    void OnWriteDone(bool ok) override {
      if (ok) StartWritesDone();
    }
    void OnReadDone(bool ok) override {
      if (ok) {
        std::vector<grpc::Slice> slices;
        (void)response_.Dump(&slices);
        for (const grpc::Slice& s : slices) {
          text_.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
        StartRead(&response_);
      }
    }
    void OnDone(const grpc::Status& s) override {
      status_ = s;
      done_.Notify();
    }
    std::string Wait(grpc::Status* status) {
      done_.WaitForNotification();
      *status = status_;
      return text_;
    }

   private:
    grpc::ClientContext ctx_;
    grpc::ByteBuffer request_, response_;
    std::string text_;
    grpc::Status status_;
    absl::Notification done_;
  };
  grpc::GenericStub stub(ch);
  Reflect reflect(&stub);
  grpc::Status status;
  const std::string text = reflect.Wait(&status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(absl::StrContains(text, "grpc.health.v1.Health")) << text;
  EXPECT_TRUE(absl::StrContains(text, "grpc.reflection.v1alpha.ServerReflection")) << text;
}

TEST_F(ServerTest, OversizeRequestIsRefused) {
  ServerOptions o;
  std::unique_ptr<Server> server = StartServer(o);
  grpc::Status s = Call(Channel(*server, {}), kEcho, std::string(5 << 20, 'x'));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_TRUE(Call(Channel(*server, {}), kEcho, std::string(3 << 20, 'x')).ok());
}

TEST_F(ServerTest, UnreachableServerIsDescribed) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ch = CreateChannel("127.0.0.1:1", {});
  ASSERT_TRUE(ch.ok());
  grpc::Status s = Call(*ch, kEcho, "x");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  absl::Status d = DescribeCallError(s, "coordinator", "127.0.0.1:1", ch->get());
  EXPECT_TRUE(absl::StartsWith(d.message(), "cannot reach coordinator at 127.0.0.1:1: ")) << d;
  EXPECT_EQ(d.code(), absl::StatusCode::kUnavailable);
}

TEST_F(ServerTest, ShutdownIsIdempotentAndStopsServing) {
  std::unique_ptr<Server> server = StartServer(ServerOptions());
  std::shared_ptr<grpc::Channel> ch = Channel(*server, {});
  ASSERT_TRUE(Call(ch, kEcho, "x").ok());
  server->Shutdown();
  server->Shutdown();
  EXPECT_EQ(Call(ch, kEcho, "x").error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServerTest, TlsWithCaAndToken) {
  REQUIRE_CERTS();
  std::unique_ptr<Server> server = StartServer(TlsOptions());
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->tls());
  ClientOptions c;
  c.auth_token = kToken;
  c.tls_ca_file = Path("server.crt");
  std::string out;
  grpc::Status s = Call(Channel(*server, c), kEcho, "over tls", &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out, "over tls");
  // The token is still required over TLS.
  c.auth_token.clear();
  EXPECT_EQ(Call(Channel(*server, c), kEcho, "x").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServerTest, TlsClientWithoutCaFails) {
  REQUIRE_CERTS();
  std::unique_ptr<Server> server = StartServer(TlsOptions());
  ClientOptions c;
  c.auth_token = kToken;
  c.tls = true;  // system roots do not trust the self-signed certificate
  grpc::Status s = Call(Channel(*server, c), kEcho, "x");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  // Nor does a plaintext client get through.
  c.tls = false;
  EXPECT_EQ(Call(Channel(*server, c), kEcho, "x").error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServerTest, MutualTlsRequiresClientCertificate) {
  REQUIRE_CERTS();
  ServerOptions o = TlsOptions();
  o.tls_client_ca_file = Path("client.crt");
  std::unique_ptr<Server> server = StartServer(o);
  ClientOptions c;
  c.auth_token = kToken;
  c.tls_ca_file = Path("server.crt");
  EXPECT_EQ(Call(Channel(*server, c), kEcho, "x").error_code(), grpc::StatusCode::UNAVAILABLE);
  c.tls_cert_file = Path("client.crt");
  c.tls_key_file = Path("client.key");
  grpc::Status s = Call(Channel(*server, c), kEcho, "x");
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(ServerTest, TlsFileErrorsNameTheFile) {
  REQUIRE_CERTS();
  ServerOptions o = TlsOptions();
  o.tls_cert_file = Path("missing.crt");
  absl::Status s = TryStart(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "missing.crt")) << s;

  const std::string garbage = Path("garbage.crt");
  std::ofstream(garbage) << "not a certificate\n";
  o.tls_cert_file = garbage;
  s = TryStart(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "garbage.crt")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "not a PEM certificate")) << s;

  o = TlsOptions();
  o.tls_key_file = Path("server.crt");  // a certificate where the key belongs
  s = TryStart(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "private key")) << s;

  o = TlsOptions();
  o.tls_key_file = Path("other.key");  // valid PEM, wrong key for the certificate
  s = TryStart(o);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "key does not match")) << s;

  o = TlsOptions();
  o.tls_key_file.clear();
  EXPECT_EQ(TryStart(o).code(), absl::StatusCode::kInvalidArgument);
  ServerOptions ca_only;
  ca_only.tls_client_ca_file = Path("client.crt");
  EXPECT_EQ(TryStart(ca_only).code(), absl::StatusCode::kInvalidArgument);

  ClientOptions c;
  c.tls_ca_file = garbage;
  absl::Status cs = CreateChannel("127.0.0.1:1", c).status();
  EXPECT_EQ(cs.code(), absl::StatusCode::kInvalidArgument) << cs;
  EXPECT_TRUE(absl::StrContains(cs.message(), "garbage.crt")) << cs;
}

}  // namespace
}  // namespace rpc
}  // namespace tokenrail
