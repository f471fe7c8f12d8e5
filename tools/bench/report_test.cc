#include "tools/bench/report.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace tokenrail {
namespace bench {
namespace {

TEST(PercentileTest, InterpolatesBetweenRanks) {
  std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0.0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 1.0), 4);
  EXPECT_DOUBLE_EQ(Percentile(v, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(v, 1.0 / 3), 2);
  EXPECT_DOUBLE_EQ(Percentile({7}, 0.99), 7);
  EXPECT_DOUBLE_EQ(Percentile({}, 0.5), 0);
}

TEST(PercentileTest, P99OfHundredSamples) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  // rank 0.99 * 99 = 98.01 -> between 99 and 100.
  EXPECT_NEAR(Percentile(v, 0.99), 99.01, 1e-9);
  EXPECT_DOUBLE_EQ(Percentile(v, 0.5), 50.5);
}

TEST(SummarizeTest, SortsAndSummarizes) {
  std::vector<double> v = {5, 1, 4, 2, 3};
  const Summary s = Summarize(&v);
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 5);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  EXPECT_DOUBLE_EQ(s.p50, 3);
  EXPECT_NEAR(s.p99, 4.96, 1e-9);
  EXPECT_EQ(v, (std::vector<double>{1, 2, 3, 4, 5}));
  std::vector<double> empty;
  EXPECT_EQ(Summarize(&empty).count, 0u);
}

TEST(BandwidthTest, UsesDecimalGigabytes) {
  EXPECT_DOUBLE_EQ(GigabytesPerSecond(2e9, 1.0), 2.0);
  EXPECT_DOUBLE_EQ(GigabytesPerSecond(1 << 20, 1e-3), 1.048576);
  EXPECT_DOUBLE_EQ(GigabytesPerSecond(100, 0), 0);
}

TEST(RecordTest, KeepsOrderAndReplacesInPlace) {
  Record r;
  r.Set("b", 1).Set("a", "x").Set("b", 2.5);
  ASSERT_EQ(r.fields().size(), 2u);
  EXPECT_EQ(r.fields()[0].first, "b");
  EXPECT_DOUBLE_EQ(*r.GetDouble("b"), 2.5);
  EXPECT_EQ(*r.GetString("a"), "x");
  EXPECT_EQ(r.GetInt("a").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.GetInt("zz").status().code(), absl::StatusCode::kNotFound);
}

TEST(RecordTest, JsonRoundTrip) {
  Record r;
  r.Set("bench", "transport").Set("size", uint64_t{1} << 20).Set("neg", int64_t{-3});
  r.Set("p50_us", 1.25).Set("verified", true).Set("bad", false);
  r.Set("text", "quote\" back\\slash\nnl\ttab\x01");
  const std::string json = r.ToJson();
  EXPECT_EQ(json.find('\n'), std::string::npos);
  EXPECT_EQ(json.substr(0, 44), "{\"bench\":\"transport\",\"size\":1048576,\"neg\":-3");
  absl::StatusOr<Record> back = Record::ParseJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back->GetString("bench"), "transport");
  EXPECT_EQ(*back->GetInt("size"), 1 << 20);
  EXPECT_EQ(*back->GetInt("neg"), -3);
  EXPECT_DOUBLE_EQ(*back->GetDouble("p50_us"), 1.25);
  EXPECT_TRUE(*back->GetBool("verified"));
  EXPECT_FALSE(*back->GetBool("bad"));
  EXPECT_EQ(*back->GetString("text"), "quote\" back\\slash\nnl\ttab\x01");
}

TEST(RecordTest, NonFiniteBecomesNull) {
  Record r;
  r.Set("x", std::numeric_limits<double>::quiet_NaN()).Set("y", 1.0);
  EXPECT_EQ(r.ToJson(), "{\"x\":null,\"y\":1}");
  absl::StatusOr<Record> back = Record::ParseJson(r.ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_FALSE(back->Has("x"));
  EXPECT_EQ(*back->GetInt("y"), 1);
}

TEST(RecordTest, ParseRejectsMalformed) {
  for (const char* bad :
       {"", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":[1]}", "{\"a\":{\"b\":1}}",
        "{\"a\":1} x", "{\"a\":\"unterminated}", "{\"a\":tru}", "[1]"}) {
    absl::StatusOr<Record> r = Record::ParseJson(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(Record::ParseJson(" { } ").ok());
}

TEST(RecordTest, ParseTaggedLines) {
  absl::StatusOr<std::optional<Record>> r = Record::ParseTagged("TAG ", "TAG {\"a\":1}");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ(*(*r)->GetInt("a"), 1);
  // Not a result line: no record, no error.
  r = Record::ParseTagged("TAG ", "some log {\"a\":1}");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(Record::ParseTagged("TAG ", "TAG {\"a\":").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SizeTest, FormatsAndParses) {
  EXPECT_EQ(FormatSize(8), "8");
  EXPECT_EQ(FormatSize(4096), "4K");
  EXPECT_EQ(FormatSize(64 << 20), "64M");
  EXPECT_EQ(FormatSize(1536), "1536");
  EXPECT_EQ(FormatSize(0), "0");
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("4K"), 4096u);
  EXPECT_EQ(*ParseSize("4k"), 4096u);
  EXPECT_EQ(*ParseSize("4KiB"), 4096u);
  EXPECT_EQ(*ParseSize("4KB"), 4096u);
  EXPECT_EQ(*ParseSize("64M"), 64u << 20);
  EXPECT_EQ(*ParseSize("1G"), 1u << 30);
  for (const char* bad : {"", "K", "-1", "4X", "4MM", "99999999999999999999", "17179869184G"}) {
    absl::StatusOr<uint64_t> r = ParseSize(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    if (*bad) {
      EXPECT_NE(r.status().message().find(bad), absl::string_view::npos);
    }
  }
}

TEST(TableTest, AlignsColumnsAndMarksMissing) {
  Table t({{"mode", "mode", Table::Format::kString, 4},
           {"size", "size", Table::Format::kSize, 5},
           {"p50", "p50_us", Table::Format::kFixed3, 0},
           {"ok", "verified", Table::Format::kString, 0}});
  EXPECT_EQ(t.Header(), "mode   size  p50_us  verified\n----  -----  ------  --------\n");
  Record r;
  r.Set("mode", "bw").Set("size", 1 << 20).Set("p50", 1.5).Set("ok", true);
  EXPECT_EQ(t.Row(r), "bw       1M   1.500  yes\n");
  Record partial;
  partial.Set("mode", "lat").Set("ok", false);
  EXPECT_EQ(t.Row(partial), "lat       -       -  NO\n");
}

}  // namespace
}  // namespace bench
}  // namespace tokenrail
