#pragma once
// Test helper: a Store that forwards every call to another one, for fakes that change a few
// calls (a change feed, a datastore that cannot be reached). Header-only.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "control_plane/store/store.h"
#include "google/protobuf/message.h"

namespace portico::cp {

class DelegatingStore : public Store {
 public:
  explicit DelegatingStore(Store& inner) : inner_(inner) {}

  ChangeWait WaitForChange(absl::Duration timeout) override { return inner_.WaitForChange(timeout); }
  const EntityRegistry& kinds() const override { return inner_.kinds(); }
  absl::StatusOr<EntityPtr> GetEntity(const EntityDescriptor& kind, absl::string_view id) override {
    return inner_.GetEntity(kind, id);
  }
  absl::StatusOr<EntityPtr> GetEntityByField(const EntityDescriptor& kind, absl::string_view field,
                                             absl::string_view value) override {
    return inner_.GetEntityByField(kind, field, value);
  }
  absl::StatusOr<ListPage<EntityPtr>> ListEntities(const EntityDescriptor& kind, const ListQuery& query) override {
    return inner_.ListEntities(kind, query);
  }
  absl::StatusOr<EntityPtr> WriteEntity(const EntityDescriptor& kind, const google::protobuf::Message& entity,
                                        WriteMode mode) override {
    return inner_.WriteEntity(kind, entity, mode);
  }
  absl::StatusOr<bool> DeleteEntity(const EntityDescriptor& kind, absl::string_view id) override {
    return inner_.DeleteEntity(kind, id);
  }
  absl::StatusOr<std::vector<EntityPtr>> WriteBatch(const std::vector<BatchStep>& steps) override {
    return inner_.WriteBatch(steps);
  }
  absl::StatusOr<std::vector<EntityPtr>> ReplaceConfig(const std::vector<KindRows>& kinds) override {
    return inner_.ReplaceConfig(kinds);
  }
  absl::StatusOr<StoredConfig> ReadConfig() override { return inner_.ReadConfig(); }
  absl::StatusOr<StoredChanges> ReadConfigChanges(uint64_t since, size_t max_changes) override {
    return inner_.ReadConfigChanges(since, max_changes);
  }
  uint64_t CurrentVersion() override { return inner_.CurrentVersion(); }
  std::string Epoch() const override { return inner_.Epoch(); }
  absl::Status Ping() override { return inner_.Ping(); }
  absl::StatusOr<std::vector<std::pair<int, std::string>>> AppliedMigrations() override {
    return inner_.AppliedMigrations();
  }
  absl::Status Close() override { return inner_.Close(); }
  absl::Status SaveDataPlanes(const std::vector<StoredDataPlane>& rows) override { return inner_.SaveDataPlanes(rows); }
  absl::StatusOr<std::vector<StoredDataPlane>> ListDataPlaneRows(int64_t now) override {
    return inner_.ListDataPlaneRows(now);
  }
  absl::StatusOr<int64_t> PurgeDataPlanes(int64_t now) override { return inner_.PurgeDataPlanes(now); }
  absl::StatusOr<ListPage<TaggedEntity>> ListTagged(const TagQuery& query) override { return inner_.ListTagged(query); }

 protected:
  Store& inner_;
};

}  // namespace portico::cp
