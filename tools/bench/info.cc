#include "tools/bench/info.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "tools/bench/report.h"
#include "transport/registry.h"

namespace tokenrail {
namespace bench {
namespace {

std::string StatusText(const absl::Status& s) {
  if (s.ok()) return "OK";
  return absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message());
}

const char* YesNo(bool b) { return b ? "yes" : "no"; }

}  // namespace

absl::StatusOr<std::vector<BackendInfo>> CollectBackendInfo(
    absl::string_view filter, const transport::TransportOptions& options) {
  std::vector<const transport::BackendEntry*> entries = transport::RegisteredBackends();
  // Same filter language as the registry's selection.
  const bool negate = absl::StartsWith(filter, "^");
  if (negate) filter.remove_prefix(1);
  std::vector<std::string> listed = absl::StrSplit(filter, ',', absl::SkipWhitespace());
  for (const std::string& name : listed) {
    TR_RETURN_IF_ERROR(transport::FindBackend(name).status());
  }
  std::vector<BackendInfo> out;
  auto add = [&](const transport::BackendEntry* e) {
    BackendInfo info;
    info.name = e->name;
    info.description = e->description;
    info.params_help = e->params_help;
    absl::StatusOr<transport::Capabilities> caps = e->probe(options);
    info.probe = caps.status();
    if (caps.ok()) info.caps = *std::move(caps);
    out.push_back(std::move(info));
  };
  if (!listed.empty() && !negate) {
    for (const std::string& name : listed) add(*transport::FindBackend(name));
    return out;
  }
  for (const transport::BackendEntry* e : entries) {
    const bool named = std::find(listed.begin(), listed.end(), e->name) != listed.end();
    if (!named) add(e);
  }
  return out;
}

std::string FormatInfoText(const std::vector<BackendInfo>& backends) {
  if (backends.empty()) return "no transport backends are linked into this binary\n";
  std::string out;
  for (const BackendInfo& b : backends) {
    absl::StrAppendFormat(&out, "# Transport: %s\n", b.name);
    absl::StrAppendFormat(&out, "#   description: %s\n", b.description);
    absl::StrAppendFormat(&out, "#   status:      %s\n",
                          b.probe.ok() ? "OK" : absl::StrCat(b.name, ": ", StatusText(b.probe)));
    if (b.probe.ok()) {
      const transport::Capabilities& c = b.caps;
      std::vector<std::string> reach;
      if (c.intra_node) reach.push_back("intra-node");
      if (c.inter_node) reach.push_back("inter-node");
      absl::StrAppendFormat(&out, "#   reach:       %s\n",
                            reach.empty() ? "none" : absl::StrJoin(reach, ", "));
      absl::StrAppendFormat(&out, "#   native RMA:  %s\n", YesNo(c.native_rma));
      absl::StrAppendFormat(&out, "#   GPU memory:  %s\n", YesNo(c.gpu_memory));
      absl::StrAppendFormat(&out, "#   bandwidth:   %.2f GB/s (nominal)\n", c.bandwidth_gbytes);
      absl::StrAppendFormat(&out, "#   latency:     %.2f us (nominal)\n", c.latency_us);
      absl::StrAppendFormat(&out, "#   max put:     %s bytes\n", FormatSize(c.max_put_size));
      absl::StrAppendFormat(&out, "#   max message: %s bytes\n", FormatSize(c.max_message_size));
      absl::StrAppendFormat(&out, "#   devices:     %s\n",
                            c.devices.empty() ? "none" : absl::StrJoin(c.devices, ", "));
    }
    if (b.params_help.empty()) {
      absl::StrAppend(&out, "#   params:      none\n");
    } else {
      absl::StrAppend(&out, "#   params:\n");
      size_t width = 0;
      for (const auto& [key, help] : b.params_help) width = std::max(width, key.size());
      for (const auto& [key, help] : b.params_help) {
        absl::StrAppendFormat(&out, "#     %-*s  %s\n", static_cast<int>(width), key, help);
      }
    }
    absl::StrAppend(&out, "#\n");
  }
  return out;
}

std::string FormatInfoJson(const BackendInfo& b) {
  const transport::Capabilities& c = b.caps;
  std::vector<std::string> devices, params;
  for (const std::string& d : c.devices) devices.push_back(JsonQuote(d));
  for (const auto& [key, help] : b.params_help) {
    params.push_back(absl::StrCat("{\"key\":", JsonQuote(key), ",\"help\":", JsonQuote(help), "}"));
  }
  return absl::StrCat(
      "{\"backend\":", JsonQuote(b.name), ",\"description\":", JsonQuote(b.description),
      ",\"available\":", b.probe.ok() ? "true" : "false",
      ",\"status\":", JsonQuote(StatusText(b.probe)),
      ",\"intra_node\":", c.intra_node ? "true" : "false",
      ",\"inter_node\":", c.inter_node ? "true" : "false",
      ",\"gpu_memory\":", c.gpu_memory ? "true" : "false",
      ",\"native_rma\":", c.native_rma ? "true" : "false",
      ",\"bandwidth_gbytes\":", absl::StrFormat("%.9g", c.bandwidth_gbytes),
      ",\"latency_us\":", absl::StrFormat("%.9g", c.latency_us),
      ",\"max_put_size\":", c.max_put_size, ",\"max_message_size\":", c.max_message_size,
      ",\"devices\":[", absl::StrJoin(devices, ","), "],\"params\":[", absl::StrJoin(params, ","),
      "]}");
}

}  // namespace bench
}  // namespace tokenrail
