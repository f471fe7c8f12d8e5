#include "tools/launch/output.h"

#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace tokenrail {
namespace launch {

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(n);
  }
  return true;
}

void PrefixingSink::Line(absl::string_view label, Stream stream, absl::string_view line) {
  const bool to_out = stream == Stream::kStdout;
  bool& broken = to_out ? out_broken_ : err_broken_;
  if (broken) return;
  const std::string text = absl::StrCat("[", label, "] ", line, "\n");
  if (!WriteAll(to_out ? out_fd_ : err_fd_, text)) broken = true;
}

void LineSplitter::Feed(absl::string_view data) {
  while (!data.empty()) {
    const size_t nl = data.find('\n');
    const size_t take = nl == absl::string_view::npos ? data.size() : nl;
    if (pending_.empty() && nl != absl::string_view::npos && take <= kMaxLine) {
      sink_->Line(label_, stream_, data.substr(0, take));  // common case: no copy
    } else {
      const size_t room = kMaxLine - pending_.size();
      if (take > room) {
        pending_.append(data.data(), room);
        sink_->Line(label_, stream_, pending_);
        pending_.clear();
        data.remove_prefix(room);
        continue;
      }
      pending_.append(data.data(), take);
      if (nl == absl::string_view::npos) return;
      sink_->Line(label_, stream_, pending_);
      pending_.clear();
    }
    data.remove_prefix(take + 1);
  }
}

void LineSplitter::Finish() {
  if (!pending_.empty()) sink_->Line(label_, stream_, pending_);
  pending_.clear();
}

bool LineSplitter::DrainFrom(int fd) {
  char buf[16384];
  // Bounded per call so one chatty child cannot starve the others.
  for (int reads = 0; reads < 16; ++reads) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      Feed(absl::string_view(buf, n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    Finish();
    return false;
  }
  return true;
}

}  // namespace launch
}  // namespace tokenrail
