// Little-endian serialization for the opaque blobs peers exchange (addresses,
// remote keys, wire headers). Readers never trust their input: every read is
// bounds-checked and a short or malformed blob is an InvalidArgument status.
#ifndef TOKENRAIL_COMMON_BYTES_H_
#define TOKENRAIL_COMMON_BYTES_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tokenrail {

// CRC-32C (Castagnoli) of `data`, used to reject corrupted blobs.
uint32_t Crc32c(absl::string_view data, uint32_t crc = 0);

class ByteWriter {
 public:
  template <typename T>
  void Put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&value), sizeof(value));  // x86-64: LE
  }
  // Length-prefixed (u32) bytes.
  void PutBytes(absl::string_view bytes) {
    Put<uint32_t>(static_cast<uint32_t>(bytes.size()));
    out_.append(bytes.data(), bytes.size());
  }
  const std::string& data() const { return out_; }
  std::string Release() { return std::move(out_); }

 private:
  std::string out_;
};

class ByteReader {
 public:
  // `what` names the blob in error messages ("ucx address").
  ByteReader(absl::string_view data, absl::string_view what) : data_(data), what_(what) {}

  template <typename T>
  absl::StatusOr<T> Get() {
    static_assert(std::is_trivially_copyable_v<T>);
    if (data_.size() < sizeof(T)) return Truncated(sizeof(T));
    T value;
    std::memcpy(&value, data_.data(), sizeof(T));
    data_.remove_prefix(sizeof(T));
    return value;
  }
  absl::StatusOr<absl::string_view> GetBytes(size_t max_len) {
    absl::StatusOr<uint32_t> len = Get<uint32_t>();
    if (!len.ok()) return len.status();
    if (*len > max_len) {
      return absl::InvalidArgumentError(
          absl::StrCat(what_, ": field length ", *len, " exceeds limit ", max_len));
    }
    if (data_.size() < *len) return Truncated(*len);
    absl::string_view out = data_.substr(0, *len);
    data_.remove_prefix(*len);
    return out;
  }
  size_t remaining() const { return data_.size(); }
  absl::Status ExpectEnd() const {
    if (data_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(what_, ": ", data_.size(), " unexpected trailing bytes"));
  }

 private:
  absl::Status Truncated(size_t want) const {
    return absl::InvalidArgumentError(
        absl::StrCat(what_, ": truncated (need ", want, " more bytes, have ", data_.size(), ")"));
  }
  absl::string_view data_;
  std::string what_;
};

// Frames a blob as: magic(u32) version(u16) reserved(u16) length(u32) payload crc32c(u32).
// Unseal checks each field and names the one that is wrong.
std::string SealBlob(uint32_t magic, uint16_t version, absl::string_view payload);
absl::StatusOr<absl::string_view> UnsealBlob(absl::string_view blob, uint32_t magic,
                                             uint16_t version, absl::string_view what);

}  // namespace tokenrail

#endif  // TOKENRAIL_COMMON_BYTES_H_
