#include "transport/registry.h"

#include "gtest/gtest.h"

namespace tokenrail {
namespace transport {
namespace {

// Registry-only entries: their probes report fixed capabilities and they
// create nothing. They exercise selection, not data movement.
Capabilities Caps(const std::string& name, bool inter, double bw) {
  Capabilities c;
  c.backend = name;
  c.intra_node = true;
  c.inter_node = inter;
  c.bandwidth_gbytes = bw;
  return c;
}

absl::StatusOr<std::unique_ptr<Context>> NoCreate(const TransportOptions&) {
  return absl::UnimplementedError("registry test entry");
}

TR_REGISTER_TRANSPORT(alpha, {.name = "alpha",
                              .probe = [](const TransportOptions&) -> absl::StatusOr<Capabilities> {
                                return Caps("alpha", false, 40);
                              },
                              .create = &NoCreate});
TR_REGISTER_TRANSPORT(beta, {.name = "beta",
                             .probe = [](const TransportOptions&) -> absl::StatusOr<Capabilities> {
                               return Caps("beta", true, 10);
                             },
                             .create = &NoCreate});
TR_REGISTER_TRANSPORT(gamma, {.name = "gamma",
                              .probe = [](const TransportOptions&) -> absl::StatusOr<Capabilities> {
                                return absl::UnavailableError("no RDMA device");
                              },
                              .create = &NoCreate});

std::vector<std::string> Names(const absl::StatusOr<std::vector<Capabilities>>& caps) {
  std::vector<std::string> out;
  for (const Capabilities& c : *caps) out.push_back(c.backend);
  return out;
}

TEST(RegistryTest, ListsAndFindsByName) {
  ASSERT_EQ(RegisteredBackends().size(), 3u);
  EXPECT_TRUE(FindBackend("beta").ok());
  absl::Status missing = FindBackend("delta").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("alpha, beta, gamma"), absl::string_view::npos);
}

TEST(RegistryTest, SelectsByCapabilityThenBandwidth) {
  TransportOptions opts;
  EXPECT_EQ(Names(SelectBackends({}, "", opts)), (std::vector<std::string>{"alpha", "beta"}));
  EXPECT_EQ(Names(SelectBackends({.inter_node = true}, "", opts)),
            (std::vector<std::string>{"beta"}));
}

TEST(RegistryTest, FilterOrderAndNegation) {
  TransportOptions opts;
  EXPECT_EQ(Names(SelectBackends({}, "beta,alpha", opts)),
            (std::vector<std::string>{"beta", "alpha"}));
  EXPECT_EQ(Names(SelectBackends({}, "^alpha", opts)), (std::vector<std::string>{"beta"}));
  absl::Status bad = SelectBackends({}, "alpha,nope", opts).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("'nope'"), absl::string_view::npos);
}

TEST(RegistryTest, NothingQualifiesSaysWhy) {
  TransportOptions opts;
  absl::Status s = SelectBackends({.gpu_memory = true}, "gamma,alpha", opts).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("gamma: no RDMA device"), absl::string_view::npos);
  EXPECT_NE(s.message().find("alpha: lacks GPU memory"), absl::string_view::npos);
  EXPECT_EQ(CreateContext("gamma", opts).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace transport
}  // namespace tokenrail
