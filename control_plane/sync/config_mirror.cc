#include "control_plane/sync/config_mirror.h"

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/config/entity_descriptor.h"

namespace portico::cp {
namespace {

using google::protobuf::Message;

// Calls f(kind, member) for every kind the store exports, with its list in a stored ConfigSet.
template <typename F>
void ForEachStoredKind(F&& f) {
  f("services", &ConfigSet::services);
  f("routes", &ConfigSet::routes);
  f("plugins", &ConfigSet::plugins);
  f("consumers", &ConfigSet::consumers);
  f("keyauth_credentials", &ConfigSet::keyauth_credentials);
  f("basicauth_credentials", &ConfigSet::basicauth_credentials);
  f("acls", &ConfigSet::acls);
  f("jwt_secrets", &ConfigSet::jwt_secrets);
  f("upstreams", &ConfigSet::upstreams);
  f("targets", &ConfigSet::targets);
  f("certificates", &ConfigSet::certificates);
  f("snis", &ConfigSet::snis);
  f("ca_certificates", &ConfigSet::ca_certificates);
}

template <typename Member>
using EntityOf = typename std::remove_reference_t<decltype(std::declval<ConfigSet&>().*std::declval<Member>())>::value_type;

// Appends a copy of `entity` to its kind's list in `set`; false when `kind` has no list there or
// `entity` is not of its message type.
bool AppendCopy(ConfigSet* set, absl::string_view kind, const Message& entity) {
  bool done = false;
  ForEachStoredKind([&](const char* name, auto member) {
    using Entity = EntityOf<decltype(member)>;
    if (done || kind != name || entity.GetDescriptor() != Entity::descriptor()) return;
    (set->*member).push_back(static_cast<const Entity&>(entity));
    done = true;
  });
  return done;
}

bool IsMirroredKind(absl::string_view kind) {
  bool found = false;
  ForEachStoredKind([&](const char* name, auto) { found = found || kind == name; });
  return found;
}

// The ids an entity's reference field holds: a foreign key's id, or an array of ids' elements.
void ReferencedIds(const EntityDescriptor& kind, const Message& entity, const FieldSpec& field,
                   std::vector<std::string>* out) {
  if (field.type == FieldType::kForeignKey) {
    if (std::optional<std::string> id = kind.Text(entity, field); id && !id->empty()) out->push_back(*std::move(id));
  } else if (field.type == FieldType::kArray) {
    for (std::string& id : kind.Strings(entity, field)) out->push_back(std::move(id));
  }
}

// Every (kind, id) `entity` references (registered kinds only).
std::vector<std::pair<std::string, std::string>> ReferencesOf(const EntityDescriptor& kind, const Message& entity) {
  std::vector<std::pair<std::string, std::string>> out;
  std::vector<std::string> ids;
  for (const FieldSpec& field : kind.fields()) {
    if (field.references.empty()) continue;
    ids.clear();
    ReferencedIds(kind, entity, field, &ids);
    for (std::string& id : ids) out.emplace_back(field.references, std::move(id));
  }
  return out;
}

const ResourceEntry* FindResource(const ResourceIndex& index, absl::string_view kind, absl::string_view id) {
  auto it = std::lower_bound(index.begin(), index.end(), std::make_pair(kind, id),
                             [](const ResourceEntry& e, const std::pair<absl::string_view, absl::string_view>& key) {
                               return e.kind != key.first ? e.kind < key.first : e.id < key.second;
                             });
  return it != index.end() && it->kind == kind && it->id == id ? &*it : nullptr;
}

size_t CountKind(const ResourceIndex& index, absl::string_view kind) {
  auto first = std::lower_bound(index.begin(), index.end(), kind,
                                [](const ResourceEntry& e, absl::string_view k) { return e.kind < k; });
  auto last = std::upper_bound(first, index.end(), kind,
                               [](absl::string_view k, const ResourceEntry& e) { return k < e.kind; });
  return static_cast<size_t>(last - first);
}

absl::Status Fallback(absl::string_view why) { return absl::FailedPreconditionError(why); }

}  // namespace

void ConfigMirror::Reset(ConfigSet stored, const ConfigSet& exported, std::shared_ptr<const BuiltSnapshot> built) {
  stored_.clear();
  ForEachStoredKind([&](const char* name, auto member) {
    using Entity = EntityOf<decltype(member)>;
    auto& list = stored.*member;
    Entities& entities = stored_[name];
    entities.reserve(list.size());
    for (Entity& e : list) {
      std::string id = e.id();
      entities[std::move(id)] = std::make_unique<Entity>(std::move(e));
    }
  });
  plugin_name_by_id_.clear();
  plugin_name_count_.clear();
  for (const config::v1::Plugin& p : exported.plugins) {
    plugin_name_by_id_[p.id()] = p.name();
    ++plugin_name_count_[p.name()];
  }
  built_ = std::move(built);
}

void ConfigMirror::Invalidate() {
  built_.reset();
  pending_.reset();
  stored_.clear();
  plugin_name_by_id_.clear();
  plugin_name_count_.clear();
}

const Message* ConfigMirror::Find(absl::string_view kind, absl::string_view id) const {
  auto k = stored_.find(kind);
  if (k == stored_.end()) return nullptr;
  auto e = k->second.find(id);
  return e == k->second.end() ? nullptr : e->second.get();
}

absl::StatusOr<ConfigMirror::Next> ConfigMirror::Apply(StoredChanges changes, const Clock& clock) {
  absl::StatusOr<Next> next = ApplyChanges(std::move(changes), clock);
  if (!next.ok()) Invalidate();  // frees the stored copy before the caller reads the whole config
  return next;
}

absl::StatusOr<ConfigMirror::Next> ConfigMirror::ApplyChanges(StoredChanges changes, const Clock& clock) {
  if (!valid()) return Fallback("no mirrored version");
  const std::shared_ptr<const BuiltSnapshot> base = std::move(built_);  // invalid until Commit
  pending_.reset();
  const ResourceIndex& old_index = *base->resources;
  if (!changes.covered || changes.version.epoch != base->version.epoch) return Fallback("changes not covered");
  if (!changes.corrupt.empty()) return Fallback("a changed row is corrupt");
  if (changes.version.version <= base->version.version) return Fallback("not a newer version");
  const EntityRegistry& registry = EntityRegistry::Default();

  // 1. The changes, applied to the stored entities. A service whose `enabled` flips changes
  // whether its routes and plugins are exported: that takes the whole config.
  struct Touched {
    const EntityDescriptor* kind;
    std::string id;
    bool deleted;
    bool existed;  // in the store before the changes
  };
  std::vector<Touched> touched;
  touched.reserve(changes.changes.size());
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> deleted_by_kind;
  absl::flat_hash_set<std::pair<std::string, std::string>> seen;
  for (ConfigChange& c : changes.changes) {
    if (c.kind == nullptr || !IsMirroredKind(c.kind->name()) || registry.Find(c.kind->name()) == nullptr) {
      return Fallback("a change of a kind the mirror does not hold");
    }
    if (!seen.emplace(c.kind->name(), c.id).second) return Fallback("a row changed twice in one read");
    const std::string& kind = c.kind->name();
    Entities& entities = stored_[kind];
    auto it = entities.find(c.id);
    if (kind == "services" && it != entities.end() && c.entity != nullptr &&
        static_cast<const config::v1::Service&>(*it->second).enabled() !=
            static_cast<const config::v1::Service&>(*c.entity).enabled()) {
      return Fallback("a service was enabled or disabled");
    }
    if (c.entity != nullptr) {
      if (c.entity->GetDescriptor() != c.kind->message_type()) return Fallback("a change of the wrong message type");
      const bool existed = it != entities.end();
      entities[c.id] = std::move(c.entity);
      touched.push_back({c.kind, std::move(c.id), false, existed});
    } else {
      const bool existed = it != entities.end();
      if (existed) entities.erase(it);
      deleted_by_kind[kind].insert(c.id);
      touched.push_back({c.kind, std::move(c.id), true, existed});
    }
  }

  // 2. Nothing that stays may reference what was deleted (the store's foreign keys refuse that,
  // but an array of ids is not a stored key).
  for (const auto& [kind_name, ids] : deleted_by_kind) {
    const EntityDescriptor* kind = registry.Find(kind_name);
    std::vector<EntityRegistry::Reference> refs = registry.ReferencesTo(*kind);
    std::vector<EntityRegistry::Reference> arrays = registry.ArrayReferencesTo(*kind);
    refs.insert(refs.end(), arrays.begin(), arrays.end());
    std::vector<std::string> values;
    for (const EntityRegistry::Reference& ref : refs) {
      auto holders = stored_.find(ref.kind->name());
      if (holders == stored_.end()) continue;
      for (const auto& [id, entity] : holders->second) {
        values.clear();
        ReferencedIds(*ref.kind, *entity, *ref.field, &values);
        for (const std::string& v : values) {
          if (ids.contains(v)) return Fallback(absl::StrCat("a deleted ", kind_name, " is still referenced"));
        }
      }
    }
  }

  // 3. The upserted entities with everything they reference (transitively: a plugin's route's
  // service decides whether the plugin is exported), exported, validated and serialized as a
  // full build does it.
  ConfigSet small;
  ChangedEntities upserted;
  absl::flat_hash_set<std::pair<std::string, std::string>> in_small;
  std::vector<std::pair<std::string, std::string>> queue;
  for (const Touched& t : touched) {
    if (t.deleted) continue;
    upserted.Add(t.kind->name(), t.id);
    queue.emplace_back(t.kind->name(), t.id);
  }
  while (!queue.empty()) {
    std::pair<std::string, std::string> key = std::move(queue.back());
    queue.pop_back();
    if (!in_small.insert(key).second) continue;
    const Message* entity = Find(key.first, key.second);
    if (entity == nullptr) continue;  // a dangling reference: ValidateConfigSet reports it
    const EntityDescriptor* kind = registry.Find(key.first);
    if (kind == nullptr || !AppendCopy(&small, key.first, *entity)) return Fallback("an entity outside a config set");
    for (auto& ref : ReferencesOf(*kind, *entity)) {
      if (!in_small.contains(ref)) queue.push_back(std::move(ref));
    }
  }
  const ConfigSet exported = ExportableConfig(std::move(small), base->version.epoch);
  if (absl::Status valid = ValidateConfigSet(exported, &upserted); !valid.ok()) {
    return absl::InvalidArgumentError(valid.message());
  }
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> small_index = BuildSnapshotIndex(exported, changes.version, clock);
  if (!small_index.ok()) return small_index.status();
  const ResourceIndex& new_resources = *(*small_index)->resources;

  // 4. What changed, resource by resource.
  ChangeList diff;
  diff.reserve(touched.size());
  for (const Touched& t : touched) {
    const std::string& kind = t.kind->name();
    const ResourceEntry* before = FindResource(old_index, kind, t.id);
    const ResourceEntry* after = t.deleted ? nullptr : FindResource(new_resources, kind, t.id);
    if (kind == "routes" && t.existed && !t.deleted && (before == nullptr) != (after == nullptr)) {
      return Fallback("a route moved between an enabled and a disabled service");  // its plugins follow it
    }
    if (before == nullptr && after == nullptr) continue;
    if (before != nullptr && after != nullptr && before->hash == after->hash) continue;
    ResourceChange change;
    change.kind = kind;
    change.id = t.id;
    if (after != nullptr) {
      change.body = after->body;
      change.hash = after->hash;
    }
    change.existed_before = before != nullptr;
    if (before != nullptr) change.hash_before = before->hash;
    diff.push_back(std::move(change));
  }
  std::sort(diff.begin(), diff.end(), [](const ResourceChange& a, const ResourceChange& b) {
    return a.kind != b.kind ? a.kind < b.kind : a.id < b.id;
  });

  // 5. The new index: the old one with the changes merged in.
  absl::StatusOr<std::shared_ptr<ResourceIndex>> resources = MergeChanges(old_index, diff);
  if (!resources.ok()) return resources.status();

  // 6. Plugin names of the new version.
  for (const ResourceChange& c : diff) {
    if (c.kind != "plugins") continue;
    if (auto it = plugin_name_by_id_.find(c.id); it != plugin_name_by_id_.end()) {
      if (--plugin_name_count_[it->second] == 0) plugin_name_count_.erase(it->second);
      plugin_name_by_id_.erase(it);
    }
    if (c.body == nullptr) continue;
    for (const config::v1::Plugin& p : exported.plugins) {
      if (p.id() != c.id) continue;
      plugin_name_by_id_[p.id()] = p.name();
      ++plugin_name_count_[p.name()];
    }
  }

  auto indexed = std::make_shared<BuiltSnapshot>();
  indexed->version = changes.version;
  indexed->version.hash = ConfigHashOf(**resources);
  indexed->service_count = CountKind(**resources, "services");
  indexed->route_count = CountKind(**resources, "routes");
  for (const auto& [name, count] : plugin_name_count_) indexed->plugin_names.push_back(name);
  std::sort(indexed->plugin_names.begin(), indexed->plugin_names.end());
  indexed->built_at = clock.NowSeconds();
  indexed->resources = *std::move(resources);
  pending_ = indexed;
  Next next;
  next.indexed = std::move(indexed);
  next.diff = std::move(diff);
  next.validated = upserted.size();
  return next;
}

void ConfigMirror::Commit(std::shared_ptr<const BuiltSnapshot> published) {
  if (pending_ == nullptr || published == nullptr || published->version != pending_->version) {
    Invalidate();
    return;
  }
  pending_.reset();
  built_ = std::move(published);
}

}  // namespace portico::cp
