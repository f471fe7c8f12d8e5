#include "common/status.h"

#include <cerrno>

#include "common/errno_status.h"
#include "common/grpc_status.h"
#include "common/ibverbs_status.h"
#include "common/ucs_status.h"
#include "gtest/gtest.h"

namespace tokenrail {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2) return absl::InvalidArgumentError(absl::StrCat("odd: ", x));
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  TR_ASSIGN_OR_RETURN(int h, Half(x));
  TR_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckQuarter(int x) {
  TR_RETURN_IF_ERROR(Quarter(x).status());
  return absl::OkStatus();
}

TEST(StatusTest, MacrosPropagateFirstError) {
  EXPECT_EQ(*Quarter(12), 3);
  EXPECT_EQ(Quarter(6).status().message(), "odd: 3");
  EXPECT_EQ(CheckQuarter(7).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckQuarter(8).ok());
}

TEST(StatusTest, AnnotateKeepsCode) {
  absl::Status s = Annotate(absl::NotFoundError("gone"), "peer 3");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "peer 3: gone");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

TEST(StatusTest, ErrnoAdapter) {
  EXPECT_TRUE(StatusFromErrno(0, "x").ok());
  absl::Status s = StatusFromErrno(ECONNRESET, "recv from peer");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("recv from peer: "), absl::string_view::npos);
  EXPECT_NE(s.message().find("errno 104"), absl::string_view::npos);
  EXPECT_EQ(StatusFromErrno(ETIMEDOUT, "x").code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(StatusFromErrno(EINVAL, "x").code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusTest, UcsAdapter) {
  EXPECT_TRUE(StatusFromUcs(UCS_OK, "x").ok());
  absl::Status s = StatusFromUcs(UCS_ERR_CONNECTION_RESET, "put");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("put: "), absl::string_view::npos);
  EXPECT_EQ(StatusFromUcs(UCS_ERR_UNSUPPORTED, "x").code(), absl::StatusCode::kUnimplemented);
}

TEST(StatusTest, IbverbsAdapter) {
  EXPECT_TRUE(StatusFromIbv(0, "x").ok());
  EXPECT_EQ(StatusFromIbv(ENOMEM, "reg_mr").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(StatusFromWc(IBV_WC_RETRY_EXC_ERR, "wc").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromWc(IBV_WC_REM_ACCESS_ERR, "wc").code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusTest, GrpcAdapterRoundTrips) {
  grpc::Status g(grpc::StatusCode::UNAUTHENTICATED, "no token");
  absl::Status a = StatusFromGrpc(g, "coordinator");
  EXPECT_EQ(a.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(a.message(), "coordinator: no token");
  grpc::Status back = GrpcFromStatus(absl::InvalidArgumentError("bad"));
  EXPECT_EQ(back.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(back.error_message(), "bad");
  EXPECT_TRUE(GrpcFromStatus(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace tokenrail
