#include "transport/ucx/options.h"

#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace transport {
namespace ucx {
namespace {

absl::Status BadValue(absl::string_view key, absl::string_view value, absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat("ucx option ", key, "='", value, "': ", want));
}

// "65536", "64K", "64KiB", "1M", "1MiB", "1G" (binary multiples).
absl::StatusOr<size_t> ParseSize(absl::string_view key, absl::string_view value) {
  absl::string_view digits = value;
  uint64_t multiplier = 1;
  for (const auto& [suffix, mult] :
       std::initializer_list<std::pair<const char*, uint64_t>>{{"KiB", 1ull << 10},
                                                               {"MiB", 1ull << 20},
                                                               {"GiB", 1ull << 30},
                                                               {"K", 1ull << 10},
                                                               {"M", 1ull << 20},
                                                               {"G", 1ull << 30}}) {
    if (absl::EndsWithIgnoreCase(digits, suffix)) {
      digits.remove_suffix(strlen(suffix));
      multiplier = mult;
      break;
    }
  }
  uint64_t n = 0;
  if (digits.empty() || !absl::SimpleAtoi(digits, &n) ||
      n > std::numeric_limits<uint64_t>::max() / multiplier) {
    return BadValue(key, value, "want a size in bytes such as 65536, 64K or 1M");
  }
  return static_cast<size_t>(n * multiplier);
}

// Rejects characters that would let a value smuggle a second UCX setting.
absl::Status CheckUcxList(absl::string_view key, absl::string_view value) {
  for (char c : value) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == ',' || c == '_' || c == ':' ||
          c == '^' || c == '-' || c == '.')) {
      return BadValue(key, value,
                      absl::StrCat("unexpected character '", std::string(1, c), "' in a UCX list"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* PutModeName(PutMode mode) {
  switch (mode) {
    case PutMode::kAuto:
      return "auto";
    case PutMode::kRma:
      return "rma";
    case PutMode::kAm:
      return "am";
  }
  return "?";
}

std::vector<std::pair<std::string, std::string>> UcxOptionsHelp() {
  return {
      {"tls",
       "UCX transport list in UCX_TLS syntax (e.g. tcp, shm, ^tcp, rc,sm). Default: UCX's "
       "(the UCX_TLS environment variable, else all transports)."},
      {"net_devices",
       "UCX network devices in UCX_NET_DEVICES syntax (e.g. eth0, mlx5_0:1). Default: UCX's."},
      {"put_mode",
       "auto|rma|am. auto (default): UCP RMA where both peers share a fabric with native RMA "
       "(shared memory on one host, InfiniBand), active messages with zero-copy rendezvous "
       "elsewhere (TCP). rma / am force one path."},
      {"rndv_thresh",
       "Active-message puts of at least this size use rendezvous straight into the target "
       "region; smaller ones are sent eagerly and copied. Default 64K."},
      {"keepalive_ms",
       "UCX keepalive interval in milliseconds, to detect dead peers on transports without a "
       "connection to break (shared memory). 0 disables. Default 1000."},
      {"rma_notify",
       "flush|fence: how an RMA put's notification is ordered after its data. flush (default) "
       "is correct on every fabric; fence is only correct when UCX uses one lane for both."},
      {"max_message_size", "Largest control message in bytes, 4K..16M. Default 64K."},
  };
}

absl::StatusOr<UcxOptions> ParseUcxOptions(const std::map<std::string, std::string>& params) {
  UcxOptions o;
  for (const auto& [key, value] : params) {
    if (key == "tls") {
      if (absl::Status s = CheckUcxList(key, value); !s.ok()) return s;
      o.tls = value;
    } else if (key == "net_devices") {
      if (absl::Status s = CheckUcxList(key, value); !s.ok()) return s;
      o.net_devices = value;
    } else if (key == "put_mode") {
      if (value == "auto") {
        o.put_mode = PutMode::kAuto;
      } else if (value == "rma") {
        o.put_mode = PutMode::kRma;
      } else if (value == "am") {
        o.put_mode = PutMode::kAm;
      } else {
        return BadValue(key, value, "want auto, rma or am");
      }
    } else if (key == "rndv_thresh") {
      absl::StatusOr<size_t> n = ParseSize(key, value);
      if (!n.ok()) return n.status();
      o.rndv_thresh = *n;
    } else if (key == "keepalive_ms") {
      int64_t ms = 0;
      if (!absl::SimpleAtoi(value, &ms) || ms < 0 || ms > 3600 * 1000) {
        return BadValue(key, value, "want milliseconds in 0..3600000 (0 disables)");
      }
      o.keepalive_ms = ms;
    } else if (key == "rma_notify") {
      if (value == "flush") {
        o.rma_notify = RmaNotify::kFlush;
      } else if (value == "fence") {
        o.rma_notify = RmaNotify::kFence;
      } else {
        return BadValue(key, value, "want flush or fence");
      }
    } else if (key == "max_message_size") {
      absl::StatusOr<size_t> n = ParseSize(key, value);
      if (!n.ok()) return n.status();
      if (*n < kMinMessageSize || *n > kMaxMessageSizeLimit) {
        return BadValue(key, value,
                        absl::StrCat("want ", kMinMessageSize, "..", kMaxMessageSizeLimit));
      }
      o.max_message_size = *n;
    } else {
      std::vector<std::string> known;
      for (const auto& [k, help] : UcxOptionsHelp()) known.push_back(k);
      return absl::InvalidArgumentError(
          absl::StrCat("unknown ucx option '", key, "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return o;
}

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
