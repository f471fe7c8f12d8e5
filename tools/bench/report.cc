#include "tools/bench/report.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tokenrail {
namespace bench {

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  q = std::min(1.0, std::max(0.0, q));
  const double rank = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Summary Summarize(std::vector<double>* samples) {
  Summary s;
  if (samples->empty()) return s;
  std::sort(samples->begin(), samples->end());
  s.count = samples->size();
  s.min = samples->front();
  s.max = samples->back();
  double sum = 0;
  for (double v : *samples) sum += v;
  s.mean = sum / static_cast<double>(s.count);
  s.p50 = Percentile(*samples, 0.50);
  s.p99 = Percentile(*samples, 0.99);
  return s;
}

int64_t NowNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

double GigabytesPerSecond(double bytes, double seconds) {
  if (seconds <= 0) return 0;
  return bytes / seconds / 1e9;
}

// ---------------------------------------------------------------- Record

Record& Record::SetValue(absl::string_view key, Value value) {
  for (auto& [k, v] : fields_) {
    if (k == key) {
      v = std::move(value);
      return *this;
    }
  }
  fields_.emplace_back(std::string(key), std::move(value));
  return *this;
}

Record& Record::Set(absl::string_view key, std::string value) {
  return SetValue(key, Value(std::move(value)));
}
Record& Record::Set(absl::string_view key, int64_t value) { return SetValue(key, Value(value)); }
Record& Record::Set(absl::string_view key, double value) { return SetValue(key, Value(value)); }
Record& Record::Set(absl::string_view key, bool value) { return SetValue(key, Value(value)); }

const Record::Value* Record::Find(absl::string_view key) const {
  for (const auto& [k, v] : fields_) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace {

absl::Status Missing(absl::string_view key) {
  return absl::NotFoundError(absl::StrCat("record has no field '", key, "'"));
}
absl::Status WrongType(absl::string_view key, absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat("record field '", key, "' is not ", want));
}

}  // namespace

absl::StatusOr<std::string> Record::GetString(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (const auto* s = std::get_if<std::string>(v)) return *s;
  return WrongType(key, "a string");
}

absl::StatusOr<int64_t> Record::GetInt(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (const auto* i = std::get_if<int64_t>(v)) return *i;
  return WrongType(key, "an integer");
}

absl::StatusOr<double> Record::GetDouble(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (const auto* d = std::get_if<double>(v)) return *d;
  if (const auto* i = std::get_if<int64_t>(v)) return static_cast<double>(*i);
  return WrongType(key, "a number");
}

absl::StatusOr<bool> Record::GetBool(absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (const auto* b = std::get_if<bool>(v)) return *b;
  return WrongType(key, "a boolean");
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

namespace {

std::string JsonNumber(double d) {
  if (!std::isfinite(d)) return "null";
  // 9 significant digits: exact enough for microseconds and GB/s, short lines.
  return absl::StrFormat("%.9g", d);
}

}  // namespace

std::string Record::ToJson() const {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, value] : fields_) {
    if (!first) out += ",";
    first = false;
    out += JsonQuote(key);
    out += ":";
    if (const auto* s = std::get_if<std::string>(&value)) {
      out += JsonQuote(*s);
    } else if (const auto* i = std::get_if<int64_t>(&value)) {
      out += absl::StrCat(*i);
    } else if (const auto* d = std::get_if<double>(&value)) {
      out += JsonNumber(*d);
    } else {
      out += std::get<bool>(value) ? "true" : "false";
    }
  }
  out += "}";
  return out;
}

namespace {

// Recursive-descent reader for the flat objects ToJson writes.
class FlatJsonParser {
 public:
  explicit FlatJsonParser(absl::string_view text) : text_(text) {}

  absl::StatusOr<Record> Parse() {
    Record record;
    SkipSpace();
    if (!Consume('{')) return Error("expected '{'");
    SkipSpace();
    if (Consume('}')) return Finish(std::move(record));
    while (true) {
      SkipSpace();
      absl::StatusOr<std::string> key = ParseString();
      if (!key.ok()) return key.status();
      SkipSpace();
      if (!Consume(':')) return Error("expected ':'");
      SkipSpace();
      absl::Status s = ParseValue(*key, &record);
      if (!s.ok()) return s;
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume('}')) return Finish(std::move(record));
      return Error("expected ',' or '}'");
    }
  }

 private:
  absl::StatusOr<Record> Finish(Record record) {
    SkipSpace();
    if (pos_ != text_.size()) return Error("trailing characters after the object");
    return record;
  }

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("JSON at offset ", pos_, ": ", what));
  }

  void SkipSpace() {
    while (pos_ < text_.size() && absl::ascii_isspace(static_cast<unsigned char>(text_[pos_]))) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool ConsumeWord(absl::string_view word) {
    if (text_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }

  absl::StatusOr<std::string> ParseString() {
    if (!Consume('"')) return Error("expected a string");
    std::string out;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) break;
      const char e = text_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'u': {
          uint32_t code = 0;
          if (pos_ + 4 > text_.size() || !absl::SimpleHexAtoi(text_.substr(pos_, 4), &code)) {
            return Error("bad \\u escape");
          }
          pos_ += 4;
          if (code >= 0x80) return Error("non-ASCII \\u escape is not supported");
          out += static_cast<char>(code);
          break;
        }
        default:
          return Error(absl::StrCat("bad escape '\\", std::string(1, e), "'"));
      }
    }
    return Error("unterminated string");
  }

  absl::Status ParseValue(const std::string& key, Record* record) {
    if (pos_ >= text_.size()) return Error("expected a value");
    const char c = text_[pos_];
    if (c == '"') {
      absl::StatusOr<std::string> s = ParseString();
      if (!s.ok()) return s.status();
      record->Set(key, *std::move(s));
      return absl::OkStatus();
    }
    if (ConsumeWord("true")) {
      record->Set(key, true);
      return absl::OkStatus();
    }
    if (ConsumeWord("false")) {
      record->Set(key, false);
      return absl::OkStatus();
    }
    if (ConsumeWord("null")) return absl::OkStatus();
    if (c == '{' || c == '[') return Error("nested values are not supported");
    const size_t start = pos_;
    while (pos_ < text_.size() &&
           (absl::ascii_isdigit(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '-' ||
            text_[pos_] == '+' || text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
    }
    const absl::string_view num = text_.substr(start, pos_ - start);
    if (num.empty()) return Error("expected a value");
    if (num.find_first_of(".eE") == absl::string_view::npos) {
      int64_t i = 0;
      if (!absl::SimpleAtoi(num, &i)) return Error(absl::StrCat("bad integer '", num, "'"));
      record->Set(key, i);
    } else {
      double d = 0;
      if (!absl::SimpleAtod(num, &d)) return Error(absl::StrCat("bad number '", num, "'"));
      record->Set(key, d);
    }
    return absl::OkStatus();
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<Record> Record::ParseJson(absl::string_view line) {
  return FlatJsonParser(line).Parse();
}

absl::StatusOr<std::optional<Record>> Record::ParseTagged(absl::string_view tag,
                                                          absl::string_view line) {
  if (!absl::ConsumePrefix(&line, tag)) return std::nullopt;
  absl::StatusOr<Record> r = ParseJson(line);
  if (!r.ok()) return r.status();
  return std::optional<Record>(std::move(*r));
}

// ---------------------------------------------------------------- sizes

std::string FormatSize(uint64_t bytes) {
  static constexpr struct {
    uint64_t unit;
    const char* suffix;
  } kUnits[] = {{1ull << 40, "T"}, {1ull << 30, "G"}, {1ull << 20, "M"}, {1ull << 10, "K"}};
  for (const auto& u : kUnits) {
    if (bytes >= u.unit && bytes % u.unit == 0) return absl::StrCat(bytes / u.unit, u.suffix);
  }
  return absl::StrCat(bytes);
}

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  size_t digits = 0;
  while (digits < t.size() && absl::ascii_isdigit(static_cast<unsigned char>(t[digits]))) {
    ++digits;
  }
  uint64_t value = 0;
  if (digits == 0 || !absl::SimpleAtoi(t.substr(0, digits), &value)) {
    return absl::InvalidArgumentError(absl::StrCat("bad size '", text, "'"));
  }
  std::string suffix = absl::AsciiStrToUpper(t.substr(digits));
  if (!suffix.empty() && suffix.back() == 'B') suffix.pop_back();     // "KB", "B"
  if (suffix.size() == 2 && suffix.back() == 'I') suffix.pop_back();  // "KiB"
  int shift = 0;
  if (suffix.empty()) {
    shift = 0;
  } else if (suffix == "K") {
    shift = 10;
  } else if (suffix == "M") {
    shift = 20;
  } else if (suffix == "G") {
    shift = 30;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("bad size '", text, "': unknown suffix (use K, M or G)"));
  }
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat("size '", text, "' overflows"));
  }
  return value << shift;
}

// ---------------------------------------------------------------- Table

Table::Table(std::vector<Column> columns) : columns_(std::move(columns)) {
  for (Column& c : columns_) c.width = std::max<int>(c.width, c.header.size());
}

std::string Table::Header() const {
  std::string header, rule;
  for (size_t i = 0; i < columns_.size(); ++i) {
    const Column& c = columns_[i];
    const bool left = c.format == Format::kString;
    if (i > 0) {
      header += "  ";
      rule += "  ";
    }
    header += left ? absl::StrFormat("%-*s", c.width, c.header)
                   : absl::StrFormat("%*s", c.width, c.header);
    rule += std::string(c.width, '-');
  }
  return absl::StrCat(header, "\n", rule, "\n");
}

std::string Table::Cell(const Column& column, const Record& record) const {
  const Record::Value* v = record.Find(column.key);
  if (v == nullptr) return "-";
  if (const auto* s = std::get_if<std::string>(v)) return *s;
  if (const auto* b = std::get_if<bool>(v)) return *b ? "yes" : "NO";
  double d = 0;
  if (const auto* i = std::get_if<int64_t>(v)) {
    switch (column.format) {
      case Format::kSize:
        return FormatSize(static_cast<uint64_t>(*i));
      case Format::kFixed2:
      case Format::kFixed3:
        d = static_cast<double>(*i);
        break;
      default:
        return absl::StrCat(*i);
    }
  } else {
    d = std::get<double>(*v);
  }
  if (!std::isfinite(d)) return "-";
  switch (column.format) {
    case Format::kFixed3:
      return absl::StrFormat("%.3f", d);
    case Format::kInt:
    case Format::kSize:
      return absl::StrFormat("%.0f", d);
    default:
      return absl::StrFormat("%.2f", d);
  }
}

std::string Table::Row(const Record& record) const {
  std::string out;
  for (size_t i = 0; i < columns_.size(); ++i) {
    const Column& c = columns_[i];
    if (i > 0) out += "  ";
    const std::string cell = Cell(c, record);
    out += c.format == Format::kString ? absl::StrFormat("%-*s", c.width, cell)
                                       : absl::StrFormat("%*s", c.width, cell);
  }
  // Trailing spaces from a left-aligned last column are noise.
  while (!out.empty() && out.back() == ' ') out.pop_back();
  out += "\n";
  return out;
}

void Printer::Section(absl::string_view comment) {
  if (json_) return;
  std::string text;
  for (absl::string_view line : absl::StrSplit(comment, '\n')) {
    absl::StrAppend(&text, "# ", line, "\n");
  }
  absl::StrAppend(&text, table_.Header());
  std::fputs(text.c_str(), out_);
  std::fflush(out_);
}

void Printer::Row(const Record& record) {
  const std::string line = json_ ? record.ToJson() + "\n" : table_.Row(record);
  std::fputs(line.c_str(), out_);
  std::fflush(out_);
}

}  // namespace bench
}  // namespace tokenrail
