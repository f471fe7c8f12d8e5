#include "transport/verbs/options.h"

#include <arpa/inet.h>

#include <functional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

absl::Status Bad(absl::string_view key, absl::string_view value, absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat("verbs option ", key, "='", value, "': ", want));
}

// Parses an integer in [lo, hi].
absl::StatusOr<int> ParseInt(absl::string_view key, absl::string_view value, int lo, int hi) {
  int v = 0;
  if (!absl::SimpleAtoi(value, &v)) return Bad(key, value, "not an integer");
  if (v < lo || v > hi) {
    return Bad(key, value, absl::StrCat("must be in [", lo, ", ", hi, "]"));
  }
  return v;
}

absl::Status ParseListen(absl::string_view value, VerbsOptions* o) {
  const size_t colon = value.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return Bad("listen", value, "want host:port, e.g. 10.0.0.5:0");
  }
  const std::string host(value.substr(0, colon));
  in_addr addr{};
  if (inet_pton(AF_INET, host.c_str(), &addr) != 1) {
    return Bad("listen", value, "host must be an IPv4 address");
  }
  // Peers dial the advertised address; a wildcard cannot be dialed.
  if (addr.s_addr == htonl(INADDR_ANY)) {
    return Bad("listen", value,
               "0.0.0.0 cannot be advertised to peers; give the IP of the interface they reach");
  }
  TR_ASSIGN_OR_RETURN(const int port, ParseInt("listen", value.substr(colon + 1), 0, 65535));
  o->listen_host = host;
  o->listen_port = static_cast<uint16_t>(port);
  return absl::OkStatus();
}

struct Key {
  const char* name;
  const char* help;
  std::function<absl::Status(absl::string_view, VerbsOptions*)> parse;
};

// Binds an int field with a range.
Key IntKey(const char* name, const char* help, int VerbsOptions::*field, int lo, int hi) {
  return {name, help, [name, field, lo, hi](absl::string_view v, VerbsOptions* o) {
            TR_ASSIGN_OR_RETURN(o->*field, ParseInt(name, v, lo, hi));
            return absl::OkStatus();
          }};
}

const std::vector<Key>& Keys() {
  static const auto* keys = new std::vector<Key>{
      {"device", "RDMA device name, e.g. mlx5_0 (default: first device with an active port)",
       [](absl::string_view v, VerbsOptions* o) {
         if (v.empty() || v.size() > 64) return Bad("device", v, "want a device name");
         o->device = std::string(v);
         return absl::OkStatus();
       }},
      IntKey("port", "port number on the device (default 1)", &VerbsOptions::port, 1, 255),
      {"gid_index",
       "GID table index, or 'auto' (default: RoCE v2 IPv4-mapped GID on RoCE, LID on IB)",
       [](absl::string_view v, VerbsOptions* o) {
         if (v == "auto") {
           o->gid_index = -1;
           return absl::OkStatus();
         }
         TR_ASSIGN_OR_RETURN(o->gid_index, ParseInt("gid_index", v, 0, 65535));
         return absl::OkStatus();
       }},
      {"mtu", "path MTU: 256, 512, 1024, 2048, 4096 or 'auto' (default: port active MTU)",
       [](absl::string_view v, VerbsOptions* o) {
         if (v == "auto") {
           o->mtu = 0;
           return absl::OkStatus();
         }
         int m = 0;
         if (!absl::SimpleAtoi(v, &m) ||
             (m != 256 && m != 512 && m != 1024 && m != 2048 && m != 4096)) {
           return Bad("mtu", v, "want 256, 512, 1024, 2048, 4096 or auto");
         }
         o->mtu = m;
         return absl::OkStatus();
       }},
      IntKey("qp_depth", "send work requests per QP (default 512)", &VerbsOptions::qp_depth, 16,
             32768),
      IntKey("recv_depth", "receive work requests per QP = peer credits (default 512)",
             &VerbsOptions::recv_depth, 16, 32768),
      {"cq_depth", "CQ entries per endpoint, or 'auto' = qp_depth + recv_depth + 64 (default)",
       [](absl::string_view v, VerbsOptions* o) {
         if (v == "auto") {
           o->cq_depth = 0;
           return absl::OkStatus();
         }
         TR_ASSIGN_OR_RETURN(o->cq_depth, ParseInt("cq_depth", v, 32, 1 << 22));
         return absl::OkStatus();
       }},
      IntKey("timeout", "RC ACK timeout exponent, 4.096us * 2^N (default 18 = ~1 s)",
             &VerbsOptions::timeout, 1, 31),
      IntKey("retry_cnt", "RC transport retries before failing (default 7)",
             &VerbsOptions::retry_cnt, 0, 7),
      IntKey("rnr_retry", "receiver-not-ready retries, 7 = infinite (default 7)",
             &VerbsOptions::rnr_retry, 0, 7),
      IntKey("inline_threshold", "post puts/messages up to N bytes inline (default 64)",
             &VerbsOptions::inline_threshold, 0, 1024),
      IntKey("traffic_class", "RoCE GRH traffic class (DSCP << 2), default 0",
             &VerbsOptions::traffic_class, 0, 255),
      IntKey("service_level", "InfiniBand service level (default 0)", &VerbsOptions::service_level,
             0, 15),
      {"listen",
       "host:port of the TCP wireup listener peers dial (default 127.0.0.1:0; on clusters the "
       "IP of an interface peers reach)",
       &ParseListen},
  };
  return *keys;
}

}  // namespace

absl::StatusOr<VerbsOptions> ParseVerbsOptions(const std::map<std::string, std::string>& params) {
  VerbsOptions o;
  for (const auto& [key, value] : params) {
    const Key* found = nullptr;
    for (const Key& k : Keys()) {
      if (key == k.name) found = &k;
    }
    if (found == nullptr) {
      std::vector<std::string> names;
      for (const Key& k : Keys()) names.push_back(k.name);
      return absl::InvalidArgumentError(absl::StrCat(
          "verbs: unknown option '", key, "' (known: ", absl::StrJoin(names, ", "), ")"));
    }
    TR_RETURN_IF_ERROR(found->parse(value, &o));
  }
  if (o.cq_depth != 0 && o.cq_depth < o.qp_depth + o.recv_depth) {
    return absl::InvalidArgumentError(absl::StrCat(
        "verbs option cq_depth=", o.cq_depth, " is smaller than qp_depth + recv_depth = ",
        o.qp_depth + o.recv_depth, " (the CQ could overrun)"));
  }
  return o;
}

std::vector<std::pair<std::string, std::string>> VerbsParamsHelp() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Key& k : Keys()) out.emplace_back(k.name, k.help);
  return out;
}

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
