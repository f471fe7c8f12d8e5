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
// and its BUILD uses the macro, which also builds the peer with that backend:
//
//   load("//transport/conformance:defs.bzl", "transport_conformance_test")
//   transport_conformance_test(name = "shm_conformance_test",
//                              srcs = ["shm_conformance_test.cc"], backend = ":shm")
//
// A backend whose probe
// reports Unavailable on this host (no RDMA device) skips every case with
// that reason.
#ifndef TOKENRAIL_TRANSPORT_CONFORMANCE_CONFORMANCE_H_
#define TOKENRAIL_TRANSPORT_CONFORMANCE_CONFORMANCE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {

struct ConformanceConfig {
  std::string backend;
  std::map<std::string, std::string> params;
};

class PeerProcess;

// A region allocated in the peer process, addressed by index in commands.
struct PeerRegion {
  uint32_t index = 0;
  std::string key;
  std::unique_ptr<RemoteRegion> remote;  // set when unpacked
};

class TransportConformanceTest : public ::testing::TestWithParam<ConformanceConfig> {
 protected:
  TransportConformanceTest();
  ~TransportConformanceTest() override;
  void SetUp() override;

  // Spawns the peer process and connects ep_ to it (both sides call Connect).
  void ConnectPeer();
  absl::StatusOr<PeerRegion> AllocOnPeer(size_t size, uint8_t fill, bool unpack = true);
  // Registers caller-owned host memory as a put source.
  std::unique_ptr<MemoryRegion> RegisterSource(std::vector<uint8_t>& buf);

  TransportOptions options_;
  Capabilities caps_;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<PeerProcess> peer_;
  std::unique_ptr<Endpoint> ep_;
};

}  // namespace transport
}  // namespace tokenrail

// Use at global scope. INSTANTIATE_TEST_SUITE_P pastes the suite name into
// identifiers, so the instantiation is placed inside the suite's namespace.
#define TR_TRANSPORT_CONFORMANCE(label, ...)                                  \
  namespace tokenrail {                                                       \
  namespace transport {                                                       \
  INSTANTIATE_TEST_SUITE_P(label, TransportConformanceTest,                   \
                           ::testing::Values(ConformanceConfig __VA_ARGS__)); \
  }                                                                           \
  }

#endif  // TOKENRAIL_TRANSPORT_CONFORMANCE_CONFORMANCE_H_
