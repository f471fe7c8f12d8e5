// The transport conformance suite against the verbs backend. On hosts without
// an RDMA device every case skips with the probe's reason ("no RDMA device").
#include "transport/conformance/conformance.h"

TR_TRANSPORT_CONFORMANCE(Verbs, {.backend = "verbs"});
