// Registers the verbs backend with the transport registry.
#include "transport/registry.h"
#include "transport/verbs/context.h"
#include "transport/verbs/options.h"

namespace tokenrail {
namespace transport {
namespace verbs {
namespace {

TR_REGISTER_TRANSPORT(
    verbs, {.name = "verbs",
            .description = "InfiniBand/RoCE through libibverbs: RC queue pairs, RDMA WRITE WITH "
                           "IMMEDIATE puts, SEND control messages, credit flow control; TCP "
                           "wireup (listen=host:port)",
            .params_help = VerbsParamsHelp(),
            .probe = &ProbeVerbs,
            .create = &VerbsContext::Create});

}  // namespace
}  // namespace verbs
}  // namespace transport
}  // namespace tokenrail
