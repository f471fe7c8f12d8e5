// One conformance suite for every transport backend, run between separate
// processes: the test process drives one side, a peer process
// (conformance_peer, spawned per test) the other.
//
// A backend registers the suite once per configuration in its own test file:
//
//   #include "transport/conformance/conformance.h"
//   TR_TRANSPORT_CONFORMANCE(Shm, {.backend = "shm"});
//   TR_TRANSPORT_CONFORMANCE(UcxTcp, {.backend = "ucx", .params = {{"tls", "tcp"}}});
//
// and its cc_test depends on //transport/conformance and the backend, with
// data = ["//transport/conformance:conformance_peer"]. A backend whose probe
// reports Unavailable on this host (no RDMA device) skips every case with
// that reason.
#ifndef TOKENRAIL_TRANSPORT_CONFORMANCE_CONFORMANCE_H_
#define TOKENRAIL_TRANSPORT_CONFORMANCE_CONFORMANCE_H_

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace tokenrail {
namespace transport {

struct ConformanceConfig {
  std::string backend;
  std::map<std::string, std::string> params;
};

class TransportConformanceTest : public ::testing::TestWithParam<ConformanceConfig> {};

}  // namespace transport
}  // namespace tokenrail

#define TR_TRANSPORT_CONFORMANCE(label, ...)                                              \
  INSTANTIATE_TEST_SUITE_P(label, ::tokenrail::transport::TransportConformanceTest,        \
                           ::testing::Values(::tokenrail::transport::ConformanceConfig __VA_ARGS__))

#endif  // TOKENRAIL_TRANSPORT_CONFORMANCE_CONFORMANCE_H_
