#include "tools/bench/info.h"

#include "gtest/gtest.h"
#include "transport/registry.h"

namespace tokenrail {
namespace bench {
namespace {

using transport::Capabilities;
using transport::TransportOptions;

// Registry entries for this test only: fixed probe answers, nothing created.
absl::StatusOr<std::unique_ptr<transport::Context>> NoCreate(const TransportOptions&) {
  return absl::UnimplementedError("info test entry");
}

TR_REGISTER_TRANSPORT(memlike,
                      {.name = "memlike",
                       .description = "same-host test entry",
                       .params_help = {{"ring_slots", "slots per ring"}, {"poll", "poll mode"}},
                       .probe = [](const TransportOptions&) -> absl::StatusOr<Capabilities> {
                         Capabilities c;
                         c.backend = "memlike";
                         c.intra_node = true;
                         c.native_rma = true;
                         c.bandwidth_gbytes = 20;
                         c.latency_us = 0.5;
                         c.max_put_size = 64 << 20;
                         c.max_message_size = 4096;
                         c.devices = {"memfd", "quote\"d"};
                         return c;
                       },
                       .create = &NoCreate});
TR_REGISTER_TRANSPORT(rdmalike,
                      {.name = "rdmalike",
                       .description = "needs hardware",
                       .probe = [](const TransportOptions&) -> absl::StatusOr<Capabilities> {
                         return absl::UnavailableError("no RDMA device");
                       },
                       .create = &NoCreate});

TEST(InfoTest, CollectsEveryBackendWithProbeResults) {
  absl::StatusOr<std::vector<BackendInfo>> info = CollectBackendInfo("", TransportOptions{});
  ASSERT_TRUE(info.ok());
  ASSERT_EQ(info->size(), 2u);
  EXPECT_EQ((*info)[0].name, "memlike");
  EXPECT_TRUE((*info)[0].probe.ok());
  EXPECT_EQ((*info)[0].caps.devices.size(), 2u);
  EXPECT_EQ((*info)[1].probe.code(), absl::StatusCode::kUnavailable);
}

TEST(InfoTest, FiltersLikeTheRegistry) {
  EXPECT_EQ(CollectBackendInfo("rdmalike", {})->size(), 1u);
  EXPECT_EQ((*CollectBackendInfo("^rdmalike", {}))[0].name, "memlike");
  absl::Status s = CollectBackendInfo("nosuch", {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("nosuch"), absl::string_view::npos);
}

TEST(InfoTest, TextShowsCapabilitiesReasonsAndParams) {
  const std::string text = FormatInfoText(*CollectBackendInfo("", {}));
  for (const char* want :
       {"# Transport: memlike", "status:      OK", "reach:       intra-node", "native RMA:  yes",
        "bandwidth:   20.00 GB/s", "max put:     64M bytes", "devices:     memfd, quote\"d",
        "ring_slots  slots per ring", "poll        poll mode", "# Transport: rdmalike",
        "status:      rdmalike: UNAVAILABLE: no RDMA device", "params:      none"}) {
    EXPECT_NE(text.find(want), std::string::npos) << "missing '" << want << "' in\n" << text;
  }
  EXPECT_EQ(FormatInfoText({}), "no transport backends are linked into this binary\n");
}

TEST(InfoTest, JsonIsOneObjectPerBackend) {
  std::vector<BackendInfo> info = *CollectBackendInfo("", {});
  const std::string a = FormatInfoJson(info[0]);
  EXPECT_EQ(a.find('\n'), std::string::npos);
  EXPECT_EQ(a.rfind("{\"backend\":\"memlike\",\"description\":\"same-host test entry\",", 0), 0u);
  for (const char* want : {"\"available\":true", "\"intra_node\":true", "\"inter_node\":false",
                           "\"bandwidth_gbytes\":20", "\"max_put_size\":67108864",
                           "\"devices\":[\"memfd\",\"quote\\\"d\"]",
                           "{\"key\":\"ring_slots\",\"help\":\"slots per ring\"}"}) {
    EXPECT_NE(a.find(want), std::string::npos) << want << " in " << a;
  }
  const std::string b = FormatInfoJson(info[1]);
  EXPECT_NE(b.find("\"available\":false,\"status\":\"UNAVAILABLE: no RDMA device\""),
            std::string::npos)
      << b;
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail
