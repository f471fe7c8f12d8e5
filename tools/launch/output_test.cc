#include "tools/launch/output.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace tokenrail {
namespace launch {
namespace {

class RecordingSink : public OutputSink {
 public:
  void Line(absl::string_view label, Stream stream, absl::string_view line) override {
    lines.emplace_back(std::string(label), std::string(line));
    streams.push_back(stream);
  }
  std::vector<std::pair<std::string, std::string>> lines;
  std::vector<Stream> streams;
};

TEST(LineSplitterTest, ReassemblesLinesAcrossChunks) {
  RecordingSink sink;
  LineSplitter s("n0/r1", Stream::kStdout, &sink);
  s.Feed("hel");
  s.Feed("lo\nwor");
  s.Feed("ld\n\nlast");
  ASSERT_EQ(sink.lines.size(), 3u);
  EXPECT_EQ(sink.lines[0].second, "hello");
  EXPECT_EQ(sink.lines[1].second, "world");
  EXPECT_EQ(sink.lines[2].second, "");
  s.Finish();
  ASSERT_EQ(sink.lines.size(), 4u);
  EXPECT_EQ(sink.lines[3].first, "n0/r1");
  EXPECT_EQ(sink.lines[3].second, "last");
  s.Finish();
  EXPECT_EQ(sink.lines.size(), 4u);
}

TEST(LineSplitterTest, SplitsOverlongLines) {
  RecordingSink sink;
  LineSplitter s("x", Stream::kStderr, &sink);
  const std::string big(LineSplitter::kMaxLine * 2 + 10, 'a');
  s.Feed(big.substr(0, 100));
  s.Feed(big.substr(100));
  s.Feed("\n");
  ASSERT_EQ(sink.lines.size(), 3u);
  EXPECT_EQ(sink.lines[0].second.size(), LineSplitter::kMaxLine);
  EXPECT_EQ(sink.lines[1].second.size(), LineSplitter::kMaxLine);
  EXPECT_EQ(sink.lines[2].second.size(), 10u);
  EXPECT_EQ(sink.streams[0], Stream::kStderr);
}

TEST(PrefixingSinkTest, WritesWholePrefixedLines) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  PrefixingSink sink(fds[1], fds[1]);
  LineSplitter a("n0/r0", Stream::kStdout, &sink);
  LineSplitter b("n1/d", Stream::kStderr, &sink);
  a.Feed("partial from a ");
  b.Feed("line from b\n");
  a.Feed("continues\n");
  ::close(fds[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, n);
  ::close(fds[0]);
  EXPECT_EQ(out, "[n1/d] line from b\n[n0/r0] partial from a continues\n");
}

TEST(LineSplitterTest, DrainFromReadsUntilEof) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK), 0);
  RecordingSink sink;
  LineSplitter s("r", Stream::kStdout, &sink);
  ASSERT_EQ(::write(fds[1], "a\nb", 3), 3);
  EXPECT_TRUE(s.DrainFrom(fds[0]));
  ASSERT_EQ(sink.lines.size(), 1u);
  ::close(fds[1]);
  EXPECT_FALSE(s.DrainFrom(fds[0]));
  ASSERT_EQ(sink.lines.size(), 2u);
  EXPECT_EQ(sink.lines[1].second, "b");
  ::close(fds[0]);
}

}  // namespace
}  // namespace launch
}  // namespace tokenrail
