// End-to-end tests of the shm backend between contexts of one process.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "transport/registry.h"
#include "transport/shm/options.h"
#include "transport/shm/socket.h"
#include "transport/shm/wire.h"
#include "transport/transport.h"

namespace tokenrail {
namespace transport {
namespace shm {
namespace {

#define ASSERT_OK(expr)                       \
  do {                                        \
    const absl::Status s_ = (expr);           \
    ASSERT_TRUE(s_.ok()) << #expr ": " << s_; \
  } while (0)

template <typename T>
T ValueOrDie(absl::StatusOr<T> v) {
  EXPECT_TRUE(v.ok()) << v.status();
  if (!v.ok()) std::abort();
  return *std::move(v);
}

absl::Time Soon(absl::Duration d = absl::Seconds(30)) { return absl::Now() + d; }

uint8_t PatternByte(uint64_t seed, size_t i) {
  return static_cast<uint8_t>((seed * 0x9E3779B97F4A7C15ull + i * 2654435761u) >> 24);
}
void Fill(void* p, size_t len, uint64_t seed) {
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < len; ++i) b[i] = PatternByte(seed, i);
}
bool Matches(const void* p, size_t len, uint64_t seed) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < len; ++i) {
    if (b[i] != PatternByte(seed, i)) return false;
  }
  return true;
}

class ShmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shm_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { ::rmdir(dir_.c_str()); }

  std::unique_ptr<Context> MakeContext(const std::string& name,
                                       std::map<std::string, std::string> params = {}) {
    TransportOptions o;
    o.name = name;
    o.params = std::move(params);
    if (!o.params.count("dir")) o.params["dir"] = dir_;
    return ValueOrDie(CreateContext("shm", o));
  }

  // Both sides call Connect, as peers in different processes would.
  static std::pair<std::unique_ptr<Endpoint>, std::unique_ptr<Endpoint>> ConnectPair(Context& a,
                                                                                     Context& b) {
    absl::StatusOr<std::unique_ptr<Endpoint>> eb;
    std::thread t([&] { eb = b.Connect(a.address(), Soon()); });
    absl::StatusOr<std::unique_ptr<Endpoint>> ea = a.Connect(b.address(), Soon());
    t.join();
    return {ValueOrDie(std::move(ea)), ValueOrDie(std::move(eb))};
  }

  std::string dir_;
};

TEST_F(ShmTest, RegistryEntryAndCapabilities) {
  const BackendEntry* entry = ValueOrDie(FindBackend("shm"));
  EXPECT_FALSE(entry->description.empty());
  EXPECT_EQ(entry->params_help.size(), ShmOptionsHelp().size());
  TransportOptions o;
  const Capabilities caps = ValueOrDie(entry->probe(o));
  EXPECT_EQ(caps.backend, "shm");
  EXPECT_TRUE(caps.intra_node);
  EXPECT_FALSE(caps.inter_node);
  EXPECT_TRUE(caps.native_rma);
  EXPECT_FALSE(caps.gpu_memory);
  EXPECT_EQ(caps.devices, std::vector<std::string>{"memfd"});
  EXPECT_GE(caps.max_message_size, 4096u);
  EXPECT_GE(caps.max_put_size, size_t{64} << 20);
  EXPECT_GT(caps.bandwidth_gbytes, 0);
  EXPECT_GT(caps.latency_us, 0);

  o.params["no_such_option"] = "1";
  EXPECT_EQ(entry->probe(o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateContext("shm", o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ShmTest, SocketIsPrivateAndRemovedWithTheContext) {
  std::unique_ptr<Context> a = MakeContext("a");
  const AddressInfo info = ValueOrDie(UnpackAddress(a->address()));
  EXPECT_EQ(info.name, "a");
  EXPECT_EQ(info.pid, static_cast<uint32_t>(::getpid()));
  EXPECT_FALSE(info.boot_id.empty());
  EXPECT_EQ(info.socket_path.rfind(dir_ + "/", 0), 0u) << info.socket_path;
  struct stat st;
  ASSERT_EQ(::stat(info.socket_path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  a.reset();
  EXPECT_NE(::stat(info.socket_path.c_str(), &st), 0) << "socket file left behind";
}

TEST_F(ShmTest, StaleSocketsOfDeadProcessesAreRemoved) {
  // A socket file nobody listens on, as a SIGKILLed process leaves behind.
  auto make_dead_socket = [&](const std::string& name, bool old) {
    const std::string path = dir_ + "/" + name;
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ::close(fd);
    if (old) {
      const timespec t[2] = {{::time(nullptr) - 120, 0}, {::time(nullptr) - 120, 0}};
      EXPECT_EQ(::utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW), 0);
    }
    return path;
  };
  const std::string dead_old = make_dead_socket("tokenrail-shm-1-dead.sock", true);
  const std::string dead_young = make_dead_socket("tokenrail-shm-2-young.sock", false);
  const std::string other = make_dead_socket("someone-else.sock", true);
  std::unique_ptr<Context> live = MakeContext("live");
  const std::string live_path = ValueOrDie(UnpackAddress(live->address())).socket_path;
  const timespec t[2] = {{::time(nullptr) - 120, 0}, {::time(nullptr) - 120, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, live_path.c_str(), t, AT_SYMLINK_NOFOLLOW), 0);

  std::unique_ptr<Context> next = MakeContext("next");  // sweeps the directory
  struct stat st;
  EXPECT_NE(::stat(dead_old.c_str(), &st), 0) << "old dead socket kept";
  EXPECT_EQ(::stat(dead_young.c_str(), &st), 0) << "a young socket may be mid-creation";
  EXPECT_EQ(::stat(other.c_str(), &st), 0) << "not ours to remove";
  EXPECT_EQ(::stat(live_path.c_str(), &st), 0) << "a live context's socket was removed";
  EXPECT_EQ(RemoveStaleSockets(dir_, "tokenrail-shm-"), 0);
  ::unlink(dead_young.c_str());
  ::unlink(other.c_str());
}

TEST_F(ShmTest, ConnectRejectsBadAddressesAtOnce) {
  std::unique_ptr<Context> a = MakeContext("a");
  AddressInfo elsewhere = ValueOrDie(UnpackAddress(a->address()));
  elsewhere.context_id ^= 1;
  elsewhere.boot_id = "00000000-0000-0000-0000-000000000000";
  const std::pair<const char*, std::string> bad[] = {
      {"own", a->address()},
      {"empty", ""},
      {"garbage", "garbage"},
      {"another host", PackAddress(elsewhere)},
      {"a remote key", PackKey(KeyInfo{1, 2, 3, 4})},
  };
  for (const auto& [what, address] : bad) {
    const absl::Time start = absl::Now();
    absl::Status s = a->Connect(address, Soon(absl::Seconds(10))).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
    EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << what;
  }
}

TEST_F(ShmTest, ConnectTimesOutNamingThePeerThenSucceedsWhenBothCall) {
  std::unique_ptr<Context> a = MakeContext("node0/rank0");
  std::unique_ptr<Context> b = MakeContext("node0/rank1");
  // Each side alone: one of them is the connecting side, the other the
  // accepting side; both must time out cleanly.
  for (Context* c : {a.get(), b.get()}) {
    Context* other = c == a.get() ? b.get() : a.get();
    absl::Status s = c->Connect(other->address(), Soon(absl::Milliseconds(200))).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    const std::string other_name = c == a.get() ? "node0/rank1" : "node0/rank0";
    EXPECT_NE(s.message().find(other_name), absl::string_view::npos) << s;
  }
  // Leftovers of the failed attempts must not confuse a real connection.
  auto [ab, ba] = ConnectPair(*a, *b);
  EXPECT_EQ(ab->peer_name(), "node0/rank1");
  EXPECT_EQ(ba->peer_name(), "node0/rank0");
  ASSERT_OK(ab->SendMessage("hi"));
  EXPECT_EQ(ValueOrDie(ba->WaitMessage(Soon())), "hi");
}

TEST_F(ShmTest, ConnectToADestroyedContextFailsByTheDeadline) {
  std::unique_ptr<Context> a = MakeContext("a");
  for (int i = 0; i < 8; ++i) {
    std::string gone = MakeContext("gone")->address();
    const absl::Time start = absl::Now();
    absl::Status s = a->Connect(gone, start + absl::Milliseconds(300)).status();
    // The connecting side (smaller id) finds nobody listening and fails at
    // once; the accepting side waits for a hello until the deadline.
    EXPECT_TRUE(absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s)) << s;
    EXPECT_LT(absl::Now() - start, absl::Seconds(2));
    EXPECT_NE(s.message().find("peer 'gone'"), absl::string_view::npos) << s;
  }
}

TEST_F(ShmTest, PutsDeliverDataBeforeTheirNotification) {
  std::unique_ptr<Context> a = MakeContext("a");
  std::unique_ptr<Context> b = MakeContext("b");
  // Allocated before Connect: announced during the handshake.
  std::unique_ptr<MemoryRegion> early = ValueOrDie(b->AllocateMemory(1 << 16, MemoryKind::kHost));
  auto [ab, ba] = ConnectPair(*a, *b);
  // Allocated after Connect: announced on the live endpoint.
  constexpr size_t kBig = (8 << 20) + 4096;
  std::unique_ptr<MemoryRegion> dst = ValueOrDie(b->AllocateMemory(kBig, MemoryKind::kHost));
  std::memset(dst->data(), 0xCC, dst->size());
  std::vector<uint8_t> buf(kBig);
  std::unique_ptr<MemoryRegion> src =
      ValueOrDie(a->RegisterMemory(buf.data(), buf.size(), MemoryKind::kHost));
  std::unique_ptr<RemoteRegion> remote = ValueOrDie(ab->UnpackRemoteKey(*dst->PackRemoteKey()));
  std::unique_ptr<RemoteRegion> remote_early =
      ValueOrDie(ab->UnpackRemoteKey(*early->PackRemoteKey()));
  EXPECT_EQ(remote->size(), kBig);
  EXPECT_EQ(remote_early->size(), 1u << 16);

  struct Case {
    size_t len, src_off, dst_off;
  };
  const Case cases[] = {{0, 0, 0},     {1, 0, 0},     {1, 3, 4097},       {63, 1, 65},
                        {4096, 7, 13}, {65537, 5, 3}, {8 << 20, 1, 4095}, {0, kBig, kBig}};
  Ticket last = 0;
  uint32_t imm = 1000;
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("len ", c.len, " src_off ", c.src_off, " dst_off ", c.dst_off));
    Fill(buf.data() + c.src_off, c.len, imm);
    const Ticket t = ValueOrDie(ab->Put(*src, c.src_off, *remote, c.dst_off, c.len, imm));
    EXPECT_EQ(t, last + 1) << "tickets are consecutive from 1";
    last = t;
    EXPECT_TRUE(ValueOrDie(ab->IsComplete(t)));
    ASSERT_OK(ab->WaitComplete(t, Soon()));
    const Notification n = ValueOrDie(ba->WaitNotification(Soon()));
    EXPECT_EQ(n.imm, imm);
    EXPECT_EQ(n.length, c.len);
    const auto* d = static_cast<const uint8_t*>(dst->data());
    EXPECT_TRUE(Matches(d + c.dst_off, c.len, imm));
    if (c.dst_off > 0) {
      EXPECT_EQ(d[c.dst_off - 1], 0xCC) << "byte before the range";
    }
    if (c.dst_off + c.len < kBig) {
      EXPECT_EQ(d[c.dst_off + c.len], 0xCC) << "byte after";
    }
    std::memset(dst->data(), 0xCC, dst->size());
    ++imm;
  }
  ASSERT_OK(ab->Put(*src, 0, *remote_early, 100, 200, 7).status());
  EXPECT_EQ(ValueOrDie(ba->WaitNotification(Soon())).imm, 7u);
  ASSERT_OK(ab->Flush(Soon()));
  Notification none;
  EXPECT_EQ(ValueOrDie(ba->PollNotifications(&none, 1)), 0u);
}

TEST_F(ShmTest, OutstandingPutsBeyondARingOfFourStayInOrder) {
  std::unique_ptr<Context> a = MakeContext("a", {{"ring_entries", "4"}});
  std::unique_ptr<Context> b = MakeContext("b", {{"ring_entries", "4"}});
  auto [ab, ba] = ConnectPair(*a, *b);
  constexpr uint32_t kCount = 2000;
  constexpr size_t kLen = 100, kStride = 128;
  std::unique_ptr<MemoryRegion> dst =
      ValueOrDie(b->AllocateMemory(kCount * kStride, MemoryKind::kHost));
  std::vector<uint8_t> buf(kCount * kLen);
  std::unique_ptr<MemoryRegion> src =
      ValueOrDie(a->RegisterMemory(buf.data(), buf.size(), MemoryKind::kHost));
  std::unique_ptr<RemoteRegion> remote = ValueOrDie(ab->UnpackRemoteKey(*dst->PackRemoteKey()));
  for (uint32_t i = 0; i < kCount; ++i) {
    Fill(buf.data() + i * kLen, kLen, i);
    ASSERT_EQ(ValueOrDie(ab->Put(*src, i * kLen, *remote, i * kStride, kLen, i)), i + 1);
  }
  // Nobody consumes: Flush cannot finish, but every put is locally complete.
  EXPECT_EQ(ab->Flush(Soon(absl::Milliseconds(50))).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(ValueOrDie(ab->IsComplete(kCount)));
  // One thread drives both sides: the sender's progress moves its queue.
  uint32_t next = 0;
  Notification batch[3];
  while (next < kCount) {
    ASSERT_OK(a->Progress());
    const size_t got = ValueOrDie(ba->PollNotifications(batch, 3));
    for (size_t k = 0; k < got; ++k, ++next) {
      ASSERT_EQ(batch[k].imm, next);
      ASSERT_EQ(batch[k].length, kLen);
      ASSERT_TRUE(Matches(static_cast<uint8_t*>(dst->data()) + next * kStride, kLen, next));
    }
  }
  ASSERT_OK(ab->Flush(Soon()));
}

TEST_F(ShmTest, ConcurrentSenderAndReceiverThreads) {
  std::unique_ptr<Context> a = MakeContext("a", {{"ring_entries", "64"}});
  std::unique_ptr<Context> b = MakeContext("b", {{"ring_entries", "64"}});
  auto [ab, ba] = ConnectPair(*a, *b);
  constexpr uint32_t kCount = 50000;
  constexpr size_t kLen = 24;
  std::unique_ptr<MemoryRegion> dst =
      ValueOrDie(b->AllocateMemory(kCount * kLen, MemoryKind::kHost));
  std::vector<uint8_t> buf(kCount * kLen);
  for (uint32_t i = 0; i < kCount; ++i) Fill(buf.data() + i * kLen, kLen, i);
  std::unique_ptr<MemoryRegion> src =
      ValueOrDie(a->RegisterMemory(buf.data(), buf.size(), MemoryKind::kHost));
  std::unique_ptr<RemoteRegion> remote = ValueOrDie(ab->UnpackRemoteKey(*dst->PackRemoteKey()));
  std::thread receiver([&, ba = ba.get()] {
    for (uint32_t i = 0; i < kCount; ++i) {
      absl::StatusOr<Notification> n = ba->WaitNotification(Soon());
      ASSERT_TRUE(n.ok()) << n.status();
      ASSERT_EQ(n->imm, i);
      ASSERT_TRUE(Matches(static_cast<uint8_t*>(dst->data()) + i * kLen, kLen, i))
          << "data of put " << i << " not visible with its notification";
    }
    absl::StatusOr<std::string> m = ba->WaitMessage(Soon());
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(*m, "done");
  });
  for (uint32_t i = 0; i < kCount; ++i) {
    ASSERT_OK(ab->Put(*src, i * kLen, *remote, i * kLen, kLen, i).status());
  }
  ASSERT_OK(ab->Flush(Soon()));
  ASSERT_OK(ab->SendMessage("done"));
  receiver.join();
}

TEST_F(ShmTest, MessagesOfAllSizesArriveInOrderEvenWhenQueued) {
  std::unique_ptr<Context> a = MakeContext("a");
  std::unique_ptr<Context> b = MakeContext("b");
  auto [ab, ba] = ConnectPair(*a, *b);
  const size_t max = a->capabilities().max_message_size;
  EXPECT_EQ(ab->SendMessage(std::string(max + 1, 'x')).code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::string> sent;
  for (uint32_t i = 0; i < 40; ++i) {
    const size_t size = i == 0 ? 0 : i % 3 == 0 ? max : (i * 7919) % max;
    std::string m(size, '\0');
    Fill(m.data(), size, i);
    sent.push_back(m);
    // The 256 KiB ring holds three maximum-size messages; the rest queue.
    ASSERT_OK(ab->SendMessage(m));
  }
  std::string out;
  size_t next = 0;
  while (next < sent.size()) {
    ASSERT_OK(a->Progress());
    if (ValueOrDie(ba->PollMessage(&out))) {
      ASSERT_EQ(out, sent[next]) << "message " << next;
      ++next;
    }
  }
  EXPECT_FALSE(ValueOrDie(ba->PollMessage(&out)));
  // And the other way.
  ASSERT_OK(ba->SendMessage("pong"));
  EXPECT_EQ(ValueOrDie(ab->WaitMessage(Soon())), "pong");
  EXPECT_EQ(ab->WaitMessage(Soon(absl::Milliseconds(20))).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_OK(ab->status());
}

TEST_F(ShmTest, KeysAreValidatedAgainstThePeer) {
  std::unique_ptr<Context> a = MakeContext("a");
  std::unique_ptr<Context> b = MakeContext("b");
  std::unique_ptr<Context> c = MakeContext("c");
  auto [ab, ba] = ConnectPair(*a, *b);
  auto [ac, ca] = ConnectPair(*a, *c);
  std::unique_ptr<MemoryRegion> on_b = ValueOrDie(b->AllocateMemory(4096, MemoryKind::kHost));
  std::unique_ptr<MemoryRegion> on_c = ValueOrDie(c->AllocateMemory(4096, MemoryKind::kHost));
  std::unique_ptr<MemoryRegion> gone = ValueOrDie(b->AllocateMemory(4096, MemoryKind::kHost));
  const std::string key_b = *on_b->PackRemoteKey();
  const std::string key_gone = *gone->PackRemoteKey();
  gone.reset();

  std::vector<uint8_t> plain(64);
  std::unique_ptr<MemoryRegion> registered =
      ValueOrDie(b->RegisterMemory(plain.data(), plain.size(), MemoryKind::kHost));
  absl::StatusOr<std::string> no_key = registered->PackRemoteKey();
  EXPECT_EQ(no_key.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(no_key.status().message().find("AllocateMemory"), absl::string_view::npos);

  KeyInfo forged = ValueOrDie(UnpackKey(key_b));
  KeyInfo wrong_cookie = forged;
  wrong_cookie.cookie ^= 1;
  KeyInfo wrong_size = forged;
  wrong_size.size = 1 << 20;
  KeyInfo unknown_id = forged;
  unknown_id.region_id = 1000;
  std::string corrupt = key_b;
  corrupt[corrupt.size() / 2] ^= 0x10;
  const std::pair<const char*, std::string> bad[] = {
      {"corrupt", corrupt},
      {"truncated", key_b.substr(0, key_b.size() - 3)},
      {"empty", ""},
      {"an address", b->address()},
      {"stale", key_gone},
      {"other context's", *on_c->PackRemoteKey()},
      {"wrong cookie", PackKey(wrong_cookie)},
      {"wrong size", PackKey(wrong_size)},
      {"never allocated", PackKey(unknown_id)},
  };
  for (const auto& [what, key] : bad) {
    absl::Status s = ab->UnpackRemoteKey(key).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
  }
  ASSERT_OK(ab->status());
  // The right key on the right endpoint works, on another endpoint it does not.
  std::unique_ptr<RemoteRegion> good = ValueOrDie(ab->UnpackRemoteKey(key_b));
  EXPECT_EQ(ac->UnpackRemoteKey(key_b).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> buf(64, 1);
  std::unique_ptr<MemoryRegion> src =
      ValueOrDie(a->RegisterMemory(buf.data(), buf.size(), MemoryKind::kHost));
  EXPECT_EQ(ac->Put(*src, 0, *good, 0, 8, 0).status().code(), absl::StatusCode::kInvalidArgument)
      << "a remote region belongs to the endpoint that unpacked it";
}

TEST_F(ShmTest, PutToARegionThePeerReleasedIsRefused) {
  std::unique_ptr<Context> a = MakeContext("a");
  std::unique_ptr<Context> b = MakeContext("b");
  auto [ab, ba] = ConnectPair(*a, *b);
  std::unique_ptr<MemoryRegion> dst = ValueOrDie(b->AllocateMemory(4096, MemoryKind::kHost));
  std::unique_ptr<MemoryRegion> keep = ValueOrDie(b->AllocateMemory(4096, MemoryKind::kHost));
  std::unique_ptr<RemoteRegion> remote = ValueOrDie(ab->UnpackRemoteKey(*dst->PackRemoteKey()));
  std::unique_ptr<RemoteRegion> remote_keep =
      ValueOrDie(ab->UnpackRemoteKey(*keep->PackRemoteKey()));
  std::vector<uint8_t> buf(4096, 9);
  std::unique_ptr<MemoryRegion> src =
      ValueOrDie(a->RegisterMemory(buf.data(), buf.size(), MemoryKind::kHost));
  ASSERT_OK(ab->Put(*src, 0, *remote, 0, 4096, 1).status());
  dst.reset();  // no progress on either side in between
  absl::Status s = ab->Put(*src, 0, *remote, 0, 4096, 2).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  ASSERT_OK(ab->Put(*src, 0, *remote_keep, 0, 4096, 3).status());
  EXPECT_EQ(ValueOrDie(ba->WaitNotification(Soon())).imm, 1u);
  EXPECT_EQ(ValueOrDie(ba->WaitNotification(Soon())).imm, 3u);
}

TEST_F(ShmTest, BadPutsAndCallsAreInvalidAndPostNothing) {
  std::unique_ptr<Context> a = MakeContext("a");
  std::unique_ptr<Context> b = MakeContext("b");
  auto [ab, ba] = ConnectPair(*a, *b);
  std::unique_ptr<MemoryRegion> dst = ValueOrDie(b->AllocateMemory(4096, MemoryKind::kHost));
  std::memset(dst->data(), 0xAB, 4096);
  std::unique_ptr<RemoteRegion> remote = ValueOrDie(ab->UnpackRemoteKey(*dst->PackRemoteKey()));
  std::vector<uint8_t> buf(8192, 0xEE);
  std::unique_ptr<MemoryRegion> src =
      ValueOrDie(a->RegisterMemory(buf.data(), buf.size(), MemoryKind::kHost));
  constexpr size_t kHuge = ~size_t{0};
  struct Bad {
    size_t src_off, dst_off, len;
  };
  const Bad bad[] = {{0, 4000, 200}, {0, 4097, 0},  {0, kHuge - 10, 20}, {8000, 0, 400},
                     {kHuge, 0, 1},  {0, 1, kHuge}, {8193, 0, 0},        {0, 0, 4097}};
  for (const Bad& p : bad) {
    absl::Status s = ab->Put(*src, p.src_off, *remote, p.dst_off, p.len, 5).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
        << p.src_off << " " << p.dst_off << " " << p.len << ": " << s;
  }
  Notification n;
  EXPECT_EQ(ValueOrDie(ba->PollNotifications(&n, 1)), 0u) << "a refused put notified";
  for (size_t i = 0; i < 4096; ++i) ASSERT_EQ(static_cast<uint8_t*>(dst->data())[i], 0xAB);
  EXPECT_EQ(ab->IsComplete(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ab->IsComplete(1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ab->WaitComplete(7, Soon()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ab->PollNotifications(nullptr, 4).status().code(), absl::StatusCode::kInvalidArgument);
  // Edges that are valid: an empty put at the very end of both regions.
  EXPECT_EQ(ValueOrDie(ab->Put(*src, 8192, *remote, 4096, 0, 6)), 1u);
  EXPECT_EQ(ValueOrDie(ba->WaitNotification(Soon())).length, 0u);

  char fake[64];
  EXPECT_EQ(a->RegisterMemory(fake, sizeof(fake), MemoryKind::kCuda).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(a->AllocateMemory(64, MemoryKind::kCuda).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(a->RegisterMemory(nullptr, 64, MemoryKind::kHost).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->AllocateMemory(0, MemoryKind::kHost).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_OK(ab->status());
}

TEST_F(ShmTest, ClosedPeerEndpointFailsTheSurvivorStickily) {
  std::unique_ptr<Context> a = MakeContext("a");
  std::unique_ptr<Context> b = MakeContext("peer-b");
  auto [ab, ba] = ConnectPair(*a, *b);
  std::unique_ptr<MemoryRegion> dst = ValueOrDie(b->AllocateMemory(4096, MemoryKind::kHost));
  std::unique_ptr<RemoteRegion> remote = ValueOrDie(ab->UnpackRemoteKey(*dst->PackRemoteKey()));
  std::vector<uint8_t> buf(64);
  std::unique_ptr<MemoryRegion> src =
      ValueOrDie(a->RegisterMemory(buf.data(), buf.size(), MemoryKind::kHost));
  ba.reset();
  const absl::Time start = absl::Now();
  absl::Status s = ab->WaitNotification(Soon()).status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("peer 'peer-b'"), absl::string_view::npos) << s;
  EXPECT_EQ(ab->status(), s);
  EXPECT_EQ(ab->Put(*src, 0, *remote, 0, 8, 0).status(), s);
  EXPECT_EQ(ab->Flush(Soon()), s);
  EXPECT_EQ(ab->SendMessage("x"), s);
  EXPECT_EQ(ab->WaitMessage(Soon()).status(), s);
  EXPECT_EQ(ab->PollNotifications(nullptr, 0).status(), s);
  EXPECT_EQ(ab->UnpackRemoteKey(*dst->PackRemoteKey()).status(), s);
  EXPECT_EQ(ab->IsComplete(1).status(), s);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST_F(ShmTest, SocketPathLongerThanSunPathWorks) {
  std::string deep = dir_ + "/" + std::string(120, 'd');
  ASSERT_EQ(::mkdir(deep.c_str(), 0700), 0);
  {
    std::unique_ptr<Context> a = MakeContext("a", {{"dir", deep}});
    std::unique_ptr<Context> b = MakeContext("b", {{"dir", deep}});
    auto [ab, ba] = ConnectPair(*a, *b);
    ASSERT_OK(ba->SendMessage("through /proc/self/fd"));
    EXPECT_EQ(ValueOrDie(ab->WaitMessage(Soon())), "through /proc/self/fd");
  }
  EXPECT_EQ(::rmdir(deep.c_str()), 0) << "socket files left in " << deep;
}

TEST_F(ShmTest, WaitsHonorTheirDeadlineAndLeaveTheEndpointUsable) {
  std::unique_ptr<Context> a = MakeContext("a", {{"spin_us", "0"}});
  std::unique_ptr<Context> b = MakeContext("b");
  auto [ab, ba] = ConnectPair(*a, *b);
  const absl::Time start = absl::Now();
  EXPECT_EQ(ab->WaitNotification(start + absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(50));
  EXPECT_LT(took, absl::Seconds(5)) << "a 50 ms wait must not run on";
  EXPECT_EQ(ab->WaitMessage(absl::InfinitePast()).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_OK(ab->status());
  ASSERT_OK(ba->SendMessage("still fine"));
  EXPECT_EQ(ValueOrDie(ab->WaitMessage(Soon())), "still fine");
}

}  // namespace
}  // namespace shm
}  // namespace transport
}  // namespace tokenrail
