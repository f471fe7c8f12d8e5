// Output of launched processes: byte streams split into lines, each line
// delivered whole to a sink that prefixes it with the process label
// ("[n1/r3] ...") and writes it with one write(), so lines of different
// processes never mix, whatever the children's own buffering.
//
// Thread safety: the launcher drives splitters and its sink from one thread.
#ifndef TOKENRAIL_TOOLS_LAUNCH_OUTPUT_H_
#define TOKENRAIL_TOOLS_LAUNCH_OUTPUT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace tokenrail {
namespace launch {

enum class Stream { kStdout, kStderr };

// Receives complete lines (without their newline).
class OutputSink {
 public:
  virtual ~OutputSink() = default;
  // `label` names the process: "n1/r3", "n0/d", or "launch" for the
  // launcher's own messages.
  virtual void Line(absl::string_view label, Stream stream, absl::string_view line) = 0;
};

// Writes "[label] line\n" to `out_fd` (stdout lines) or `err_fd` (stderr
// lines) with a single write per line. A closed reader (EPIPE, e.g. `| head`)
// stops writing to that fd without disturbing the run; SIGPIPE must be
// ignored by the caller.
class PrefixingSink : public OutputSink {
 public:
  PrefixingSink(int out_fd, int err_fd) : out_fd_(out_fd), err_fd_(err_fd) {}
  void Line(absl::string_view label, Stream stream, absl::string_view line) override;

 private:
  int out_fd_;
  int err_fd_;
  bool out_broken_ = false;
  bool err_broken_ = false;
};

// Splits one stream into lines. A line longer than kMaxLine is delivered in
// kMaxLine pieces (bounded memory for a child that never writes '\n'); a
// partial last line is delivered at Finish().
class LineSplitter {
 public:
  static constexpr size_t kMaxLine = 64 * 1024;

  LineSplitter(std::string label, Stream stream, OutputSink* sink)
      : label_(std::move(label)), stream_(stream), sink_(sink) {}
  void Feed(absl::string_view data);
  void Finish();

  // Reads what `fd` (non-blocking) holds now and feeds it. Returns false at
  // EOF or on a read error (the caller closes the fd; Finish() was called).
  bool DrainFrom(int fd);

 private:
  std::string label_;
  Stream stream_;
  OutputSink* sink_;
  std::string pending_;
};

// Writes all of `data` to `fd`, retrying partial writes and EINTR. False on
// any other error (errno is kept).
bool WriteAll(int fd, absl::string_view data);

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_OUTPUT_H_
