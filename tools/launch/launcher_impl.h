// Private to tools/launch: the Launcher's implementation, shared by
// launcher.cc (options, start-up, the main wait) and launcher_finish.cc
// (failure handling, stopping, cleanup). See launcher.h for the behaviour.
#ifndef TOKENRAIL_TOOLS_LAUNCH_LAUNCHER_IMPL_H_
#define TOKENRAIL_TOOLS_LAUNCH_LAUNCHER_IMPL_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "tools/launch/control_client.h"
#include "tools/launch/janitor.h"
#include "tools/launch/launcher.h"
#include "tools/launch/netns.h"
#include "tools/launch/run_dir.h"
#include "tools/launch/supervisor.h"

namespace tokenrail {
namespace launch {

// How a run (or one phase of it) ended.
struct Outcome {
  int exit_code = kExitOk;
  std::string reason;
  // A child failed (as opposed to a timeout or a signal to the launcher):
  // the survivors get the failure grace to observe it through the runtime.
  bool process_failure = false;
  Proc* culprit = nullptr;  // the process whose exit is the failure
  bool ok() const { return exit_code == kExitOk; }
};

// "2.5 s", "12 s".
std::string Seconds(absl::Duration d);

class Launcher::Impl {
 public:
  Impl(LaunchOptions o, OutputSink* sink) : o_(std::move(o)), sink_(sink) {}

  int Run();

 private:
  bool cluster() const { return o_.placement.kind != ClusterKind::kLocal; }
  int world() const { return o_.placement.nodes * o_.placement.ranks_per_node; }

  // launcher.cc
  absl::Status Setup();
  Outcome Execute();
  absl::Status StartDaemon(int node);
  Outcome AwaitReady(const std::vector<int>& nodes);
  Outcome CreateJob();
  absl::Status StartRank(int node, int local_rank);
  absl::Status EnterNamespaceOf(int node);
  absl::Status LeaveNamespace();
  // Pumps until `done`; false with `out` set when something failed first.
  // A daemon exiting with status 0 is a failure unless `daemons_may_finish`.
  bool WaitFor(const std::function<bool()>& done, absl::Time deadline,
               absl::string_view waiting_for, Outcome* out, bool daemons_may_finish = false);
  std::string NodeHost(int node) const;
  std::string CoordinatorTarget() const;
  std::string SocketPath(int node) const;
  std::vector<std::string> DaemonArgv(int node) const;

  // launcher_finish.cc
  Outcome AwaitOtherNodes();
  Outcome StopDaemons();
  void HandleFailure(const Outcome& failure);
  // Pumps until `done` or `until`; processes exiting with errors meanwhile
  // are consequences of the failure, not new ones. False when a signal to
  // the launcher cut it short.
  bool AwaitQuietly(const std::function<bool()>& done, absl::Time until);
  bool AwaitRanks(absl::Time until);  // until every rank exited
  // Which process caused the failure first observed as `first`: the one the
  // coordinator names (waited for until `settle_end`), else the first killed
  // by a signal, else a daemon that exited, else `first`.
  Proc* RootCause(Proc* first, absl::Time settle_end);
  absl::Status Cleanup();

  LaunchOptions o_;
  OutputSink* sink_;
  std::unique_ptr<Janitor> janitor_;
  std::unique_ptr<Supervisor> sup_;
  std::unique_ptr<RunDir> run_dir_;
  std::unique_ptr<NetnsCluster> netns_;
  UniqueFd original_netns_;
  std::unique_ptr<ControlClient> control_;
  std::string token_file_;
  std::string job_id_;
  std::vector<int> local_nodes_;  // nodes whose daemon this launcher runs
  std::map<int, Proc*> daemons_;
  std::map<int, DaemonReady> ready_;
  int coordinator_port_ = 0;
  absl::Time start_;
  absl::Time run_deadline_ = absl::InfiniteFuture();
};

}  // namespace launch
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_LAUNCH_LAUNCHER_IMPL_H_
