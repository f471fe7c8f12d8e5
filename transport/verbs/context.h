// The verbs Context: one opened RDMA port (device context + PD), a TCP
// wireup listener, the table of registered regions and the live endpoints.
//
// Connect(peer) is symmetric. The side with the lower context id dials the
// peer's wireup listener and sends its QP blob; the higher side accepts
// (inside Connect, or parks early arrivals during Progress), moves its QP to
// RTS and answers with its own blob; the dialer moves to RTS and confirms.
// Each side posts all its receive WQEs before sending its blob, so neither can
// send before the other can receive. The TCP connection then stays open as the
// liveness channel of the endpoint.
//
// Progress() also drains the device's async event queue: a fatal QP event
// fails that endpoint, a fatal device event fails them all.
//
// Thread safety: one thread at a time; see transport.h.
#ifndef TOKENRAIL_TRANSPORT_VERBS_CONTEXT_H_
#define TOKENRAIL_TRANSPORT_VERBS_CONTEXT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "common/fd.h"
#include "transport/transport.h"
#include "transport/verbs/device.h"
#include "transport/verbs/endpoint.h"
#include "transport/verbs/memory.h"
#include "transport/verbs/options.h"
#include "transport/verbs/wire.h"
#include "transport/verbs/wireup.h"

namespace tokenrail {
namespace transport {
namespace verbs {

// Capabilities of the backend given the host's ports and the selected one.
Capabilities MakeCapabilities(const std::vector<PortInfo>& ports, const PortInfo& selected,
                              bool gpu_direct);

// The registry's probe: options, then devices. Unavailable("no RDMA device")
// on hosts without RDMA.
absl::StatusOr<Capabilities> ProbeVerbs(const TransportOptions& options);

class VerbsContext : public Context {
 public:
  static absl::StatusOr<std::unique_ptr<Context>> Create(const TransportOptions& options);
  ~VerbsContext() override;

  const Capabilities& capabilities() const override { return caps_; }
  std::string address() const override { return address_; }
  absl::StatusOr<std::unique_ptr<Endpoint>> Connect(absl::string_view peer_address,
                                                    absl::Time deadline) override;
  absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* data, size_t size,
                                                               MemoryKind kind) override;
  absl::StatusOr<std::unique_ptr<MemoryRegion>> AllocateMemory(size_t size,
                                                               MemoryKind kind) override;
  absl::Status Progress() override;
  // An epoll set of the completion channel, the device's async events, the
  // wireup listener and every endpoint's liveness socket.
  int EventFd() override { return epoll_fd_.get(); }
  absl::StatusOr<bool> ArmEventFd() override;

 private:
  // An accepted wireup connection whose hello has arrived.
  struct Parked {
    WireupConn conn;
    WireupFrame hello;
    absl::Time since;
  };
  struct Unidentified {
    WireupConn conn;
    absl::Time since;
  };

  VerbsContext() = default;

  // The two halves of the handshake; each returns the wireup connection,
  // which stays open as the endpoint's liveness channel.
  absl::StatusOr<WireupConn> DialSide(VerbsEndpoint& ep, const AddressInfo& peer,
                                      absl::Time deadline);
  absl::StatusOr<WireupConn> AcceptSide(VerbsEndpoint& ep, const AddressInfo& peer,
                                        absl::Time deadline);
  // Accepts pending wireup connections and reads their hellos (non-blocking).
  void AcceptWireup();
  void DrainAsyncEvents();
  // Reads and acknowledges completion events (the channel is non-blocking).
  void DrainCqEvents();
  WireupFrame Frame(WireupType type, uint64_t to, std::string body) const;

  TransportOptions topts_;
  VerbsOptions options_;
  uint64_t id_ = 0;
  Capabilities caps_;
  std::string address_;
  absl::Status device_status_;  // set by a fatal device event

  std::unique_ptr<Device> device_;
  UniqueFd epoll_fd_;  // EventFd(); watches fds owned by others
  RegionTable regions_;
  EndpointSet endpoints_;
  uint64_t next_region_ = 1;
  absl::BitGen gen_;  // context id, region cookies
  WireupListener listener_;
  std::vector<Unidentified> unidentified_;
  std::map<uint64_t, Parked> parked_;  // by the dialer's context id
};

}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail

#endif  // TOKENRAIL_TRANSPORT_VERBS_CONTEXT_H_
