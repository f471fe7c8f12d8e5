// Test harness for launched clusters: runs tokenrail-launch (the real
// binary) with a rank program, collects its prefixed output line by line,
// finds process ids, kills processes on cue, and checks that a run left
// nothing behind.
//
// Binaries come from the environment the BUILD rule sets (runfiles paths):
// TR_LAUNCH (tokenrail-launch), TR_DAEMON (tokenraild), TR_RANK (the rank
// program).
//
// Thread safety: one thread per LaunchedJob.
#ifndef TOKENRAIL_TEST_HARNESS_H_
#define TOKENRAIL_TEST_HARNESS_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tools/launch/output.h"
#include "tools/launch/subprocess.h"

namespace tokenrail {
namespace testing {

// One line of launcher output, split into its "[label] " prefix and text.
struct OutputLine {
  std::string label;  // "n1/r3", "n0/d", "launch"; empty if unprefixed
  std::string text;
  absl::Time time;  // when the harness read it
};

// "key=value" fields of a machine-readable line ("TR_FAULT rank=3 ...");
// "msg" takes the rest of the line.
std::map<std::string, std::string> ParseFields(absl::string_view text);

struct LaunchSpec {
  std::vector<std::string> launcher_flags;  // besides --daemon, --verbose, --job_id
  std::vector<std::string> command;         // default: {TR_RANK}
  std::vector<std::string> extra_env;       // "NAME=value" added to the launcher's env
  // Default: unique per launch. "derive": pass no --job_id (cluster mode
  // derives it; job_id() is then read from the launcher's first line).
  std::string job_id;
};

class LaunchedJob {
 public:
  static absl::StatusOr<std::unique_ptr<LaunchedJob>> Start(const LaunchSpec& spec);
  ~LaunchedJob();  // SIGKILLs the launcher if still running

  // Reads output until `pred` holds for a line (returns it), or the launcher
  // exits / `deadline` passes (nullptr). Lines read are kept in lines().
  const OutputLine* WaitForLine(const std::function<bool(const OutputLine&)>& pred,
                                absl::Time deadline);
  // Waits for the launcher to exit, reading everything; its exit code, or
  // -1 on deadline, 128+N if killed by signal N.
  int Wait(absl::Time deadline);

  const std::vector<OutputLine>& lines() const { return lines_; }
  std::string Transcript() const;  // every line, for failure messages
  // Lines whose text starts with `tag` ("TR_FAULT").
  std::vector<const OutputLine*> Tagged(absl::string_view tag) const;

  // From the launcher's --verbose "started ... pid N" lines (0 if not seen).
  pid_t DaemonPid(int node) const;
  pid_t RankPid(int rank) const;
  pid_t launcher_pid() const { return launcher_->pid(); }
  const std::string& job_id() const { return job_id_; }
  // From the launcher's first line.
  const std::string& run_dir() const { return run_dir_; }
  const std::string& netns_prefix() const { return netns_prefix_; }

 private:
  LaunchedJob() = default;
  void Absorb(const OutputLine& line);
  std::unique_ptr<launch::Subprocess> launcher_;
  std::vector<OutputLine> lines_;
  class Collector;
  std::unique_ptr<Collector> collector_;
  std::unique_ptr<launch::LineSplitter> out_, err_;
  std::string job_id_;
  std::string run_dir_;
  std::string netns_prefix_;
  std::map<int, pid_t> daemon_pids_;
  std::map<int, pid_t> rank_pids_;
  size_t absorbed_ = 0;
};

// Everything of a run that is still there: live processes whose command line
// or environment mentions `job_id`, the run directory, network namespaces
// with `netns_prefix` (when not empty). Empty when clean. Waits up to
// `settle` for things that are on their way out.
std::vector<std::string> Leftovers(const std::string& job_id, const std::string& run_dir,
                                   const std::string& netns_prefix, absl::Duration settle);

// Makes this process the reaper of orphans (children of a SIGKILLed
// launcher) and reaps any that exited. Call once at test start.
void BecomeSubreaper();
void ReapOrphans();

// Checks the output of an exchange-mode run of `nodes` x `ranks_per_node`:
// every rank printed its topology and a successful TR_RESULT under the right
// "[n<node>/r<rank>]" label. Returns the problems found, empty when none.
std::vector<std::string> CheckExchange(const LaunchedJob& job, int nodes, int ranks_per_node);

// Binary paths from the environment; the test fails loudly without them.
std::string LauncherPath();
std::string DaemonPath();
std::string RankPath();

// A free TCP port on 127.0.0.1 (bound and released; racy but fine for tests).
int FreePort();

}  // namespace testing
}  // namespace tokenrail

#endif  // TOKENRAIL_TEST_HARNESS_H_
