#include "tools/launch/netns.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tools/launch/run_dir.h"
#include "tools/launch/subprocess.h"

namespace tokenrail {
namespace launch {
namespace {

bool NamespaceExists(const std::string& name) {
  struct stat st;
  return ::stat(absl::StrCat("/run/netns/", name).c_str(), &st) == 0;
}

TEST(NetnsTest, NonRootGetsAClearError) {
  auto check = [] {
    const absl::Status s = CheckNetnsPrivileges();
    return absl::IsPermissionDenied(s) && s.message().find("needs root") != std::string::npos;
  };
  if (::geteuid() != 0) {
    EXPECT_TRUE(check()) << CheckNetnsPrivileges();
    return;
  }
  // As root: observe the refusal from a child that dropped to nobody.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    ::_exit(check() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: could not drop privileges; 1: wrong error";
}

TEST(NetnsTest, NodesReachEachOtherOnlyThroughTheSwitch) {
  if (::geteuid() != 0) GTEST_SKIP() << "network namespaces need root";
  auto id = RandomHex(3);
  ASSERT_TRUE(id.ok());
  const std::string prefix = absl::StrCat("trt", *id);
  auto cluster = NetnsCluster::Create(prefix, 2, nullptr);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  for (const std::string& name : NetnsCluster::NamespaceNames(prefix, 2)) {
    EXPECT_TRUE(NamespaceExists(name)) << name;
  }
  EXPECT_EQ(NetnsCluster::NodeAddress(1), "10.99.0.2");

  // A process spawned into node 0 sees its own eth0 address in /sys and
  // reaches node 1's listener over the bridge; the host namespace has no
  // such address.
  SpawnOptions o;
  o.env = {"PATH=/usr/bin:/bin:/usr/sbin:/sbin"};
  o.netns_path = (*cluster)->node_path(0);
  o.argv = {"/bin/sh", "-c", "ls /sys/class/net | tr '\\n' ' '; ip -4 -o addr show dev eth0"};
  auto p = Subprocess::Spawn(o);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE((*p)->WaitUntil(absl::Now() + absl::Seconds(10)));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read((*p)->stdout_fd().get(), buf, sizeof(buf))) > 0) out.append(buf, n);
  EXPECT_TRUE((*p)->succeeded()) << out;
  EXPECT_NE(out.find("eth0"), std::string::npos) << out;
  EXPECT_NE(out.find("10.99.0.1/24"), std::string::npos) << out;

  auto ip = IpBinary();
  ASSERT_TRUE(ip.ok());
  auto reach = RunCommand({*ip, "netns", "exec", (*cluster)->node_namespace(0), "/bin/bash", "-c",
                           "exec 3<>/dev/tcp/10.99.0.2/9 || exit 0"},
                          "", absl::Now() + absl::Seconds(10));
  // Nothing listens on port 9: a refusal (not a timeout) proves the route.
  ASSERT_TRUE(reach.ok()) << reach.status();
  EXPECT_NE(reach->find("refused"), std::string::npos) << *reach;

  ASSERT_TRUE((*cluster)->Destroy().ok());
  for (const std::string& name : NetnsCluster::NamespaceNames(prefix, 2)) {
    EXPECT_FALSE(NamespaceExists(name)) << name;
  }
}

TEST(NetnsTest, RefusesExistingNamesAndBadCounts) {
  if (::geteuid() != 0) GTEST_SKIP() << "network namespaces need root";
  EXPECT_TRUE(absl::IsInvalidArgument(NetnsCluster::Create("trx", 0, nullptr).status()));
  auto id = RandomHex(3);
  ASSERT_TRUE(id.ok());
  const std::string prefix = absl::StrCat("trt", *id);
  auto first = NetnsCluster::Create(prefix, 1, nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = NetnsCluster::Create(prefix, 1, nullptr);
  EXPECT_TRUE(absl::IsAlreadyExists(second.status())) << second.status();
  // The failed attempt must not have deleted the first cluster's namespaces.
  EXPECT_TRUE(NamespaceExists(absl::StrCat(prefix, "-n0")));
}

}  // namespace
}  // namespace launch
}  // namespace tokenrail
