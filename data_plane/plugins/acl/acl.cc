#include "data_plane/plugins/acl/acl.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

using config::v1::Consumer;

struct Decision {
  bool allowed = false;
  std::string groups_header;  // "a, b" in the order the memberships were created
};

class Acl final : public PluginHandler {
 public:
  StepStatus Access(RequestContext& request) const override {
    request.upstream_headers_removed.push_back("x-consumer-groups");
    if (request.consumer == nullptr) return RespondWithMessage(request, 401, "Unauthorized");
    auto it = decisions_.find(request.consumer);
    const Decision& decision = it != decisions_.end() ? it->second : no_groups_;
    if (!decision.allowed) {
      // Kong: a consumer without groups and no credential (the anonymous one) gets 401.
      if (it == decisions_.end() && request.credential_id.empty()) return RespondWithMessage(request, 401, "Unauthorized");
      return RespondWithMessage(request, 403, "You cannot consume this service");
    }
    if (!hide_groups_header_ && !decision.groups_header.empty()) {
      request.upstream_headers.emplace_back("X-Consumer-Groups", decision.groups_header);
    }
    return StepStatus::kContinue;
  }

  bool hide_groups_header_ = false;
  absl::flat_hash_map<const Consumer*, Decision> decisions_;  // consumers with at least one group
  Decision no_groups_;  // the decision for a consumer without groups
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileAcl(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  auto handler = std::make_unique<Acl>();
  handler->hide_groups_header_ = config["hide_groups_header"].get<bool>();
  const bool is_allow = config["allow"].is_array() && !config["allow"].empty();
  std::set<std::string> listed;
  for (const nlohmann::json& g : config[is_allow ? "allow" : "deny"]) listed.insert(g.get<std::string>());

  absl::flat_hash_map<absl::string_view, const Consumer*> consumers;
  for (const Consumer& c : context.snapshot.consumers) consumers.emplace(c.id(), &c);
  // Each consumer's groups, ordered by creation time then id (the snapshot's acls are by id).
  std::map<const Consumer*, std::vector<const config::v1::Acl*>> groups;
  for (const config::v1::Acl& a : context.snapshot.acls) {
    auto consumer = consumers.find(a.consumer_id());
    if (consumer != consumers.end()) groups[consumer->second].push_back(&a);
  }
  for (auto& [consumer, memberships] : groups) {
    std::sort(memberships.begin(), memberships.end(), [](const config::v1::Acl* a, const config::v1::Acl* b) {
      return a->created_at() != b->created_at() ? a->created_at() < b->created_at() : a->id() < b->id();
    });
    bool in_listed = false;
    std::vector<absl::string_view> names;
    for (const config::v1::Acl* a : memberships) {
      in_listed |= listed.count(a->group()) != 0;
      names.push_back(a->group());
    }
    Decision& decision = handler->decisions_[consumer];
    decision.allowed = is_allow ? in_listed : !in_listed;
    decision.groups_header = absl::StrJoin(names, ", ");
  }
  handler->no_groups_.allowed = !is_allow;
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
