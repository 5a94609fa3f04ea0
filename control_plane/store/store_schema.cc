#include "control_plane/store/store_schema.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "google/protobuf/message.h"

namespace portico::cp {

std::string ColumnOf(const FieldSpec& field) {
  return field.type == FieldType::kForeignKey ? field.name + "_id" : field.name;
}

std::string TagsColumn(const std::vector<std::string>& tags) {
  if (tags.empty()) return "";
  std::string out(1, kTagSeparator);
  for (const auto& t : tags) absl::StrAppend(&out, t, std::string(1, kTagSeparator));
  return out;
}

std::string TagNeedle(absl::string_view tag) {
  return absl::StrCat(std::string(1, kTagSeparator), tag, std::string(1, kTagSeparator));
}

EntityTables DeriveEntityTables(const EntityRegistry& kinds, absl::string_view p) {
  EntityTables tables;
  for (const EntityDescriptor* kind : kinds.kinds()) {
    EntityTable& table = tables[kind];
    table.kind = kind;
    for (const FieldSpec* f : kind->unique_fields()) table.keys.push_back(f);
    for (const FieldSpec* f : kind->stored_foreign_keys()) table.keys.push_back(f);
    std::vector<std::string> key_columns, placeholders, assignments;
    for (size_t i = 0; i < table.keys.size(); ++i) {
      key_columns.push_back(ColumnOf(*table.keys[i]));
      placeholders.push_back(absl::StrCat(p, i + 6));
      assignments.push_back(absl::StrCat(key_columns.back(), " = ", p, i + 6));
    }
    if (kind->has_cache_key()) {
      const size_t i = table.keys.size();
      key_columns.push_back(kCacheKeyColumn);
      placeholders.push_back(absl::StrCat(p, i + 6));
      assignments.push_back(absl::StrCat(kCacheKeyColumn, " = ", p, i + 6));
    }
    table.insert_sql = absl::StrCat("INSERT INTO ", kind->name(), " (id, created_at, updated_at, tags, entity",
                                    key_columns.empty() ? "" : ", ", absl::StrJoin(key_columns, ", "), ") VALUES (",
                                    p, 1, ", ", p, 2, ", ", p, 3, ", ", p, 4, ", ", p, 5,
                                    placeholders.empty() ? "" : ", ", absl::StrJoin(placeholders, ", "), ")");
    table.update_sql = absl::StrCat("UPDATE ", kind->name(), " SET created_at = ", p, 2, ", updated_at = ", p, 3,
                                    ", tags = ", p, 4, ", entity = ", p, 5, assignments.empty() ? "" : ", ",
                                    absl::StrJoin(assignments, ", "), " WHERE id = ", p, 1);
    for (const EntityRegistry::Reference& ref : kinds.ReferencesTo(*kind)) {
      if (ref.field->on_delete == OnDelete::kRestrict) table.restricted_by.push_back(ref);
    }
  }
  return tables;
}

absl::StatusOr<const EntityTable*> FindEntityTable(const EntityTables& tables, const EntityDescriptor& kind) {
  auto it = tables.find(&kind);
  if (it == tables.end()) return absl::InvalidArgumentError(absl::StrCat("entity kind '", kind.name(), "' is not in this store"));
  return &it->second;
}

absl::Status CheckEntityColumns(const EntityTable& table, const std::set<std::string>& have,
                                absl::string_view store_file) {
  std::vector<std::string> need = {"id", "created_at", "updated_at", "tags", "entity"};
  for (const FieldSpec* key : table.keys) need.push_back(ColumnOf(*key));
  for (const std::string& column : need) {
    if (have.count(column) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table ", table.kind->name(), " has no column ", column,
          ": a change of an entity kind's keys needs a schema migration (", store_file, ")"));
    }
  }
  return absl::OkStatus();
}

std::string EntityIndexSql(const EntityDescriptor& kind) {
  const std::string& t = kind.name();
  std::string sql;
  for (const FieldSpec* f : kind.stored_foreign_keys()) {
    absl::StrAppend(&sql, "CREATE INDEX IF NOT EXISTS ", t, "_", ColumnOf(*f), "_idx ON ", t, " (", ColumnOf(*f), ");\n");
  }
  absl::StrAppend(&sql, "CREATE INDEX IF NOT EXISTS ", t, "_created_at_idx ON ", t, " (created_at);\n");
  return sql;
}

absl::StatusOr<std::string> LookupColumn(const EntityDescriptor& kind, absl::string_view field) {
  if (field == "id") return std::string("id");
  if (field == kCacheKeyColumn && kind.has_cache_key()) return std::string(kCacheKeyColumn);  // value: CacheKey text
  if (const FieldSpec* spec = kind.field(field); spec != nullptr && spec->unique) return ColumnOf(*spec);
  return absl::InvalidArgumentError(absl::StrCat("'", field, "' is not a unique field of ", kind.name()));
}

absl::StatusOr<const FieldSpec*> ParentForeignKey(const EntityDescriptor& kind, const ListQuery& query) {
  if (query.parent_field.empty()) return nullptr;
  const FieldSpec* fk = kind.field(query.parent_field);
  if (fk == nullptr || fk->type != FieldType::kForeignKey || fk->references.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", query.parent_field, "' is not a foreign key of ", kind.name()));
  }
  return fk;
}

absl::Status AppendEntityRow(const EntityDescriptor& kind, absl::string_view id, absl::string_view bytes,
                             std::vector<CorruptRow>* corrupt, std::vector<EntityPtr>* out) {
  EntityPtr entity = kind.New();
  if (!entity->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    if (corrupt == nullptr) return CorruptRowError(kind.name(), std::string(id));
    corrupt->push_back(CorruptRow{kind.name(), std::string(id), kCorruptEntityReason});
    return absl::OkStatus();
  }
  out->push_back(std::move(entity));
  return absl::OkStatus();
}

void LogSkippedRows(const std::vector<CorruptRow>& skipped) {
  for (const CorruptRow& row : skipped) {
    const std::string id = absl::CHexEscape(row.id);
    PORTICO_LOG(kError, "store", "list: skipped corrupt ", row.kind, " row ", id, " (", row.error,
                "); repair it with DELETE or PUT /", row.kind, "/", id);
  }
}

bool HasTagList(const EntityDescriptor& kind) {
  const FieldSpec* tags = kind.field("tags");
  return tags != nullptr && (tags->type == FieldType::kSet || tags->type == FieldType::kArray);
}

void AppendTagRows(const TagQuery& query, const std::string& id, const std::string& kind, absl::string_view tags,
                   size_t size, std::vector<TaggedEntity>* rows) {
  // Rows of the cursor's entity (or of an equal id in an earlier kind) were on earlier pages.
  const bool cursor_entity = id == query.after_entity_id && kind == query.after_entity_name;
  if (id == query.after_entity_id && !query.after_entity_id.empty() && kind < query.after_entity_name) return;
  int ordinality = 0;
  for (absl::string_view tag : absl::StrSplit(tags, kTagSeparator, absl::SkipEmpty())) {
    ++ordinality;
    if (cursor_entity && ordinality <= query.after_ordinality) continue;
    if (!query.tag.empty() && tag != query.tag) continue;
    rows->push_back(TaggedEntity{std::string(tag), kind, id, ordinality});
    if (rows->size() > size) break;
  }
}

std::string ChangeTriggerName(const EntityDescriptor& kind) { return absl::StrCat(kind.name(), "_config_changes"); }

std::optional<uint64_t> ChangeLogPruneUpTo(uint64_t version) {
  const ChangeLogRetention retention = GetChangeLogRetention();
  if (version % retention.prune_every != 0 || version <= retention.keep_versions) return std::nullopt;
  return version - retention.keep_versions;
}

std::vector<const EntityDescriptor*> ChangedKinds(const EntityRegistry& kinds, const std::set<std::string>& names) {
  std::vector<const EntityDescriptor*> out;
  for (const EntityDescriptor* kind : kinds.kinds()) {
    if (kind->exported() && names.count(kind->name()) > 0) out.push_back(kind);
  }
  return out;
}

void AppendChange(const EntityDescriptor& kind, absl::string_view id, const absl::string_view* entity,
                  StoredChanges* out) {
  ConfigChange change{&kind, std::string(id), nullptr};
  if (entity != nullptr) {
    change.entity = kind.New();
    if (!change.entity->ParseFromArray(entity->data(), static_cast<int>(entity->size()))) {
      out->corrupt.push_back(CorruptRow{kind.name(), std::string(id), kCorruptEntityReason});
      return;
    }
  }
  out->changes.push_back(std::move(change));
}

absl::StatusOr<EntityPtr> PrepareEntityWrite(const EntityDescriptor& kind, const google::protobuf::Message& input) {
  EntityPtr entity = kind.New();
  entity->CopyFrom(input);
  if (kind.Id(*entity).empty()) kind.SetId(entity.get(), NewUuid());
  // Never write a row that cannot be read back: protobuf serializes a proto3 string that is not
  // UTF-8 but refuses to parse it (the validator reports such strings first; this is the
  // last line). The timestamps set later cannot make a parsable entity unparsable.
  if (EntityPtr check = kind.New(); !check->ParseFromString(entity->SerializeAsString())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing to write ", kind.name(), " entity ", absl::CHexEscape(kind.Id(*entity)),
        ": its serialized form does not parse back (a string field is not valid UTF-8)"));
  }
  return entity;
}

EntityTimes StampTimes(const EntityDescriptor& kind, google::protobuf::Message* entity,
                       std::optional<int64_t> existing_created_at, bool keep_timestamps, int64_t now) {
  const int64_t given_created_at = kind.CreatedAt(*entity);
  const int64_t created_at = keep_timestamps && given_created_at != 0 ? given_created_at
                             : existing_created_at                    ? *existing_created_at
                             : given_created_at != 0                  ? given_created_at
                                                                      : now;
  const int64_t given_updated_at = kind.UpdatedAt(*entity);
  const int64_t updated_at = keep_timestamps && given_updated_at != 0 ? given_updated_at : now;
  kind.SetCreatedAt(entity, created_at);
  kind.SetUpdatedAt(entity, updated_at);
  return EntityTimes{created_at, updated_at};
}

absl::StatusOr<PreparedBatch> PrepareBatch(const EntityTables& tables, const std::vector<Store::BatchStep>& steps,
                                           PrepareFn prepare) {
  PreparedBatch batch;
  for (const Store::BatchStep& step : steps) {
    absl::StatusOr<const EntityTable*> found = FindEntityTable(tables, *step.kind);
    if (!found.ok()) return found.status();
    batch.tables.push_back(*found);
    if (step.entity == nullptr) {
      batch.entities.emplace_back();
      continue;
    }
    absl::StatusOr<EntityPtr> entity = prepare(*step.kind, *step.entity);
    if (!entity.ok()) return entity.status();
    batch.entities.push_back(*std::move(entity));
  }
  return batch;
}

absl::StatusOr<PreparedRows> PrepareConfigRows(const EntityTables& tables, const std::vector<Store::KindRows>& kinds,
                                               PrepareFn prepare) {
  PreparedRows rows;
  for (const Store::KindRows& list : kinds) {
    absl::StatusOr<const EntityTable*> found = FindEntityTable(tables, *list.kind);
    if (!found.ok()) return found.status();
    std::vector<EntityPtr> prepared;
    for (const google::protobuf::Message* input : list.entities) {
      absl::StatusOr<EntityPtr> entity = prepare(*list.kind, *input);
      if (!entity.ok()) return entity.status();
      prepared.push_back(*std::move(entity));
    }
    rows.emplace_back(*found, std::move(prepared));
  }
  return rows;
}

std::vector<EntityPtr> TakeWritten(PreparedBatch& batch) {
  std::vector<EntityPtr> written;
  for (EntityPtr& e : batch.entities) {
    if (e != nullptr) written.push_back(std::move(e));
  }
  return written;
}

std::vector<EntityPtr> TakeWritten(PreparedRows& rows) {
  std::vector<EntityPtr> written;
  for (auto& [table, entities] : rows) {
    for (EntityPtr& entity : entities) written.push_back(std::move(entity));
  }
  return written;
}

}  // namespace portico::cp
