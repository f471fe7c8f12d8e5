#include "transport/registry.h"

#include <algorithm>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status.h"

namespace tokenrail {
namespace transport {
namespace {

struct Registry {
  absl::Mutex mu;
  std::map<std::string, std::unique_ptr<BackendEntry>> entries ABSL_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static auto* registry = new Registry;  // Never destroyed: used by static init.
  return *registry;
}

std::string RegisteredNames() {
  std::vector<std::string> names;
  for (const BackendEntry* e : RegisteredBackends()) names.push_back(e->name);
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

// Returns the names the filter allows, in preference order.
absl::StatusOr<std::vector<std::string>> ApplyFilter(absl::string_view filter) {
  std::vector<std::string> all;
  for (const BackendEntry* e : RegisteredBackends()) all.push_back(e->name);
  const bool negate = absl::StartsWith(filter, "^");
  if (negate) filter.remove_prefix(1);
  std::vector<std::string> listed = absl::StrSplit(filter, ',', absl::SkipWhitespace());
  for (const std::string& name : listed) {
    if (std::find(all.begin(), all.end(), name) == all.end()) {
      return absl::InvalidArgumentError(absl::StrCat("transport filter names unknown backend '",
                                                     name, "' (registered: ", RegisteredNames(),
                                                     ")"));
    }
  }
  if (listed.empty()) return all;
  if (!negate) return listed;
  std::vector<std::string> out;
  for (const std::string& name : all) {
    if (std::find(listed.begin(), listed.end(), name) == listed.end()) out.push_back(name);
  }
  return out;
}

std::string Unmet(const Capabilities& caps, const Requirements& req) {
  std::vector<std::string> missing;
  if (req.intra_node && !caps.intra_node) missing.push_back("intra-node");
  if (req.inter_node && !caps.inter_node) missing.push_back("inter-node");
  if (req.gpu_memory && !caps.gpu_memory) missing.push_back("GPU memory");
  return absl::StrJoin(missing, ", ");
}

}  // namespace

bool RegisterBackend(BackendEntry entry) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  TR_CHECK(!r.entries.count(entry.name)) << "transport '" << entry.name << "' registered twice";
  std::string name = entry.name;
  r.entries.emplace(std::move(name), std::make_unique<BackendEntry>(std::move(entry)));
  return true;
}

std::vector<const BackendEntry*> RegisteredBackends() {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  std::vector<const BackendEntry*> out;
  for (const auto& [name, entry] : r.entries) out.push_back(entry.get());
  return out;
}

absl::StatusOr<const BackendEntry*> FindBackend(absl::string_view name) {
  Registry& r = GetRegistry();
  {
    absl::MutexLock lock(&r.mu);
    auto it = r.entries.find(std::string(name));
    if (it != r.entries.end()) return it->second.get();
  }
  return absl::NotFoundError(
      absl::StrCat("no transport backend '", name, "' (registered: ", RegisteredNames(), ")"));
}

absl::StatusOr<std::unique_ptr<Context>> CreateContext(absl::string_view name,
                                                       const TransportOptions& options) {
  TR_ASSIGN_OR_RETURN(const BackendEntry* entry, FindBackend(name));
  TR_RETURN_IF_ERROR(Annotate(entry->probe(options).status(), entry->name));
  return entry->create(options);
}

absl::StatusOr<std::vector<Capabilities>> SelectBackends(const Requirements& req,
                                                         absl::string_view filter,
                                                         const TransportOptions& options) {
  TR_ASSIGN_OR_RETURN(std::vector<std::string> allowed, ApplyFilter(filter));
  const bool explicit_order = !filter.empty() && filter[0] != '^';
  std::vector<Capabilities> out;
  std::vector<std::string> rejected;
  for (const std::string& name : allowed) {
    TR_ASSIGN_OR_RETURN(const BackendEntry* entry, FindBackend(name));
    absl::StatusOr<Capabilities> caps = entry->probe(options);
    if (!caps.ok()) {
      TR_LOG(INFO, "transport") << "skipping " << name << ": " << caps.status().message();
      rejected.push_back(absl::StrCat(name, ": ", caps.status().message()));
      continue;
    }
    const std::string unmet = Unmet(*caps, req);
    if (!unmet.empty()) {
      rejected.push_back(absl::StrCat(name, ": lacks ", unmet));
      continue;
    }
    out.push_back(*std::move(caps));
  }
  if (!explicit_order) {
    std::stable_sort(out.begin(), out.end(), [](const Capabilities& a, const Capabilities& b) {
      return a.bandwidth_gbytes > b.bandwidth_gbytes;
    });
  }
  if (out.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no transport backend qualifies (", absl::StrJoin(rejected, "; "), ")"));
  }
  return out;
}

}  // namespace transport
}  // namespace tokenrail
