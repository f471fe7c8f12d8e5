// The launcher's event loop over its children: spawns them, forwards their
// output line by line through an OutputSink, reaps them as they exit and
// turns SIGINT/SIGTERM/SIGHUP into events, all from one thread with poll()
// and a signalfd (no signal handlers, no races with waitpid).
//
// Init() blocks SIGCHLD, SIGINT, SIGTERM and SIGHUP in the calling thread
// (children get an empty mask back, see subprocess.h) and ignores SIGPIPE.
// Call it before creating other threads so they inherit the blocked mask and
// the signals are only ever read from the signalfd.
//
// Thread safety: one thread (the one that called Init and spawns).
#ifndef TOKENRAIL_TOOLS_LAUNCH_SUPERVISOR_H_
#define TOKENRAIL_TOOLS_LAUNCH_SUPERVISOR_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "tools/launch/output.h"
#include "tools/launch/subprocess.h"

namespace tokenrail {
namespace launch {

class Janitor;

struct Proc {
  enum class Role { kDaemon, kRank };
  Role role = Role::kRank;
  int node = 0;
  int rank = -1;  // global rank; -1 for daemons
  std::string label;
  std::unique_ptr<Subprocess> sub;
  std::unique_ptr<LineSplitter> out;
  std::unique_ptr<LineSplitter> err;
  // The launcher asked it to stop: its exit is expected, not a failure.
  bool stopping = false;
  bool reported = false;  // its exit was returned by Pump()
  absl::Time exit_time;

  bool exited() const { return sub->exited(); }
  // "rank 3 (node 1)" or "daemon of node 1".
  std::string Name() const;
  // "rank 3 (node 1) killed by signal 9 (Killed)".
  std::string DescribeExit() const;
};

class Supervisor {
 public:
  struct Event {
    enum class Kind { kDone, kExited, kSignal, kDeadline };
    Kind kind = Kind::kDone;
    Proc* proc = nullptr;  // kExited
    int signal = 0;        // kSignal
  };

  // `janitor` (may be null) is told every child's process group.
  Supervisor(OutputSink* sink, Janitor* janitor) : sink_(sink), janitor_(janitor) {}
  ~Supervisor();  // kills (SIGKILL) and reaps whatever still runs

  absl::Status Init();

  // Spawns a child; its output is forwarded as "[label] ...".
  absl::StatusOr<Proc*> Start(Proc::Role role, int node, int rank, std::string label,
                              const SpawnOptions& options);

  // Forwards output and reaps until `done()` holds (checked at least every
  // `tick`), a child exits (each exit is returned once, after its output
  // drained), a termination signal arrives, or `deadline` passes.
  Event Pump(const std::function<bool()>& done, absl::Time deadline,
             absl::Duration tick = absl::Milliseconds(50));

  // Signals every live child in `procs` (their process groups) with SIGTERM,
  // forwards output while waiting up to `grace` for them, then SIGKILLs what
  // is left and reaps it. Exits during this are expected (stopping = true).
  void Terminate(const std::vector<Proc*>& procs, absl::Duration grace);
  // SIGKILLs the process groups of every child, even reaped ones (their
  // own children may live on), and reaps.
  void KillAll();

  // A launcher message, "[launch] text" on stderr, in line with child output.
  void Message(absl::string_view text);

  const std::vector<std::unique_ptr<Proc>>& procs() const { return procs_; }
  std::vector<Proc*> Live(Proc::Role role) const;
  // Reads any remaining output of exited children (pipes that reached EOF).
  void DrainOutput(absl::Duration max_wait);

 private:
  void ReapAll();
  bool ReadSignals(Event* event);
  OutputSink* sink_;
  Janitor* janitor_;
  UniqueFd signal_fd_;
  std::vector<std::unique_ptr<Proc>> procs_;
  std::deque<Proc*> exits_;  // reaped, not yet returned by Pump
};

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_SUPERVISOR_H_
