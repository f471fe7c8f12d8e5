#include "tools/launch/netns.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "common/logging.h"
#include "common/status.h"
#include "tools/launch/janitor.h"
#include "tools/launch/subprocess.h"

namespace tokenrail {
namespace launch {
namespace {

constexpr absl::Duration kIpTimeout = absl::Seconds(30);

absl::Status RunIp(const std::vector<std::string>& args, absl::string_view batch) {
  TR_ASSIGN_OR_RETURN(std::string ip, IpBinary());
  std::vector<std::string> argv = {ip};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, batch, absl::Now() + kIpTimeout).status();
}

}  // namespace

absl::StatusOr<std::string> IpBinary() {
  const std::string path = GetEnv(CurrentEnvironment(), "PATH");
  return ResolveProgram("ip", absl::StrCat(path, ":/usr/sbin:/sbin:/usr/bin:/bin"));
}

absl::Status CheckNetnsPrivileges() {
  if (::geteuid() != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "--netns creates network namespaces and needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); "
        "this process runs as uid ",
        ::geteuid(),
        ". Run it as root (e.g. sudo), or drop --netns to run every node on "
        "loopback"));
  }
  TR_RETURN_IF_ERROR(IpBinary().status());
  return absl::OkStatus();
}

std::vector<std::string> NetnsCluster::NamespaceNames(absl::string_view prefix, int nodes) {
  std::vector<std::string> names = {absl::StrCat(prefix, "-sw")};
  for (int i = 0; i < nodes; ++i) names.push_back(absl::StrCat(prefix, "-n", i));
  return names;
}

std::string NetnsCluster::NodeAddress(int node) { return absl::StrCat("10.99.0.", node + 1); }

std::string NetnsCluster::node_path(int node) const {
  return absl::StrCat("/run/netns/", node_namespace(node));
}

absl::StatusOr<std::unique_ptr<NetnsCluster>> NetnsCluster::Create(absl::string_view prefix,
                                                                   int nodes, Janitor* janitor) {
  if (nodes < 1 || nodes > kMaxNodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--netns supports 1..", kMaxNodes, " nodes, got ", nodes));
  }
  TR_RETURN_IF_ERROR(CheckNetnsPrivileges());
  std::vector<std::string> names = NamespaceNames(prefix, nodes);
  for (const std::string& name : names) {
    if (name.size() > 200) return absl::InvalidArgumentError("namespace prefix too long");
    struct stat st;
    if (::stat(absl::StrCat("/run/netns/", name).c_str(), &st) == 0) {
      return absl::AlreadyExistsError(absl::StrCat("network namespace '", name, "' exists"));
    }
    if (janitor != nullptr) janitor->WatchNamespace(name);
  }
  // From here on the destructor deletes whatever exists.
  std::unique_ptr<NetnsCluster> cluster(new NetnsCluster(names, nodes));

  std::string batch;
  for (const std::string& name : names) absl::StrAppend(&batch, "netns add ", name, "\n");
  TR_RETURN_IF_ERROR(Annotate(RunIp({"-batch", "-"}, batch), "creating network namespaces"));

  // The switch: a bridge, and one veth per node whose peer lands in the
  // node's namespace as eth0. Interface names are per namespace, so short
  // fixed names never collide between runs.
  const std::string& sw = names[0];
  batch = "link add br0 type bridge\nlink set br0 up\n";
  for (int i = 0; i < nodes; ++i) {
    absl::StrAppend(&batch, "link add n", i, " type veth peer name ", kDevice, " netns ",
                    names[i + 1], "\n", "link set n", i, " master br0 up\n");
  }
  TR_RETURN_IF_ERROR(Annotate(RunIp({"-n", sw, "-batch", "-"}, batch), "building the switch"));

  for (int i = 0; i < nodes; ++i) {
    batch = absl::StrCat("addr add ", NodeAddress(i), "/24 dev ", kDevice, "\nlink set ", kDevice,
                         " up\n", "link set lo up\n");
    TR_RETURN_IF_ERROR(Annotate(RunIp({"-n", names[i + 1], "-batch", "-"}, batch),
                                absl::StrCat("configuring node ", i, " (", names[i + 1], ")")));
  }
  TR_VLOG(1, "launch") << "network namespaces " << absl::StrJoin(names, ",") << " ready";
  return cluster;
}

NetnsCluster::~NetnsCluster() {
  const absl::Status s = Destroy();
  if (!s.ok()) TR_LOG(WARNING, "launch") << "deleting network namespaces: " << s;
}

absl::Status NetnsCluster::Destroy() {
  if (destroyed_) return absl::OkStatus();
  TR_RETURN_IF_ERROR(DeleteNamespaces(names_));
  destroyed_ = true;
  return absl::OkStatus();
}

absl::Status DeleteNamespaces(const std::vector<std::string>& names) {
  std::string batch;
  std::vector<std::string> existing;
  for (const std::string& name : names) {
    struct stat st;
    if (::stat(absl::StrCat("/run/netns/", name).c_str(), &st) != 0) continue;
    absl::StrAppend(&batch, "netns del ", name, "\n");
    existing.push_back(name);
  }
  if (existing.empty()) return absl::OkStatus();
  // -force: keep deleting after one fails, so one bad name strands nothing.
  return Annotate(RunIp({"-force", "-batch", "-"}, batch),
                  absl::StrCat("deleting network namespaces ", absl::StrJoin(existing, ",")));
}

}  // namespace launch
}  // namespace tokenrail
