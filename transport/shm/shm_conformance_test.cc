// The transport conformance suite, run against the shm backend.
#include "transport/conformance/conformance.h"

TR_TRANSPORT_CONFORMANCE(Shm, {.backend = "shm"});
// A two-slot ring: puts and messages queue locally and drain through progress.
TR_TRANSPORT_CONFORMANCE(ShmTinyRing, {.backend = "shm", .params = {{"ring_entries", "2"}}});
