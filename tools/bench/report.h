// Benchmark reporting shared by every `tokenrail-bench` subcommand: sample
// statistics (percentiles), result records with ordered typed fields, JSON
// lines (one object per record) and a fixed-width readable table that can be
// printed row by row while a long run progresses.
//
// Units: times in microseconds, bandwidth in GB/s with 1 GB = 1e9 bytes,
// sizes in bytes (the table prints them with binary suffixes: 64K = 65536).
//
// Thread safety: value types; no shared state.
#ifndef TOKENRAIL_TOOLS_BENCH_REPORT_H_
#define TOKENRAIL_TOOLS_BENCH_REPORT_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenrail {
namespace bench {

// Summary of a sample set. All fields are 0 when there are no samples.
struct Summary {
  size_t count = 0;
  double min = 0;
  double max = 0;
  double mean = 0;
  double p50 = 0;
  double p99 = 0;
};

// The q-quantile (0 <= q <= 1) of `sorted` (ascending), interpolating linearly
// between the two closest ranks (numpy's default). 0 for an empty set.
double Percentile(const std::vector<double>& sorted, double q);

// Sorts `samples` in place and summarizes them.
Summary Summarize(std::vector<double>* samples);

// Monotonic clock for intervals, in nanoseconds (CLOCK_MONOTONIC: immune to
// wall-clock steps; vDSO, tens of nanoseconds per call).
int64_t NowNanos();

// GB/s (1 GB = 1e9 B) for `bytes` moved in `seconds`; 0 when seconds <= 0.
double GigabytesPerSecond(double bytes, double seconds);

// A result: named fields in insertion order. Setting a field again replaces
// its value in place.
class Record {
 public:
  using Value = std::variant<std::string, int64_t, double, bool>;

  Record& Set(absl::string_view key, std::string value);
  Record& Set(absl::string_view key, const char* value) { return Set(key, std::string(value)); }
  Record& Set(absl::string_view key, int64_t value);
  Record& Set(absl::string_view key, uint64_t value) {
    return Set(key, static_cast<int64_t>(value));
  }
  Record& Set(absl::string_view key, int value) { return Set(key, static_cast<int64_t>(value)); }
  Record& Set(absl::string_view key, double value);
  Record& Set(absl::string_view key, bool value);

  bool Has(absl::string_view key) const { return Find(key) != nullptr; }
  // Nullptr when absent.
  const Value* Find(absl::string_view key) const;
  // Typed accessors: NotFound when absent, InvalidArgument on a type mismatch
  // (an integer reads as a double).
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  absl::StatusOr<int64_t> GetInt(absl::string_view key) const;
  absl::StatusOr<double> GetDouble(absl::string_view key) const;
  absl::StatusOr<bool> GetBool(absl::string_view key) const;

  const std::vector<std::pair<std::string, Value>>& fields() const { return fields_; }

  // One JSON object on one line, no trailing newline. Non-finite doubles are
  // written as null (JSON has no NaN).
  std::string ToJson() const;

  // Parses a flat JSON object as written by ToJson (strings, numbers, true,
  // false, null -> field omitted). Numbers without '.', 'e' or 'E' become
  // integers. InvalidArgument naming the position of a syntax error; nested
  // objects and arrays are rejected.
  static absl::StatusOr<Record> ParseJson(absl::string_view line);

  // A result line that a rank prints for its orchestrator: `tag` (e.g.
  // "TR_EP_ROW "), then the record as ToJson writes it. nullopt when `line`
  // does not start with `tag` (not a result line); ParseJson's error when
  // what follows the tag does not parse.
  static absl::StatusOr<std::optional<Record>> ParseTagged(absl::string_view tag,
                                                           absl::string_view line);

 private:
  Record& SetValue(absl::string_view key, Value value);
  std::vector<std::pair<std::string, Value>> fields_;
};

// JSON string literal (with quotes) for `s`; control characters escaped.
std::string JsonQuote(absl::string_view s);

// Formats a byte count with the largest binary suffix that divides it
// exactly: 8, 4K, 1M, 1536 (never a rounded "1.5K").
std::string FormatSize(uint64_t bytes);

// Parses "4096", "4K", "4k", "4KiB", "1M", "2G" (binary multiples). Rejects
// empty, negative, overflowing and unknown suffixes with InvalidArgument
// naming the text.
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);

// A fixed-width text table. Columns are chosen up front so rows can be printed
// as soon as they are known; a field missing from a record prints "-".
class Table {
 public:
  enum class Format {
    kString,  // as is
    kInt,     // integer
    kSize,    // FormatSize
    kFixed2,  // double with 2 decimals
    kFixed3,  // double with 3 decimals
    kBool,    // yes / NO
  };
  struct Column {
    std::string key;     // record field
    std::string header;  // column title
    Format format = Format::kString;
    int width = 0;  // minimum width; the header's length if larger
  };

  explicit Table(std::vector<Column> columns);

  // The header line and a rule line, each ending in '\n'.
  std::string Header() const;
  // One row, ending in '\n'. Text columns align left, numbers right.
  std::string Row(const Record& record) const;

 private:
  std::string Cell(const Column& column, const Record& record) const;
  std::vector<Column> columns_;
};

// Writes records as JSON lines or as a table, flushing after every row so a
// long run shows progress. Sections (table mode only) print a comment block
// and the column header.
class Printer {
 public:
  Printer(Table table, bool json, std::FILE* out)
      : table_(std::move(table)), json_(json), out_(out) {}
  // Lines of `comment` are printed prefixed with "# ", then the header.
  void Section(absl::string_view comment);
  void Row(const Record& record);
  bool json() const { return json_; }

 private:
  Table table_;
  bool json_;
  std::FILE* out_;
};

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_REPORT_H_
