// The measured loops of `tokenrail-bench transport`, run by both sides of a
// Session with the same TestSpec.
//
// Latency (ping-pong): the leader puts `size` bytes + a notification into
// the follower's slot i % 2 and spins until the follower's answering put
// notifies it; one-way latency = RTT / 2 per timed iteration. Each side
// verifies the message it received after it has answered (or after the clock
// stopped), so checking never sits inside the measured round trip.
//
// Bandwidth: the sender keeps up to `window` puts outstanding (each with a
// notification), rotating over `slots` source and target slots; the receiver
// checks every notification (order, length, sampled stamps) and, once it has
// all of them, acks with a control message. Time = first post to ack. In the
// bidirectional mode both sides do both at once.
//
// Every put carries the pattern of (size, stream, iteration) (pattern.h);
// the receiver checks the first and the last message of a test byte by byte
// and samples all others: every stamp after a ping-pong, three stamps (first,
// last, rotating) per message in the bandwidth loops (VerifySpot). Data errors are recorded in
// SideResult::verify and the test runs to its end; transport errors (a failed endpoint, a missed
// deadline) abort with that status.
//
// Blocking: spins on the endpoint (sched_yield after a while), every wait
// bounded by the session timeout of no progress.
#ifndef TOKENRAIL_TOOLS_BENCH_LOOPS_H_
#define TOKENRAIL_TOOLS_BENCH_LOOPS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "tools/bench/plan.h"
#include "tools/bench/session.h"

namespace tokenrail {
namespace bench {

// Pattern stream of the puts one side sends in a mode.
uint32_t StreamId(Mode mode, bool from_leader);

// Runs one test on this side (the leader passes is_leader = true).
// `corrupt_iteration` >= 0 makes the leader corrupt that timed iteration's
// stamp (a testing aid); the follower passes -1.
absl::StatusOr<SideResult> RunTest(Session& session, const TestSpec& test, bool is_leader,
                                   int64_t corrupt_iteration);

}  // namespace bench
}  // namespace tokenrail

#endif  // TOKENRAIL_TOOLS_BENCH_LOOPS_H_
