// Output helpers for tokenrailctl: aligned text tables, JSON lines, and the
// small formatting of sizes, ages and times operators read.
#ifndef TOKENRAIL_TOOLS_CTL_FORMAT_H_
#define TOKENRAIL_TOOLS_CTL_FORMAT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace tokenrail {
namespace ctl {

// Columns sized to their widest cell, two spaces apart, left-aligned; rows
// are collected first and rendered at once.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  // Cells beyond the header count are dropped; missing ones print empty.
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  size_t rows() const { return rows_.size(); }
  // Header line, then one line per row, each ending in '\n'.
  std::string Render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// One line of protobuf JSON: field names as in the .proto, defaults included,
// enums by name, 64-bit integers as strings (the standard mapping).
std::string MessageToJsonLine(const google::protobuf::Message& message);

// A JSON string literal for `s`.
std::string JsonQuoted(absl::string_view s);

// "512", "4K", "1.5M", "2.0G" (binary units, one decimal above K).
std::string HumanBytes(uint64_t bytes);
// "45s", "12m", "3h", "2d" since `unix_ms` (now - then); "-" for 0.
std::string Age(int64_t unix_ms, int64_t now_unix_ms);
// "23:40:12.345" in local time; "-" for 0.
std::string ClockTime(int64_t unix_ms);

}  // namespace ctl
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_CTL_FORMAT_H_
