// Registers the ucx backend under the name "ucx".
#include "common/status.h"
#include "transport/registry.h"
#include "transport/ucx/context.h"
#include "transport/ucx/options.h"
#include "transport/ucx/resources.h"

namespace tokenrail {
namespace transport {
namespace ucx {

absl::StatusOr<Capabilities> ProbeUcx(const TransportOptions& options) {
  TR_ASSIGN_OR_RETURN(UcxOptions o, ParseUcxOptions(options.params));
  o.name = options.name;
  TR_ASSIGN_OR_RETURN(UcpContextPtr ucp, CreateUcpContext(o, /*transport_overrides=*/false));
  TR_ASSIGN_OR_RETURN(ResourceReport report, ProbeResources(ucp.get()));
  return CapabilitiesFrom(report, o);
}

absl::StatusOr<std::unique_ptr<Context>> CreateUcxContext(const TransportOptions& options) {
  TR_ASSIGN_OR_RETURN(std::unique_ptr<UcxContext> ctx, UcxContext::Create(options));
  return std::unique_ptr<Context>(std::move(ctx));
}

namespace {

TR_REGISTER_TRANSPORT(
    ucx, {.name = "ucx",
          .description = "UCX (UCP): any fabric UCX drives (InfiniBand, RoCE, TCP, shared "
                         "memory). Puts are UCP RMA where both peers share a fabric with native "
                         "RMA, else active messages with zero-copy rendezvous; notifications "
                         "and control messages are active messages",
          .params_help = UcxOptionsHelp(),
          .probe = &ProbeUcx,
          .create = &CreateUcxContext});

}  // namespace
}  // namespace ucx
}  // namespace transport
}  // namespace tokenrail
