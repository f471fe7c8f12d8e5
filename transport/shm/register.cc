// Registers the shm backend under the name "shm".
#include "transport/registry.h"
#include "transport/shm/context.h"
#include "transport/shm/options.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

TR_REGISTER_TRANSPORT(
    shm, {.name = "shm",
          .description = "processes on one host: memfd regions mapped by the peer (fd passed "
                         "over a unix socket), one memcpy per put, lock-free notification and "
                         "message rings in shared memory",
          .params_help = ShmOptionsHelp(),
          .probe = &ProbeShm,
          .create = &CreateShmContext});

}  // namespace
}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
