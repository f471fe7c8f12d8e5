// A rank process for the daemon tests: attaches from the environment
// (TOKENRAIL_SOCKET, TOKENRAIL_LOCAL_RANK) and runs one scenario.
//
//   test_rank ring BYTES ROUNDS   every rank puts a pattern to the next rank
//                                 ROUNDS times; checks the data and the order
//                                 of the notifications it receives
//   test_rank hang                attach, allocate, barrier, print "ready",
//                                 then sleep (to be killed)
//   test_rank expect_unavailable TEXT
//                                 attach, allocate, barrier, print "ready",
//                                 wait for a notification that never comes;
//                                 succeed when the wait fails with
//                                 Unavailable containing TEXT
// Exit 0 on success, 1 with a message on stderr otherwise.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "runtime/client/client.h"

namespace tokenrail {
namespace runtime {
namespace {

uint8_t Pattern(int src, int round, size_t i) {
  return static_cast<uint8_t>((src * 131 + round * 7 + i * 13) & 0xff);
}

absl::Status Ring(RankClient& rank, size_t bytes, int rounds) {
  const RankTopology& t = rank.topology();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  TR_ASSIGN_OR_RETURN(Region src, rank.AllocateSymmetric(bytes));
  TR_ASSIGN_OR_RETURN(Region dst, rank.AllocateSymmetric(bytes * rounds));
  TR_RETURN_IF_ERROR(rank.Barrier(deadline));
  const int next = (t.global_rank + 1) % t.world_size;
  const int prev = (t.global_rank + t.world_size - 1) % t.world_size;
  for (int r = 0; r < rounds; ++r) {
    auto* p = static_cast<uint8_t*>(src.data);
    for (size_t i = 0; i < bytes; ++i) p[i] = Pattern(t.global_rank, r, i);
    TR_ASSIGN_OR_RETURN(uint64_t id,
                        rank.Put(src, 0, next, dst, bytes * r, bytes, static_cast<uint32_t>(r)));
    TR_RETURN_IF_ERROR(rank.WaitComplete(id, deadline));  // src is rewritten next round
  }
  for (int r = 0; r < rounds; ++r) {
    TR_ASSIGN_OR_RETURN(RankNotification n, rank.WaitNotification(deadline));
    if (n.src_rank != prev || n.tag != static_cast<uint32_t>(r) || n.length != bytes) {
      return absl::InternalError(absl::StrCat("notification ", r, ": from ", n.src_rank, " tag ",
                                              n.tag, " length ", n.length, ", expected from ", prev,
                                              " tag ", r, " length ", bytes));
    }
    const auto* d = static_cast<const uint8_t*>(dst.data) + bytes * r;
    for (size_t i = 0; i < bytes; ++i) {
      if (d[i] != Pattern(prev, r, i)) {
        return absl::InternalError(absl::StrCat("round ", r, ": byte ", i, " is ", int{d[i]},
                                                ", expected ", int{Pattern(prev, r, i)}));
      }
    }
  }
  TR_RETURN_IF_ERROR(rank.Barrier(deadline));
  return rank.Detach();
}

absl::Status Run(int argc, char** argv) {
  if (argc < 2) return absl::InvalidArgumentError("usage: test_rank MODE ...");
  const std::string mode = argv[1];
  TR_ASSIGN_OR_RETURN(AttachOptions opts, AttachOptions::FromEnvironment());
  TR_ASSIGN_OR_RETURN(std::unique_ptr<RankClient> rank, RankClient::Attach(opts));
  if (mode == "ring" && argc == 4) {
    size_t bytes;
    int rounds;
    if (!absl::SimpleAtoi(argv[2], &bytes) || !absl::SimpleAtoi(argv[3], &rounds)) {
      return absl::InvalidArgumentError("ring BYTES ROUNDS");
    }
    return Ring(*rank, bytes, rounds);
  }
  TR_ASSIGN_OR_RETURN(Region r, rank->AllocateSymmetric(4096));
  (void)r;
  TR_RETURN_IF_ERROR(rank->Barrier(absl::Now() + absl::Seconds(60)));
  std::printf("ready\n");
  std::fflush(stdout);
  if (mode == "hang") {
    for (;;) ::pause();
  }
  if (mode == "expect_unavailable" && argc == 3) {
    absl::StatusOr<RankNotification> n = rank->WaitNotification(absl::Now() + absl::Seconds(60));
    if (n.ok()) return absl::InternalError("a notification arrived; expected a failure");
    if (n.status().code() != absl::StatusCode::kUnavailable ||
        n.status().message().find(argv[2]) == absl::string_view::npos) {
      return absl::InternalError(
          absl::StrCat("expected Unavailable naming '", argv[2], "', got ", n.status().ToString()));
    }
    std::printf("unavailable: %s\n", std::string(n.status().message()).c_str());
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown mode ", mode));
}

}  // namespace
}  // namespace runtime
}  // namespace tokenrail

int main(int argc, char** argv) {
  absl::Status s = tokenrail::runtime::Run(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "test_rank: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
