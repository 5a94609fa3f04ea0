#include "common/declarative/declarative.h"

#include <string>

#include "common/base/uuid.h"
#include "common/config/basic_auth_password.h"
#include "gtest/gtest.h"
#include "google/protobuf/util/message_differencer.h"

namespace portico {
namespace {

using json = nlohmann::json;

json Doc(const char* text) { return json::parse(text); }

absl::StatusOr<DeclarativeConfig> Load(const json& document, DeclarativeErrors* errors) {
  return LoadDeclarativeDocument(document, DeclarativeOptions{}, errors);
}

const DeclarativeConfig::KindEntities& Kind(const DeclarativeConfig& config, const std::string& name) {
  for (const auto& list : config.kinds) {
    if (list.kind->name() == name) return list;
  }
  static const DeclarativeConfig::KindEntities kNone;
  ADD_FAILURE() << "no kind " << name;
  return kNone;
}

constexpr char kNested[] = R"({
  "_format_version": "3.0",
  "_comment": "a test",
  "services": [{
    "name": "orders", "url": "http://orders.internal:8080/v1",
    "routes": [{"name": "orders-route", "paths": ["/orders"],
                "plugins": [{"name": "key-auth"}]},
               {"paths": ["/o2"]}],
    "plugins": [{"name": "cors"}]
  }],
  "consumers": [{"username": "alice",
                 "keyauth_credentials": [{"key": "alice-key"}],
                 "acls": [{"group": "admins"}]}],
  "upstreams": [{"name": "orders.internal", "targets": [{"target": "10.0.0.1:8080", "weight": 50}]}],
  "plugins": [{"name": "rate-limiting", "service": "orders", "config": {"minute": 5}}]
})";

TEST(DeclarativeTest, NestedEntitiesGetTheirParentsAndEveryKindIsLoaded) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = Load(Doc(kNested), &errors);
  ASSERT_TRUE(config.ok()) << errors.KongBody(true).dump(2);
  EXPECT_EQ(config->format_version, "3.0");
  ASSERT_EQ(config->config.services.size(), 1u);
  const config::v1::Service& service = config->config.services[0];
  EXPECT_EQ(service.host(), "orders.internal");
  EXPECT_EQ(service.port(), 8080);
  EXPECT_EQ(service.path(), "/v1");
  ASSERT_EQ(config->config.routes.size(), 2u);
  for (const config::v1::Route& route : config->config.routes) EXPECT_EQ(route.service_id(), service.id());
  ASSERT_EQ(config->config.plugins.size(), 3u);
  int scoped_to_service = 0, scoped_to_route = 0;
  for (const config::v1::Plugin& plugin : config->config.plugins) {
    if (plugin.has_service_id()) {
      EXPECT_EQ(plugin.service_id(), service.id());
      ++scoped_to_service;
    }
    if (plugin.has_route_id()) ++scoped_to_route;
  }
  EXPECT_EQ(scoped_to_service, 2);  // cors (nested) and rate-limiting (top level, by name)
  EXPECT_EQ(scoped_to_route, 1);
  ASSERT_EQ(config->config.consumers.size(), 1u);
  ASSERT_EQ(config->config.keyauth_credentials.size(), 1u);
  EXPECT_EQ(config->config.keyauth_credentials[0].consumer_id(), config->config.consumers[0].id());
  ASSERT_EQ(config->config.acls.size(), 1u);
  ASSERT_EQ(config->config.targets.size(), 1u);
  EXPECT_EQ(config->config.targets[0].upstream_id(), config->config.upstreams[0].id());
  EXPECT_EQ(config->config.targets[0].weight(), 50);
  EXPECT_EQ(config->entity_count(), 11u);
  // Lists are sorted by id.
  EXPECT_LT(config->config.routes[0].id(), config->config.routes[1].id());
}

TEST(DeclarativeTest, IdsAreDerivedDeterministicallyAndExplicitIdsAreKept) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> first = Load(Doc(kNested), &errors);
  absl::StatusOr<DeclarativeConfig> second = Load(Doc(kNested), &errors);
  ASSERT_TRUE(first.ok() && second.ok());
  for (size_t k = 0; k < first->kinds.size(); ++k) {
    const auto& a = first->kinds[k];
    const auto& b = second->kinds[k];
    ASSERT_EQ(a.entities.size(), b.entities.size());
    for (size_t i = 0; i < a.entities.size(); ++i) {
      const std::string id = a.kind->Id(*a.entities[i]);
      EXPECT_TRUE(IsUuid(id)) << id;
      EXPECT_EQ(id, b.kind->Id(*b.entities[i]));
    }
  }
  EXPECT_EQ(first->config.services[0].id(), DeclarativeEntityId("services\x1fname\x1forders"));
  // Version 8 (name-based) and the RFC 9562 variant.
  EXPECT_EQ(first->config.services[0].id()[14], '8');

  json explicit_id = Doc(kNested);
  explicit_id["services"][0]["id"] = "0B0B0B0B-0000-4000-8000-000000000001";
  absl::StatusOr<DeclarativeConfig> third = Load(explicit_id, &errors);
  ASSERT_TRUE(third.ok()) << errors.KongBody(false).dump();
  EXPECT_EQ(third->config.services[0].id(), "0b0b0b0b-0000-4000-8000-000000000001");
  for (const config::v1::Route& route : third->config.routes) EXPECT_EQ(route.service_id(), third->config.services[0].id());
}

TEST(DeclarativeTest, ADanglingReferenceIsRefusedWithKongsStructure) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = Load(Doc(R"({
    "_format_version": "3.0",
    "services": [{"name": "a", "host": "a.internal"}],
    "routes": [{"name": "r1", "paths": ["/"], "service": "a"},
               {"name": "r2", "paths": ["/x"], "service": {"name": "missing"}}]
  })"), &errors);
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(errors.syntax.empty());
  const json body = errors.KongBody(true);
  EXPECT_EQ(body["code"], 14);
  EXPECT_EQ(body["name"], "invalid declarative configuration");
  ASSERT_TRUE(body["fields"]["routes"].is_array()) << body.dump();
  EXPECT_TRUE(body["fields"]["routes"][0].is_null());
  EXPECT_EQ(body["fields"]["routes"][1]["service"],
            "invalid reference 'service.name: missing' (no such entry in 'services')");
  ASSERT_EQ(body["flattened_errors"].size(), 1u);
  const json& flat = body["flattened_errors"][0];
  EXPECT_EQ(flat["entity_type"], "route");
  EXPECT_EQ(flat["entity_name"], "r2");
  EXPECT_TRUE(IsUuid(flat["entity_id"].get<std::string>()));
  EXPECT_EQ(flat["errors"][0]["type"], "field");
  EXPECT_EQ(flat["errors"][0]["field"], "service");
  ASSERT_EQ(errors.lines.size(), 1u);
  EXPECT_NE(errors.lines[0].find("routes[1] (name 'r2')"), std::string::npos) << errors.lines[0];
}

TEST(DeclarativeTest, SchemaErrorsNestUnderTheirParents) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = Load(Doc(R"({
    "_format_version": "3.0",
    "services": [{"name": "ok", "host": "ok.internal"},
                 {"name": "bad", "routes": [{"paths": ["no-slash"]}]}]
  })"), &errors);
  ASSERT_FALSE(config.ok());
  const json body = errors.KongBody(false);
  EXPECT_FALSE(body.contains("flattened_errors"));
  EXPECT_TRUE(body["fields"]["services"][0].is_null()) << body.dump();
  EXPECT_EQ(body["fields"]["services"][1]["host"], "required field missing");
  ASSERT_TRUE(body["fields"]["services"][1]["routes"][0]["paths"].is_array()) << body.dump();
  EXPECT_GE(errors.lines.size(), 2u);
}

TEST(DeclarativeTest, DuplicateKeysAcrossTheDocumentAreRefused) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = Load(Doc(R"({
    "_format_version": "3.0",
    "services": [{"name": "a", "host": "a.internal", "routes": [{"name": "same", "paths": ["/a"]}]},
                 {"name": "b", "host": "b.internal", "routes": [{"name": "same", "paths": ["/b"]}]},
                 {"name": "a", "host": "c.internal"}]
  })"), &errors);
  ASSERT_FALSE(config.ok());
  const std::string all = errors.KongBody(true).dump();
  EXPECT_NE(all.find("uniqueness violation: 'routes' entity with primary key set to"), std::string::npos) << all;
  EXPECT_NE(all.find("uniqueness violation: 'services' entity with primary key set to"), std::string::npos) << all;
  // Explicit different ids still collide on the unique name.
  errors = {};
  config = Load(Doc(R"({
    "_format_version": "3.0",
    "services": [{"id": "00000000-0000-4000-8000-000000000001", "name": "a", "host": "a.internal"},
                 {"id": "00000000-0000-4000-8000-000000000002", "name": "a", "host": "b.internal"}]
  })"), &errors);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(errors.fields["services"][1]["@entity"][0],
            "uniqueness violation: 'services' entity with name set to 'a' already declared");
}

TEST(DeclarativeTest, DocumentLevelErrors) {
  struct Case {
    const char* doc;
    const char* key;
    const char* message;
  } cases[] = {
      {R"({"services": []})", "_format_version", "required field missing"},
      {R"({"_format_version": "4.0"})", "_format_version", "expected one of: 1.1, 2.1, 3.0"},
      {R"({"_format_version": 3})", "_format_version", "expected a string"},
      {R"({"_format_version": "3.0", "servces": []})", "servces", "unknown field"},
      {R"({"_format_version": "3.0", "services": {"name": "x"}})", "services", "expected an array"},
      {R"({"_format_version": "3.0", "_transform": "yes"})", "_transform", "expected a boolean"},
  };
  for (const Case& c : cases) {
    DeclarativeErrors errors;
    EXPECT_FALSE(Load(Doc(c.doc), &errors).ok()) << c.doc;
    EXPECT_EQ(errors.fields[c.key], c.message) << c.doc << " -> " << errors.fields.dump();
  }
  DeclarativeErrors errors;
  EXPECT_FALSE(Load(Doc(R"({"_format_version": "3.0", "services": ["x"]})"), &errors).ok());
  EXPECT_EQ(errors.fields["services"][0], "expected a record");
  errors = {};
  EXPECT_FALSE(Load(Doc(R"([1, 2])"), &errors).ok());
  EXPECT_FALSE(errors.syntax.empty());
  EXPECT_EQ(errors.KongBody(false)["code"], 14);
}

TEST(DeclarativeTest, OldFormatsMigrateRegexPaths) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = Load(Doc(R"({
    "_format_version": "1.1",
    "services": [{"name": "a", "host": "a.internal",
                  "routes": [{"name": "r", "paths": ["/users/\\d+", "/plain/path-1.0_~x"]}]}]
  })"), &errors);
  ASSERT_TRUE(config.ok()) << errors.KongBody(false).dump();
  ASSERT_EQ(config->config.routes.size(), 1u);
  EXPECT_EQ(config->config.routes[0].paths().values(0), "~/users/\\d+");
  EXPECT_EQ(config->config.routes[0].paths().values(1), "/plain/path-1.0_~x");
  // 3.0 takes paths as written: the same path is then a plain prefix.
  errors = {};
  config = Load(Doc(R"JSON({"_format_version": "3.0",
    "services": [{"name": "a", "host": "a.internal", "routes": [{"name": "r", "paths": ["/users/(x)"]}]}]})JSON"),
                &errors);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->config.routes[0].paths().values(0), "/users/(x)");
}

TEST(DeclarativeTest, TransformHashesPasswordsUnlessTheDocumentSaysTheyAreHashed) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = Load(Doc(R"({"_format_version": "3.0",
    "consumers": [{"username": "bob", "basicauth_credentials": [{"username": "bob", "password": "s3cret"}]}]})"),
                                                  &errors);
  ASSERT_TRUE(config.ok()) << errors.KongBody(false).dump();
  ASSERT_EQ(config->config.basicauth_credentials.size(), 1u);
  const std::string hashed = config->config.basicauth_credentials[0].password();
  EXPECT_TRUE(IsHashedBasicAuthPassword(hashed)) << hashed;

  errors = {};
  EXPECT_FALSE(Load(Doc(R"({"_format_version": "3.0", "_transform": false,
    "consumers": [{"username": "bob", "basicauth_credentials": [{"username": "bob", "password": "s3cret"}]}]})"),
                    &errors)
                   .ok());
  EXPECT_EQ(errors.fields["consumers"][0]["basicauth_credentials"][0]["password"],
            "expected a hashed password (the document has _transform: false)");

  json already = json::parse(R"({"_format_version": "3.0", "_transform": false,
    "consumers": [{"username": "bob", "basicauth_credentials": [{"username": "bob"}]}]})");
  already["consumers"][0]["basicauth_credentials"][0]["password"] = hashed;
  errors = {};
  config = Load(already, &errors);
  ASSERT_TRUE(config.ok()) << errors.KongBody(false).dump();
  EXPECT_EQ(config->config.basicauth_credentials[0].password(), hashed);
}

TEST(DeclarativeTest, ExportLoadsBackIntoTheSameEntities) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = Load(Doc(kNested), &errors);
  ASSERT_TRUE(config.ok());
  const json exported = ExportDeclarativeDocument(config->kinds);
  EXPECT_EQ(exported["_format_version"], "3.0");
  EXPECT_EQ(exported["_transform"], false);
  // Flat lists, foreign keys as ids, no nulls.
  ASSERT_TRUE(exported["routes"].is_array());
  EXPECT_EQ(exported["routes"][0]["service"], config->config.services[0].id());
  EXPECT_FALSE(exported["routes"][0].contains("hosts"));
  absl::StatusOr<DeclarativeConfig> again = Load(exported, &errors);
  ASSERT_TRUE(again.ok()) << errors.KongBody(false).dump(2);
  ASSERT_EQ(again->kinds.size(), config->kinds.size());
  for (size_t k = 0; k < config->kinds.size(); ++k) {
    ASSERT_EQ(again->kinds[k].entities.size(), config->kinds[k].entities.size()) << config->kinds[k].kind->name();
    for (size_t i = 0; i < config->kinds[k].entities.size(); ++i) {
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*config->kinds[k].entities[i],
                                                                     *again->kinds[k].entities[i]))
          << config->kinds[k].entities[i]->DebugString() << " vs " << again->kinds[k].entities[i]->DebugString();
    }
  }
  // EntitiesByKind gives the same lists back from the ConfigSet.
  std::vector<DeclarativeConfig::KindEntities> by_kind = EntitiesByKind(config->config, EntityRegistry::Default());
  EXPECT_EQ(ExportDeclarativeDocument(by_kind), exported);
}

TEST(DeclarativeTest, TargetsAndPluginsWithoutKeysGetIdsFromTheirScope) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = Load(Doc(R"({"_format_version": "3.0",
    "upstreams": [{"name": "u1", "targets": [{"target": "10.0.0.1:80"}]},
                  {"name": "u2", "targets": [{"target": "10.0.0.1:80"}]}],
    "plugins": [{"name": "cors"}, {"name": "key-auth", "instance_name": "second"}]})"),
                                                  &errors);
  ASSERT_TRUE(config.ok()) << errors.KongBody(false).dump();
  ASSERT_EQ(config->config.targets.size(), 2u);
  EXPECT_NE(config->config.targets[0].id(), config->config.targets[1].id());
  // The same target twice in one upstream collides.
  errors = {};
  EXPECT_FALSE(Load(Doc(R"({"_format_version": "3.0",
    "upstreams": [{"name": "u1", "targets": [{"target": "10.0.0.1:80"}, {"target": "10.0.0.1:80"}]}]})"),
                    &errors)
                   .ok());
  EXPECT_NE(errors.KongBody(false).dump().find("uniqueness violation: 'targets'"), std::string::npos);
}

TEST(DeclarativeTest, EveryExportedKindReadsBackFromAConfigSet) {
  const EntityRegistry& kinds = EntityRegistry::Default();
  for (const EntityDescriptor* kind : kinds.kinds()) {
    if (!kind->exported()) continue;
    std::unique_ptr<google::protobuf::Message> entity = kind->NewDefault();
    kind->SetId(entity.get(), "00000000-0000-4000-8000-0000000000aa");
    ConfigSet config;
    ASSERT_TRUE(kind->AppendToConfig(&config, entity->SerializeAsString())) << kind->name();
    size_t found = 0;
    for (const DeclarativeConfig::KindEntities& list : EntitiesByKind(config, kinds)) {
      found += list.entities.size();
      if (list.kind == kind) ASSERT_EQ(list.entities.size(), 1u) << kind->name();
    }
    EXPECT_EQ(found, 1u) << kind->name();
  }
}

TEST(DeclarativeTest, TextOverTheLimitIsRefusedBeforeParsing) {
  DeclarativeOptions options;
  options.max_bytes = 64;
  DeclarativeErrors errors;
  const std::string text = "_format_version: \"3.0\"\n# " + std::string(100, 'x') + "\n";
  EXPECT_FALSE(LoadDeclarativeText(text, options, &errors).ok());
  EXPECT_NE(errors.syntax.find("over the limit of 64"), std::string::npos) << errors.syntax;
  errors = {};
  EXPECT_TRUE(LoadDeclarativeText("_format_version: \"3.0\"\n", options, &errors).ok()) << errors.syntax;
}

TEST(DeclarativeTest, YamlDocumentsLoadLikeJson) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = LoadDeclarativeText(R"(_format_version: "3.0"
services:
  - &svc
    name: a
    host: a.internal
    port: 8080
  - <<: *svc
    name: b
)",
                                                                 DeclarativeOptions{}, &errors);
  ASSERT_TRUE(config.ok()) << errors.syntax << errors.KongBody(false).dump();
  ASSERT_EQ(config->config.services.size(), 2u);
  for (const config::v1::Service& service : config->config.services) {
    EXPECT_EQ(service.host(), "a.internal");
    EXPECT_EQ(service.port(), 8080);
  }
  errors = {};
  EXPECT_FALSE(LoadDeclarativeText("_format_version: \"3.0\"\nservices:\n  - name: [x\n", DeclarativeOptions{}, &errors).ok());
  EXPECT_NE(errors.syntax.find("line 4"), std::string::npos) << errors.syntax;
}

TEST(DeclarativeTest, ErrorLinesNeverCarryCredentials) {
  DeclarativeErrors errors;
  EXPECT_FALSE(Load(Doc(R"({"_format_version": "3.0",
    "consumers": [{"username": "a", "keyauth_credentials": [{"key": "very-secret-1"}, {"key": "very-secret-2", "tags": 5}]},
                  {"username": "b", "keyauth_credentials": [{"key": "very-secret-1"}]}]})"),
                    &errors)
                   .ok());
  ASSERT_GE(errors.lines.size(), 2u);
  for (const std::string& line : errors.lines) EXPECT_EQ(line.find("very-secret"), std::string::npos) << line;
  EXPECT_NE(errors.KongBody(false)["message"].get<std::string>().find("with the same key already declared"),
            std::string::npos)
      << errors.KongBody(false).dump();
  for (const json& flat : errors.flattened) EXPECT_TRUE(flat["entity_name"].is_null()) << flat.dump();
}

TEST(DeclarativeTest, DocumentLevelErrorsAreFlattenedToo) {
  DeclarativeErrors errors;
  EXPECT_FALSE(Load(Doc(R"({"services": [5, {"name": "a", "host": "a", "routes": 7}]})"), &errors).ok());
  const json body = errors.KongBody(true);
  ASSERT_EQ(body["flattened_errors"].size(), 3u) << body.dump();
  bool version = false, record = false, array = false;
  for (const json& flat : body["flattened_errors"]) {
    const json& error = flat["errors"][0];
    if (error["message"] == "required field missing" && error["field"] == "_format_version") {
      version = flat["entity_type"].is_null();
    }
    if (error["message"] == "expected a record") record = flat["entity_type"] == "service";
    if (error["message"] == "expected an array") array = error["field"] == "routes";
  }
  EXPECT_TRUE(version && record && array) << body.dump();
}

TEST(DeclarativeTest, KeyAuthIdsDoNotComeFromTheirKeys) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> config = Load(Doc(R"({"_format_version": "3.0",
    "consumers": [{"username": "a", "keyauth_credentials": [{"key": "k1"}]}]})"),
                                                  &errors);
  ASSERT_TRUE(config.ok());
  ASSERT_EQ(config->config.keyauth_credentials.size(), 1u);
  const std::string id = config->config.keyauth_credentials[0].id();
  EXPECT_NE(id, DeclarativeEntityId("keyauth_credentials\x1fkey\x1fk1"));
  EXPECT_EQ(id, DeclarativeEntityId("keyauth_credentials\x1f@\x1f" "consumers[0].keyauth_credentials[0]"));
}

TEST(DeclarativeTest, AReorderedDocumentKeepsTheStoredKeyAuthIds) {
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> first = Load(Doc(R"({"_format_version": "3.0",
    "consumers": [{"username": "a", "keyauth_credentials": [{"key": "ka"}]},
                  {"username": "b", "keyauth_credentials": [{"key": "kb"}]}]})"),
                                                 &errors);
  ASSERT_TRUE(first.ok());
  const ConfigSet stored = first->config;
  absl::StatusOr<DeclarativeConfig> reordered = Load(Doc(R"({"_format_version": "3.0",
    "consumers": [{"username": "new"},
                  {"username": "b", "keyauth_credentials": [{"key": "kb"}]},
                  {"username": "a", "keyauth_credentials": [{"key": "ka"}]}]})"),
                                                     &errors);
  ASSERT_TRUE(reordered.ok());
  // Positions moved, so the derived ids did; the stored ones are taken back by key.
  EXPECT_FALSE(CarryOverStoredTimestamps(stored, &*reordered));  // a consumer was added
  ASSERT_EQ(reordered->config.keyauth_credentials.size(), 2u);
  for (const config::v1::KeyAuthCredential& credential : reordered->config.keyauth_credentials) {
    bool found = false;
    for (const config::v1::KeyAuthCredential& old : stored.keyauth_credentials) {
      if (old.key() == credential.key()) found = old.id() == credential.id();
    }
    EXPECT_TRUE(found) << credential.key();
  }
  EXPECT_LT(reordered->config.keyauth_credentials[0].id(), reordered->config.keyauth_credentials[1].id());
  // An id the document gives is never replaced.
  json explicit_id = Doc(R"({"_format_version": "3.0",
    "consumers": [{"username": "a", "keyauth_credentials": [{"key": "ka", "id": "00000000-0000-4000-8000-00000000000a"}]}]})");
  absl::StatusOr<DeclarativeConfig> given = Load(explicit_id, &errors);
  ASSERT_TRUE(given.ok());
  CarryOverStoredTimestamps(stored, &*given);
  EXPECT_EQ(given->config.keyauth_credentials[0].id(), "00000000-0000-4000-8000-00000000000a");
}

TEST(DeclarativeTest, DeclarativeIdsAreUuids) {
  const std::string a = DeclarativeEntityId("services\x1fname\x1f" "a");
  EXPECT_TRUE(IsUuid(a));
  EXPECT_EQ(a, DeclarativeEntityId("services\x1fname\x1f" "a"));
  EXPECT_NE(a, DeclarativeEntityId("services\x1fname\x1f" "b"));
}

}  // namespace
}  // namespace portico
