// The daemon's rank socket: accepts local ranks on a SOCK_SEQPACKET unix
// socket (mode 0600, peer uid must be the daemon's), runs the attach
// protocol (attach_protocol.h), passes the arena fd on attach, forwards
// collective requests, and notices ranks that die (socket closed without
// Detach) or break the protocol.
//
// One thread polls the listener, every connection and an eventfd for
// replies queued by other threads. Decisions (may this rank attach? what
// does a dead rank mean?) belong to the host callbacks, called on that
// thread; they must not block for long.
//
// Thread safety: Reply, StopAccepting and Ranks from any thread.
#ifndef TOKENRAIL_RUNTIME_DAEMON_RANK_SERVER_H_
#define TOKENRAIL_RUNTIME_DAEMON_RANK_SERVER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/fd.h"
#include "runtime/arena/attach_protocol.h"

namespace tokenrail {
namespace runtime {

struct RankServerHost {
  // Local rank `r` (process `pid`) asks to attach; the welcome to send, or
  // the error to answer with.
  std::function<absl::StatusOr<WelcomeInfo>(int r, pid_t pid)> attach;
  // An attached rank entered a collective (kAllocate / kBarrier).
  std::function<void(int r, uint64_t generation, const AttachMessage& request)> collective;
  // An attached rank detached cleanly.
  std::function<void(int r, pid_t pid)> detached;
  // An attached rank is gone without Detach (died) or broke the protocol.
  std::function<void(int r, pid_t pid, const std::string& why)> lost;
};

struct RankConnectionInfo {
  bool attached = false;
  pid_t pid = 0;
};

class RankServer {
 public:
  // Listens on `path` (ListenSeqpacket: 0600, stale files replaced).
  static absl::StatusOr<std::unique_ptr<RankServer>> Create(const std::string& path,
                                                            int ranks_per_node, int arena_fd,
                                                            RankServerHost host);
  ~RankServer();  // Stop()

  void Start();
  // Closes every connection and the listener, and removes the socket file.
  void Stop();
  // From now on hellos are answered with `reason` (drain, failed job).
  void StopAccepting(const absl::Status& reason);
  // Queues `reply` for local rank `r` if connection `generation` is still
  // the one attached as `r`.
  void Reply(int r, uint64_t generation, AttachMessage reply);
  std::vector<RankConnectionInfo> Ranks() const;
  const std::string& path() const { return path_; }

 private:
  struct Connection {
    UniqueFd fd;
    pid_t pid = 0;
    int local_rank = -1;  // -1 until its hello was accepted
    uint64_t generation = 0;
    bool detached = false;
    int64_t hello_deadline_ns = 0;
  };
  struct QueuedReply {
    int r;
    uint64_t generation;
    AttachMessage message;
  };

  RankServer(std::string path, int ranks_per_node, int arena_fd, UniqueFd listener, UniqueFd wake,
             RankServerHost host);
  void Run();
  void AcceptAll();
  // Returns false when the connection must be closed.
  bool Serve(Connection& c);
  bool Handle(Connection& c, const AttachMessage& m);
  void Close(Connection& c, const std::string& why);
  void SendReplies();
  bool Send(Connection& c, const AttachMessage& m, int pass_fd = -1);

  const std::string path_;
  const int ranks_per_node_;
  const int arena_fd_;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd
  const RankServerHost host_;
  std::vector<std::unique_ptr<Connection>> connections_;  // server thread only
  uint64_t next_generation_ = 1;

  mutable absl::Mutex mu_;
  std::vector<RankConnectionInfo> ranks_ ABSL_GUARDED_BY(mu_);
  std::deque<QueuedReply> replies_ ABSL_GUARDED_BY(mu_);
  absl::Status refuse_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_DAEMON_RANK_SERVER_H_
