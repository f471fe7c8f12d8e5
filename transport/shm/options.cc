#include "transport/shm/options.h"

#include "absl/numeric/bits.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

constexpr uint32_t kMaxRingEntries = 1u << 24;
constexpr uint64_t kMinMessageRingBytes = 256 << 10;
constexpr uint64_t kMaxMessageRingBytes = 1ull << 30;
constexpr uint64_t kMaxSpinUs = 1000000;

absl::Status BadValue(const std::string& key, const std::string& value, absl::string_view want) {
  return absl::InvalidArgumentError(
      absl::StrCat("shm option ", key, "='", value, "': expected ", want));
}

absl::StatusOr<uint64_t> ParseUint(const std::string& key, const std::string& value, uint64_t min,
                                   uint64_t max, bool power_of_two) {
  uint64_t v = 0;
  const std::string want =
      absl::StrCat(power_of_two ? "a power of two" : "an integer", " in [", min, ", ", max, "]");
  if (!absl::SimpleAtoi(value, &v) || v < min || v > max) return BadValue(key, value, want);
  if (power_of_two && !absl::has_single_bit(v)) return BadValue(key, value, want);
  return v;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ShmOptionsHelp() {
  const ShmOptions d;
  return {
      {"dir", absl::StrCat("directory of the listening unix socket (default ", d.dir, ")")},
      {"ring_entries", absl::StrCat("notification ring slots per direction, power of two (default ",
                                    d.ring_entries, ")")},
      {"message_ring_bytes",
       absl::StrCat("control-message ring bytes per direction, power of two >= ",
                    kMinMessageRingBytes, " (default ", d.message_ring_bytes, ")")},
      {"spin_us", absl::StrCat("microseconds a wait busy-polls before yielding (default ",
                               absl::ToInt64Microseconds(d.spin), ")")},
  };
}

absl::StatusOr<ShmOptions> ParseShmOptions(const std::map<std::string, std::string>& params) {
  ShmOptions o;
  for (const auto& [key, value] : params) {
    if (key == "dir") {
      if (value.empty() || value[0] != '/') {
        return BadValue(key, value, "an absolute directory path");
      }
      o.dir = value;
    } else if (key == "ring_entries") {
      TR_ASSIGN_OR_RETURN(const uint64_t v, ParseUint(key, value, 2, kMaxRingEntries, true));
      o.ring_entries = static_cast<uint32_t>(v);
    } else if (key == "message_ring_bytes") {
      TR_ASSIGN_OR_RETURN(o.message_ring_bytes,
                          ParseUint(key, value, kMinMessageRingBytes, kMaxMessageRingBytes, true));
    } else if (key == "spin_us") {
      TR_ASSIGN_OR_RETURN(const uint64_t v, ParseUint(key, value, 0, kMaxSpinUs, false));
      o.spin = absl::Microseconds(static_cast<int64_t>(v));
    } else {
      std::vector<std::string> known;
      for (const auto& [k, help] : ShmOptionsHelp()) known.push_back(k);
      return absl::InvalidArgumentError(
          absl::StrCat("unknown shm option '", key, "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return o;
}

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
