// The ucx backend's Context: one UCP context (features RMA | AM) and one UCP
// worker in single-thread mode, the table of registered regions, and the
// peers (see peer.h) it talks to.
//
// Puts travel as UCP RMA where both peers reach each other over a fabric with
// native RMA, and otherwise as active messages (eager below rndv_thresh,
// zero-copy rendezvous into the target region above it); notifications and
// control messages are active messages. See options.h for the knobs and
// resources.h for how RMA capability is detected.
//
// Threading and blocking: as transport.h says, one thread at a time drives a
// context, its endpoints and regions. Connect() and the Wait*/Flush calls
// block, driving progress (spinning briefly, then yielding, then sleeping on
// the worker's event fd), until done or their deadline. Nothing here starts threads; UCX runs its
// own async thread for connection events.
#ifndef TOKENRAIL_TRANSPORT_UCX_CONTEXT_H_
#define TOKENRAIL_TRANSPORT_UCX_CONTEXT_H_

#include <ucp/api/ucp.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "transport/transport.h"
#include "transport/ucx/handles.h"
#include "transport/ucx/options.h"
#include "transport/ucx/peer.h"
#include "transport/ucx/resources.h"

namespace tokenrail {
namespace transport {
namespace ucx {

class UcxMemoryRegion;
class UcxRemoteRegion;

class UcxContext final : public Context {
 public:
  static absl::StatusOr<std::unique_ptr<UcxContext>> Create(const TransportOptions& options);
  ~UcxContext() override;

  // Context.
  const Capabilities& capabilities() const override { return caps_; }
  std::string address() const override { return address_; }
  absl::StatusOr<std::unique_ptr<Endpoint>> Connect(absl::string_view peer_address,
                                                    absl::Time deadline) override;
  absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* data, size_t size,
                                                               MemoryKind kind) override;
  absl::StatusOr<std::unique_ptr<MemoryRegion>> AllocateMemory(size_t size,
                                                               MemoryKind kind) override;
  absl::Status Progress() override;
  // The UCP worker's event fd (ucp_worker_get_efd, UCP_FEATURE_WAKEUP);
  // ArmEventFd progresses once, then ucp_worker_arm.
  int EventFd() override { return event_fd_; }
  absl::StatusOr<bool> ArmEventFd() override;
  void SetExplicitProgress(bool on) override { explicit_progress_ = on; }

  // ---- For the backend's own classes ------------------------------------
  uint64_t id() const { return id_; }
  const UcxOptions& options() const { return options_; }
  ucp_context_h ucp() const { return ucp_.get(); }
  ucp_worker_h worker() const { return worker_.get(); }
  const std::string& host_id() const { return host_id_; }
  uint8_t rma_classes() const { return report_.rma_classes; }
  const ResourceReport& resources() const { return report_; }

  // One progress round: drives UCX, then the peers' deferred work. Returns
  // whether anything happened.
  bool ProgressOnce();
  // ProgressOnce unless the caller drives progress (SetExplicitProgress):
  // what endpoint polls call.
  void ProgressForPoll() {
    if (!explicit_progress_) ProgressOnce();
  }
  // Drives progress until `done` returns true (OK) or an error (returned), or
  // `deadline` passes (DeadlineExceeded: "<what>: timed out after ...").
  absl::Status WaitFor(absl::FunctionRef<absl::StatusOr<bool>()> done, absl::Time deadline,
                       absl::FunctionRef<std::string()> what);
  void MarkDirty(Peer* peer);

  // Closes and retires `peer` (its Endpoint is being destroyed).
  void ClosePeer(Peer* peer);

  // Region table. ValidatePut returns 0 and the target address, or a
  // RejectReason; KeyVerdictFor answers a peer's key query.
  uint32_t ValidatePut(uint64_t region_id, uint64_t cookie, uint64_t offset, uint64_t length,
                       char** target, MemoryKind* kind) const;
  uint32_t KeyVerdictFor(uint64_t region_id, uint64_t cookie, uint64_t size) const;
  // Rendezvous receives into a region in flight (deregistration waits).
  void RegionReceiveStarted(uint64_t region_id);
  void RegionReceiveDone(uint64_t region_id);
  // Called by UcxMemoryRegion's destructor: stops accepting puts into the
  // region and waits (bounded) for receives into it to finish.
  void RemoveRegion(UcxMemoryRegion* region);
  void TrackRemoteRegion(UcxRemoteRegion* region) { remote_regions_.insert(region); }
  void UntrackRemoteRegion(UcxRemoteRegion* region) { remote_regions_.erase(region); }

 private:
  struct RegionEntry {
    char* base;
    size_t size;
    uint64_t cookie;
    MemoryKind kind;
    UcxMemoryRegion* owner;
    int receives_in_flight;
  };

  UcxContext(UcxOptions options, UcpContextPtr ucp, ResourceReport report);
  absl::Status Init();
  absl::StatusOr<std::unique_ptr<MemoryRegion>> MapRegion(void* data, size_t size, MemoryKind kind,
                                                          bool allocate);
  Peer* NewPeer(uint64_t remote_id);
  void RetirePeer(Peer* peer);
  void ReapRetired();

  template <uint16_t kId>
  static ucs_status_t AmCallback(void* arg, const void* header, size_t header_length, void* data,
                                 size_t length, const ucp_am_recv_param_t* param);
  ucs_status_t HandleAm(uint16_t id, const void* header, size_t header_length, void* data,
                        size_t length, const ucp_am_recv_param_t* param);

  const UcxOptions options_;
  const uint64_t id_;
  const std::string host_id_;
  const ResourceReport report_;
  Capabilities caps_;
  std::string address_;

  // Declared in creation order; the destructor tears down explicitly.
  UcpContextPtr ucp_;
  UcpWorkerPtr worker_;
  int event_fd_ = -1;  // owned by the worker
  bool explicit_progress_ = false;

  uint64_t next_region_id_ = 1;
  std::unordered_map<uint64_t, RegionEntry> regions_;
  std::set<UcxRemoteRegion*> remote_regions_;
  std::set<UcxMemoryRegion*> live_regions_;

  uint64_t next_peer_serial_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Peer>> peers_;  // by remote context id
  std::vector<std::unique_ptr<Peer>> retired_;
  std::unordered_set<uint64_t> closed_ids_;  // peers whose endpoint we destroyed
  // Hellos of peers reconnecting while our endpoint to their previous
  // incarnation still exists (failed): name by context id, for Connect.
  std::unordered_map<uint64_t, std::string> pending_hellos_;
  std::vector<Peer*> dirty_;

  friend class UcxMemoryRegion;
};

template <uint16_t kId>
ucs_status_t UcxContext::AmCallback(void* arg, const void* header, size_t header_length, void* data,
                                    size_t length, const ucp_am_recv_param_t* param) {
  return static_cast<UcxContext*>(arg)->HandleAm(kId, header, header_length, data, length, param);
}

// Registry hooks (register.cc).
absl::StatusOr<Capabilities> ProbeUcx(const TransportOptions& options);
absl::StatusOr<std::unique_ptr<Context>> CreateUcxContext(const TransportOptions& options);

}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_UCX_CONTEXT_H_
