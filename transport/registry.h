// Registry of transport backends by name, with capability-based selection.
//
// A backend registers itself from its own package (link it with alwayslink):
//
//   TR_REGISTER_TRANSPORT(shm, {
//       .name = "shm", .description = "...", .params_help = {...},
//       .probe = &ProbeShm, .create = &CreateShmContext});
//
// Nothing outside a backend compares backend names: callers ask for
// Requirements and pass the user's filter (--transports), like UCX_TLS:
//   "shm,ucx"   only these, in this order of preference
//   "^verbs"    all but these
//   ""          all registered backends
#ifndef TOKENRAIL_TRANSPORT_REGISTRY_H_
#define TOKENRAIL_TRANSPORT_REGISTRY_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {

struct BackendEntry {
  std::string name;
  std::string description;
  // key -> help text for TransportOptions::params.
  std::vector<std::pair<std::string, std::string>> params_help;
  // Reports capabilities on this host, or Unavailable ("no RDMA device").
  std::function<absl::StatusOr<Capabilities>(const TransportOptions&)> probe;
  std::function<absl::StatusOr<std::unique_ptr<Context>>(const TransportOptions&)> create;
};

struct Requirements {
  bool intra_node = false;
  bool inter_node = false;
  bool gpu_memory = false;
};

// Adds a backend; returns true (for static registration). Registering a name
// twice is a programmer error.
bool RegisterBackend(BackendEntry entry);

// All registered entries, sorted by name.
std::vector<const BackendEntry*> RegisteredBackends();

// Looks up by exact name; NotFound lists the registered names.
absl::StatusOr<const BackendEntry*> FindBackend(absl::string_view name);

// Creates a context of the named backend (probe first, so a missing device is
// a clear Unavailable).
absl::StatusOr<std::unique_ptr<Context>> CreateContext(absl::string_view name,
                                                       const TransportOptions& options);

// Backends allowed by `filter` that probe OK and meet `req`, best first:
// explicit filter order, then nominal bandwidth. Backends that fail to probe are
// skipped (logged once each). InvalidArgument for a filter naming an unknown
// backend; NotFound when nothing qualifies (the message lists why each was
// rejected).
absl::StatusOr<std::vector<Capabilities>> SelectBackends(const Requirements& req,
                                                         absl::string_view filter,
                                                         const TransportOptions& options);

}  // namespace transport
}  // namespace tokenrail

#define TR_REGISTER_TRANSPORT(id, ...)                              \
  static const bool tr_transport_registered_##id [[maybe_unused]] = \
      ::tokenrail::transport::RegisterBackend(::tokenrail::transport::BackendEntry __VA_ARGS__)

#endif  // TOKENRAIL_TRANSPORT_REGISTRY_H_
