// The shm transport: processes on one host, puts as one memcpy into a peer's
// memfd mapped here, notifications and messages on lock-free rings in shared
// memory, and a unix-socket side channel for the handshake, region fds
// (SCM_RIGHTS) and peer-death detection.
//
// Context: a listening unix socket at <dir>/tokenrail-shm-<pid>-<id>.sock
// (mode 0600, unlinked on destruction; a filesystem path so that processes in
// different network namespaces reach it too). Connect is symmetric: the side
// with the smaller context id connects and sends a hello with its inbound
// channel fd; the other accepts (inside any progress or wait, so its accept
// queue never stalls), matches the hello to its own Connect call and answers
// with its inbound channel fd. Each side then announces its target regions.
//
// Threading: as transport.h: one thread at a time per context, its endpoints
// and its regions.
#ifndef TOKENRAIL_TRANSPORT_SHM_CONTEXT_H_
#define TOKENRAIL_TRANSPORT_SHM_CONTEXT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "common/fd.h"
#include "transport/shm/options.h"
#include "transport/shm/socket.h"
#include "transport/shm/wire.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {
namespace shm {

class ShmEndpoint;
class ShmMemoryRegion;

Capabilities ShmCapabilities();
absl::StatusOr<Capabilities> ProbeShm(const TransportOptions& options);
absl::StatusOr<std::unique_ptr<Context>> CreateShmContext(const TransportOptions& options);

class ShmContext final : public Context {
 public:
  static absl::StatusOr<std::unique_ptr<ShmContext>> Create(const TransportOptions& options);
  ~ShmContext() override;

  const Capabilities& capabilities() const override { return caps_; }
  std::string address() const override { return address_; }
  absl::StatusOr<std::unique_ptr<Endpoint>> Connect(absl::string_view peer_address,
                                                    absl::Time deadline) override;
  absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* data, size_t size,
                                                               MemoryKind kind) override;
  absl::StatusOr<std::unique_ptr<MemoryRegion>> AllocateMemory(size_t size,
                                                               MemoryKind kind) override;
  absl::Status Progress() override;
  // An epoll set of the listening socket and every endpoint's side channel;
  // armed receivers get a wake frame from the peer's next put or message.
  // A connection still in its handshake does not wake it: Connect drives
  // its own progress.
  int EventFd() override { return epoll_fd_.get(); }
  absl::StatusOr<bool> ArmEventFd() override;

  // For this context's endpoints and regions.
  uint64_t id() const { return id_; }
  const std::string& name() const { return options_.name; }
  const TransportOptions& options() const { return options_; }
  const ShmOptions& shm_options() const { return shm_; }
  // Non-blocking: accepts connections, reads handshakes, services every
  // endpoint (side channel, queued notifications and messages).
  absl::Status ProgressAll();
  void DetachEndpoint(ShmEndpoint* ep);
  // Removes a failed endpoint's socket from the event fd.
  void Unwatch(int fd);
  // A region is being destroyed: peers are told to stop using it.
  void ReleaseRegion(ShmMemoryRegion* region);

 private:
  // A connection whose endpoint does not exist yet.
  struct Handshake {
    explicit Handshake(UniqueFd fd) : sock(std::move(fd)) {}
    SocketChannel sock;
    HelloFrame hello;
    UniqueFd channel_fd;  // the peer's inbound channel, from its hello
  };

  ShmContext(TransportOptions options, ShmOptions shm) : options_(std::move(options)), shm_(shm) {}
  absl::Status Init();
  absl::Status AcceptAndReadHellos();
  // Reads `hs` without blocking; true once its hello arrived.
  absl::StatusOr<bool> ReadHello(Handshake& hs);
  // Runs `step` (true = done) with ProgressAll and backoff until `deadline`.
  absl::Status WaitFor(absl::Time deadline, absl::FunctionRef<absl::StatusOr<bool>()> step);
  absl::StatusOr<Handshake> ConnectAsClient(const AddressInfo& peer, int channel_fd,
                                            absl::Time deadline);
  absl::StatusOr<Handshake> ConnectAsServer(const AddressInfo& peer, int channel_fd,
                                            absl::Time deadline);
  HelloFrame MyHello(const AddressInfo& peer) const;

  const TransportOptions options_;
  const ShmOptions shm_;
  Capabilities caps_;
  uint64_t id_ = 0;
  std::string socket_path_;
  std::string address_;
  UniqueFd listen_fd_;
  UniqueFd epoll_fd_;                                                  // EventFd()
  std::vector<std::unique_ptr<Handshake>> accepted_;                   // waiting for their hello
  std::map<uint64_t, std::deque<std::unique_ptr<Handshake>>> hellos_;  // by peer context id
  std::vector<ShmEndpoint*> endpoints_;
  std::map<uint64_t, ShmMemoryRegion*> targets_;  // AllocateMemory regions by id
  std::vector<ShmMemoryRegion*> sources_;         // RegisterMemory regions
  uint64_t next_region_id_ = 1;
};

}  // namespace shm
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_SHM_CONTEXT_H_
