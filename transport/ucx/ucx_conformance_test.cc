// The transport conformance suite (//transport/conformance) for the ucx
// backend, between two processes.
#include "transport/conformance/conformance.h"

// Active-message puts over TCP (auto mode picks them: TCP has no native RMA).
TR_TRANSPORT_CONFORMANCE(UcxTcp, {.backend = "ucx", .params = {{"tls", "tcp"}}});
// UCP RMA puts over the default transports (shared memory between processes
// of this host).
TR_TRANSPORT_CONFORMANCE(UcxRma, {.backend = "ucx", .params = {{"put_mode", "rma"}}});
