#include "common/bytes.h"

#include <array>

namespace tokenrail {
namespace {

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr size_t kHeaderSize = 4 + 2 + 2 + 4;

}  // namespace

uint32_t Crc32c(absl::string_view data, uint32_t crc) {
  static const std::array<uint32_t, 256> table = MakeCrcTable();
  crc = ~crc;
  for (unsigned char b : data) crc = table[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::string SealBlob(uint32_t magic, uint16_t version, absl::string_view payload) {
  ByteWriter w;
  w.Put<uint32_t>(magic);
  w.Put<uint16_t>(version);
  w.Put<uint16_t>(0);  // reserved
  w.Put<uint32_t>(static_cast<uint32_t>(payload.size()));
  std::string out = w.Release();
  out.append(payload.data(), payload.size());
  const uint32_t crc = Crc32c(out);
  out.append(reinterpret_cast<const char*>(&crc), sizeof(crc));
  return out;
}

absl::StatusOr<absl::string_view> UnsealBlob(absl::string_view blob, uint32_t magic,
                                             uint16_t version, absl::string_view what) {
  if (blob.size() < kHeaderSize + 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": blob of ", blob.size(), " bytes is too short"));
  }
  ByteReader r(blob, what);
  const uint32_t got_magic = *r.Get<uint32_t>();
  const uint16_t got_version = *r.Get<uint16_t>();
  (void)*r.Get<uint16_t>();
  const uint32_t len = *r.Get<uint32_t>();
  if (got_magic != magic) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": bad magic 0x", absl::Hex(got_magic),
                                                   " (want 0x", absl::Hex(magic), ")"));
  }
  if (got_version != version) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": version ", got_version, " is not supported (want ", version, ")"));
  }
  if (blob.size() != kHeaderSize + len + 4) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": length field says ", len,
                                                   " payload bytes, blob holds ",
                                                   blob.size() - kHeaderSize - 4));
  }
  uint32_t crc;
  std::memcpy(&crc, blob.data() + kHeaderSize + len, 4);
  if (crc != Crc32c(blob.substr(0, kHeaderSize + len))) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": checksum mismatch (corrupt blob)"));
  }
  return blob.substr(kHeaderSize, len);
}

}  // namespace tokenrail
