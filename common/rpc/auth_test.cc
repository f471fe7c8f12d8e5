#include "common/rpc/auth.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace tokenrail {
namespace rpc {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

std::string WriteFile(const std::string& name, const std::string& contents, mode_t mode) {
  const std::string path = TempPath(name);
  ::unlink(path.c_str());
  std::ofstream(path) << contents;
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

TEST(ConstantTimeEqualsTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secre"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secretsecret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", ""));
  // "abab" repeated must not match "ab" (the wrap-around read).
  EXPECT_FALSE(ConstantTimeEquals("abab", "ab"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(ValidateTokenTest, RejectsEmptyLongAndNonPrintable) {
  EXPECT_TRUE(ValidateToken("abc-DEF_123").ok());
  EXPECT_EQ(ValidateToken("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateToken(std::string(kMaxTokenBytes + 1, 'a')).code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status s = ValidateToken("has space");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "offset 3")) << s;
  EXPECT_FALSE(absl::StrContains(s.message(), "has space")) << "message leaks the token";
}

TEST(ReadTokenFileTest, ReadsAndStripsWhitespace) {
  const std::string path = WriteFile("token_ok", "  tok3n-value\n\n", 0600);
  absl::StatusOr<std::string> token = ReadTokenFile(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "tok3n-value");
}

TEST(ReadTokenFileTest, GroupReadableIsAccepted) {
  const std::string path = WriteFile("token_group", "abc\n", 0640);
  EXPECT_TRUE(ReadTokenFile(path).ok());
}

TEST(ReadTokenFileTest, RefusesWorldReadable) {
  const std::string path = WriteFile("token_world", "abc\n", 0644);
  absl::StatusOr<std::string> token = ReadTokenFile(path);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(token.status().message(), "readable by other users"))
      << token.status();
  EXPECT_TRUE(absl::StrContains(token.status().message(), "0644")) << token.status();
  EXPECT_TRUE(absl::StrContains(token.status().message(), "chmod 600")) << token.status();
}

TEST(ReadTokenFileTest, MissingEmptyAndDirectory) {
  absl::StatusOr<std::string> missing = ReadTokenFile(TempPath("no_such_token"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "no_such_token"));

  absl::StatusOr<std::string> empty = ReadTokenFile(WriteFile("token_empty", " \n", 0600));
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(empty.status().message(), "empty")) << empty.status();

  const char* dir = std::getenv("TEST_TMPDIR");
  if (dir != nullptr) {
    EXPECT_EQ(ReadTokenFile(dir).status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(ReadTokenFile("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GenerateTokenTest, WritesPrivateFileThatReadsBack) {
  absl::StatusOr<std::string> a = GenerateToken();
  absl::StatusOr<std::string> b = GenerateToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 64u);
  EXPECT_NE(*a, *b);
  const std::string path = TempPath("generated_token");
  ::unlink(path.c_str());
  ASSERT_TRUE(WriteTokenFile(path, *a).ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<std::string> read = ReadTokenFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, *a);
  // Never overwrites.
  EXPECT_EQ(WriteTokenFile(path, *b).code(), absl::StatusCode::kAlreadyExists);
}

TEST(CheckBearerTest, Decisions) {
  const std::string method = "/tokenrail.v1.JobService/ListJobs";
  EXPECT_TRUE(CheckBearer("tok", method, absl::string_view("Bearer tok")).ok());
  EXPECT_TRUE(CheckBearer("tok", method, absl::string_view("bearer tok")).ok());
  EXPECT_TRUE(CheckBearer("tok", "/grpc.health.v1.Health/Check", std::nullopt).ok());
  EXPECT_TRUE(CheckBearer("tok", "/grpc.health.v1.Health/Watch", std::nullopt).ok());

  absl::Status missing = CheckBearer("tok", method, std::nullopt);
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(missing.message(), "missing")) << missing;
  EXPECT_TRUE(absl::StrContains(missing.message(), method)) << missing;

  absl::Status malformed = CheckBearer("tok", method, absl::string_view("Basic dG9r"));
  EXPECT_EQ(malformed.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(malformed.message(), "malformed")) << malformed;

  absl::Status wrong = CheckBearer("tok", method, absl::string_view("Bearer tok2"));
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(wrong.message(), "invalid bearer token")) << wrong;
  EXPECT_FALSE(absl::StrContains(wrong.message(), "tok2")) << "message echoes the token";

  // A health-looking prefix elsewhere in the path is not an exemption.
  EXPECT_FALSE(CheckBearer("tok", "/evil/grpc.health.v1.Health/Check", std::nullopt).ok());
}

}  // namespace
}  // namespace rpc
}  // namespace tokenrail
