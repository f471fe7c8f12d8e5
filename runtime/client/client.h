// The rank client: how a rank process (a trainer worker) talks to its node's
// tokenraild.
//
// Usage (the launcher sets TOKENRAIL_SOCKET and TOKENRAIL_LOCAL_RANK):
//
//   TR_ASSIGN_OR_RETURN(AttachOptions opts, AttachOptions::FromEnvironment());
//   TR_ASSIGN_OR_RETURN(std::unique_ptr<RankClient> rank, RankClient::Attach(opts));
//   const RankTopology& t = rank->topology();          // global_rank, world_size, ...
//   TR_ASSIGN_OR_RETURN(Region buf, rank->AllocateSymmetric(1 << 20));   // collective
//   std::memset(buf.data, t.global_rank, 4096);
//   const int peer = (t.global_rank + 1) % t.world_size;
//   TR_ASSIGN_OR_RETURN(uint64_t id, rank->Put(buf, 0, peer, buf, 4096, 4096, /*tag=*/7));
//   TR_RETURN_IF_ERROR(rank->WaitComplete(id, absl::Now() + absl::Seconds(10)));
//   TR_ASSIGN_OR_RETURN(RankNotification n, rank->WaitNotification(deadline));
//   // n.src_rank sent n.length bytes with tag n.tag; they are in buf.data + 4096.
//   TR_RETURN_IF_ERROR(rank->Barrier(deadline));
//   TR_RETURN_IF_ERROR(rank->Detach());
//
// Semantics
// - Put copies src[src_off, +len) of this rank to dst_rank's copy of `dst` at
//   dst_off and then notifies dst_rank with {src_rank, tag, len}. The node's
//   daemon executes it: a shared-memory copy when dst_rank is on this node,
//   a transport put to the peer daemon's arena otherwise. Notifications from
//   one source rank arrive in post order, each after its data. Completion
//   (WaitComplete / IsComplete / WaitAll) means the source range may be
//   reused; the data is visible at the destination when its notification is.
// - AllocateSymmetric and Barrier are collective over every rank of the job,
//   in the same order everywhere (like nvshmem_malloc / a barrier): region
//   `id` has the same offset in every rank's heap, so a put addresses any
//   rank's copy. Mismatched sizes -> InvalidArgument on every rank.
// - Bad arguments (unknown region, ranges outside a region, a rank outside
//   0..world_size-1, tag > 65535) -> InvalidArgument naming the value; nothing
//   is posted.
// - Failure: when the job fails (a rank or daemon died, the job was
//   cancelled) every waiting and later call returns Unavailable naming the
//   dead node or rank; a dead local daemon is detected through the socket and
//   named. The error is sticky (status()). Every wait is bounded by its
//   deadline (DeadlineExceeded) or, for calls without one, by
//   AttachOptions::op_timeout.
// - A rank that exits without Detach() (or the destructor) counts as dead and
//   fails the job.
//
// Thread safety: a RankClient is used by one thread at a time (like a
// transport context). Blocking calls: Attach, AllocateSymmetric, Barrier,
// Wait*, Ping, Detach, and Put when more than kCommandEntries (1024) puts are
// outstanding.
#ifndef TOKENRAIL_RUNTIME_CLIENT_CLIENT_H_
#define TOKENRAIL_RUNTIME_CLIENT_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "runtime/arena/arena.h"
#include "runtime/arena/attach_protocol.h"

namespace tokenrail {
namespace runtime {

struct AttachOptions {
  // Unix socket of the node daemon (TOKENRAIL_SOCKET).
  std::string socket_path;
  // 0 .. ranks_per_node-1 (TOKENRAIL_LOCAL_RANK).
  int local_rank = -1;
  // How long Attach waits for the daemon to listen and answer.
  absl::Duration attach_timeout = absl::Seconds(30);
  // Bound of blocking calls that take no deadline (AllocateSymmetric, Put
  // waiting for a credit, Detach's final flush).
  absl::Duration op_timeout = absl::Minutes(5);
  // How long a wait polls before sleeping on its futex (latency vs. CPU).
  absl::Duration spin = absl::Microseconds(50);

  // Reads TOKENRAIL_SOCKET and TOKENRAIL_LOCAL_RANK (required) and
  // TOKENRAIL_NODE_ID / TOKENRAIL_JOB_ID (informational, checked against the
  // daemon's answer when set). InvalidArgument naming a missing or malformed
  // variable. The only place the client reads the environment.
  static absl::StatusOr<AttachOptions> FromEnvironment();
  // Informational expectations from the environment (-1 / empty: unchecked).
  int expected_node_id = -1;
  std::string expected_job_id;
};

struct RankTopology {
  std::string job_id;
  int node_id = 0;
  int nodes = 0;
  int local_rank = 0;
  int ranks_per_node = 0;
  int global_rank = 0;
  int world_size = 0;
};

// A symmetric region: `data` is this rank's copy.
struct Region {
  uint32_t id = 0;
  size_t size = 0;
  void* data = nullptr;
};

struct RankNotification {
  int src_rank = -1;
  uint32_t tag = 0;
  size_t length = 0;
};

class RankClient {
 public:
  // Connects to the daemon (retrying until attach_timeout while it starts),
  // says hello, maps the arena it sends. AlreadyExists when this local rank
  // is already attached; Unavailable when the daemon refuses (draining,
  // failed job); PermissionDenied from another user.
  static absl::StatusOr<std::unique_ptr<RankClient>> Attach(const AttachOptions& options);
  ~RankClient();  // Detach() if still attached (errors logged).

  RankClient(const RankClient&) = delete;
  RankClient& operator=(const RankClient&) = delete;

  const RankTopology& topology() const { return topology_; }

  // Collective (see above). The one-argument form waits up to op_timeout.
  absl::StatusOr<Region> AllocateSymmetric(size_t size);
  absl::StatusOr<Region> AllocateSymmetric(size_t size, absl::Time deadline);
  // Collective over every rank of the job. A Barrier that returned
  // DeadlineExceeded is still pending: calling Barrier again keeps waiting
  // for that same barrier.
  absl::Status Barrier(absl::Time deadline);

  // Posts a proxy put; returns its id (1, 2, 3, ...). Non-blocking unless
  // 1024 puts are outstanding.
  absl::StatusOr<uint64_t> Put(const Region& src, size_t src_off, int dst_rank, const Region& dst,
                               size_t dst_off, size_t len, uint32_t tag);
  // True once put `id` completed; its error if it failed (reported once).
  absl::StatusOr<bool> IsComplete(uint64_t id);
  absl::Status WaitComplete(uint64_t id, absl::Time deadline);
  // Waits for every put posted so far; returns the first error among them
  // not reported yet (and forgets the others, counting them in the message).
  absl::Status WaitAll(absl::Time deadline);

  // Moves up to `max` waiting notifications into `out`; returns how many.
  absl::StatusOr<size_t> PollNotifications(RankNotification* out, size_t max);
  absl::StatusOr<RankNotification> WaitNotification(absl::Time deadline);

  // A no-op command through the daemon's proxy and back (latency probe). It
  // takes a command id like a put.
  absl::Status Ping(absl::Time deadline);

  // Local rank `local_rank`'s copy of symmetric region `region` on this node
  // (every local rank maps the whole arena): loads and stores reach that
  // rank's memory directly, with no daemon involved (the NVLink-P2P
  // analogue; ordering between the ranks is the caller's business). The
  // pointer stays valid while this client lives. nullptr for a region this
  // rank did not allocate or a local rank outside 0..ranks_per_node-1.
  void* LocalPeerData(const Region& region, int local_rank) const;

  // Publishes the counters of this rank's expert-parallel engine into the
  // arena, where the daemon reads them for its statistics (RankStats in
  // GetStats / heartbeats): bytes moved by direct stores into local peers'
  // memory (which the proxy never sees) and tokens received per local expert
  // (the first kMaxEpStatsExperts). Values are cumulative since attach. No
  // syscall, no blocking.
  void PublishEpStats(uint64_t direct_bytes_intra_node, const uint64_t* tokens_per_expert,
                      int experts);

  // OK, or the sticky Unavailable naming the dead node or rank.
  absl::Status status() const;

  // Waits (op_timeout) for outstanding puts and tells the daemon, which
  // then no longer counts this rank as attached (a later exit is no
  // failure). Regions stay readable until the RankClient is destroyed (the
  // arena is unmapped then). Idempotent; afterwards every other call returns
  // FailedPrecondition.
  absl::Status Detach();

 private:
  RankClient(AttachOptions options, UniqueFd sock, std::unique_ptr<Arena> arena,
             const WelcomeInfo& welcome);

  // OK or the sticky failure: the arena's failure word, then (rate-limited,
  // or when `force`) the socket.
  absl::Status CheckAlive(bool force = false);
  absl::Status Fail(absl::Status status);
  // Drains the completion ring into the bookkeeping below.
  absl::Status Reap();
  absl::Status Post(Command& cmd, uint64_t* id);
  bool Done(uint64_t id) const;
  // Sleeps on `bell` while `ready` is false: spin, futex slices, liveness
  // checks, deadline (DeadlineExceeded with `what`).
  template <typename Ready>
  absl::Status WaitFor(Doorbell& bell, Ready ready, absl::Time deadline, const char* what);
  // Sends a request and waits for the reply with the same seq.
  absl::StatusOr<AttachMessage> Call(AttachMessage request, absl::Time deadline);
  absl::StatusOr<AttachMessage> AwaitReply(uint64_t seq, absl::Time deadline);
  absl::StatusOr<Region> MakeRegion(const RegionInfo& info) const;
  absl::Status CheckRegion(const Region& r, size_t off, size_t len, const char* which) const;
  absl::Status CheckUsable();

  const AttachOptions options_;
  UniqueFd sock_;
  std::unique_ptr<Arena> arena_;
  RankTopology topology_;
  std::string daemon_name_;  // "tokenraild of node N (socket PATH)" for messages
  RingProducer<Command> commands_;
  RingConsumer<Completion> completions_;
  RingConsumer<NotificationEntry> notifications_;
  std::vector<RegionInfo> regions_;

  uint64_t next_id_ = 1;          // id of the next command
  uint64_t reaped_ = 0;           // completions consumed
  uint64_t completed_below_ = 1;  // every id below completed
  std::set<uint64_t> completed_ahead_;
  std::map<uint64_t, absl::Status> errors_;  // failed, not reported yet

  // A collective request whose wait timed out: the daemon still runs it,
  // so the next call of the same collective resumes waiting for its reply.
  struct PendingCollective {
    uint64_t seq = 0;  // 0: none
    AttachMessageType type = AttachMessageType::kBarrier;
    uint64_t size = 0;
  };
  absl::StatusOr<AttachMessage> Collective(const AttachMessage& request, absl::Time deadline);

  uint64_t next_seq_ = 1;
  PendingCollective pending_;
  int64_t next_socket_check_ns_ = 0;
  absl::Status sticky_;
  bool detached_ = false;
};

}  // namespace runtime
}  // namespace tokenrail

#endif  // TOKENRAIL_RUNTIME_CLIENT_CLIENT_H_
