// The Admin API endpoints Kong tooling calls beyond the entity CRUD (meta_endpoints.h,
// schema_endpoints.h, tag_endpoints.h): GET /, /schemas/*, the validate endpoints, /tags,
// /endpoints, OPTIONS with CORS, HEAD, and the 10 MiB body limit behind the real HTTP server.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/base/clock.h"
#include "common/base/uuid.h"
#include "common/config/entity_descriptor.h"
#include "common/config/upstreams.h"
#include "common/http/http_server.h"
#include "common/plugins/plugin_schema.h"
#include "control_plane/admin/admin_api.h"
#include "control_plane/admin/meta_endpoints.h"
#include "control_plane/store/store.h"
#include "tests/unit/control_plane/admin/admin_fixture.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/http_wire.h"

namespace portico::cp {
namespace {

using nlohmann::json;

class AdminSurfaceTest : public AdminFixture {
 protected:
  void MakeApi(std::vector<std::string> cors_origins, std::optional<AdminToken> token = std::nullopt) {
    AdminOptions options = DefaultOptions();
    options.cors_origins = std::move(cors_origins);
    options.token = std::move(token);
    AdminFixture::MakeApi(std::move(options));
  }
  HttpResponse Call(const std::string& method, const std::string& target, const std::string& body = "",
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    return AdminFixture::Call(method, target, body, "application/json", std::move(headers));
  }
  static std::string Header(const HttpResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (absl::EqualsIgnoreCase(k, name)) return v;
    }
    return "<absent>";
  }
  // The value of field `name` in a Kong "fields" array.
  static json SchemaField(const json& schema, const std::string& name) {
    for (const json& entry : schema["fields"]) {
      if (entry.contains(name)) return entry[name];
    }
    return nullptr;
  }
};

TEST_F(AdminSurfaceTest, NodeInfoSpeaksKongsVersionAndKeepsPorticosOwn) {
  CallJson("POST", "/plugins", 201, R"j({"name":"cors"})j");
  json root = CallJson("GET", "/", 200);
  EXPECT_EQ(root["version"], "3.9.0");
  EXPECT_EQ(root["version"], kKongCompatibleVersion);
  const std::vector<std::string> semver = absl::StrSplit(root["version"].get<std::string>(), '.');
  EXPECT_EQ(semver.size(), 3u);
  EXPECT_EQ(root["portico_version"], PORTICO_VERSION);
  EXPECT_EQ(root["tagline"], "Welcome to kong");
  EXPECT_EQ(root["edition"], "community");
  EXPECT_EQ(root["node_id"], "node-1");
  EXPECT_EQ(root["hostname"], "cp.local");
  EXPECT_EQ(root["config_version"], 1);
  const json& conf = root["configuration"];
  EXPECT_EQ(conf["role"], "control_plane");
  EXPECT_EQ(conf["database"], OnPostgres() ? "postgres" : "sqlite");
  EXPECT_EQ(conf["database_path"], location_);
  EXPECT_EQ(conf["admin_listen"], json::array({"127.0.0.1:8001"}));
  EXPECT_EQ(conf["cluster_listen"], json::array({"0.0.0.0:8005"}));
  EXPECT_EQ(conf["router_flavor"], "traditional_compatible");
  EXPECT_EQ(conf["nginx_admin_client_max_body_size"], "10m");
  EXPECT_EQ(conf["admin_gui_origin"], nullptr);
  EXPECT_EQ(conf["plugins"], json::array({"bundled"}));
  ASSERT_TRUE(root["plugins"]["available_on_server"].is_object());
  EXPECT_EQ(root["plugins"]["available_on_server"].size(), plugins::BundledPluginSchemas().size());
  for (const plugins::PluginSchema* schema : plugins::BundledPluginSchemas()) {
    EXPECT_EQ(root["plugins"]["available_on_server"][schema->name]["priority"], schema->priority) << schema->name;
  }
  EXPECT_EQ(root["plugins"]["enabled_in_cluster"], json::array({"cors"}));

  MakeApi({"https://gui.example:8002"});
  EXPECT_EQ(CallJson("GET", "/", 200)["configuration"]["admin_gui_origin"], json::array({"https://gui.example:8002"}));
}

// Kong's type name for each descriptor field type, as /schemas shows it.
std::string ExpectedKongType(const FieldSpec& spec) {
  switch (spec.type) {
    case FieldType::kId:
    case FieldType::kString:
      return "string";
    case FieldType::kTimestamp:
    case FieldType::kInteger:
      return "integer";
    case FieldType::kBoolean:
      return "boolean";
    case FieldType::kArray:
      return "array";
    case FieldType::kSet:
    case FieldType::kRecordSet:
      return "set";
    case FieldType::kStringArrayMap:
      return "map";
    case FieldType::kForeignKey:
      return "foreign";
    case FieldType::kJsonRecord:
      return "record";
  }
  return "?";
}

TEST_F(AdminSurfaceTest, EveryKindsSchemaListsEveryDescriptorFieldWithItsDefault) {
  ASSERT_FALSE(store_->kinds().kinds().empty());
  for (const EntityDescriptor* kind : store_->kinds().kinds()) {
    SCOPED_TRACE(kind->name());
    json schema = CallJson("GET", "/schemas/" + kind->name(), 200);
    ASSERT_TRUE(schema["fields"].is_array());
    ASSERT_EQ(schema["fields"].size(), kind->fields().size());
    for (size_t i = 0; i < kind->fields().size(); ++i) {
      const FieldSpec& spec = kind->fields()[i];
      SCOPED_TRACE(spec.name);
      const json& entry = schema["fields"][i];
      ASSERT_TRUE(entry.is_object());
      ASSERT_EQ(entry.size(), 1u);
      ASSERT_TRUE(entry.contains(spec.name)) << entry.dump();  // in the descriptor's order
      const json& field = entry[spec.name];
      EXPECT_EQ(field["type"], ExpectedKongType(spec));
      if (spec.default_json.empty()) {
        EXPECT_FALSE(field.contains("default")) << field.dump();
      } else {
        EXPECT_EQ(field["default"], json::parse(spec.default_json)) << field.dump();
      }
      EXPECT_EQ(field.value("required", false), spec.required);
      EXPECT_EQ(field.value("unique", false), spec.unique);
      if (spec.type == FieldType::kForeignKey) {
        EXPECT_EQ(field["reference"], spec.references);
        EXPECT_EQ(field.contains("on_delete"), spec.on_delete == OnDelete::kCascade);
      }
      if (spec.type == FieldType::kArray || spec.type == FieldType::kSet || spec.type == FieldType::kRecordSet) {
        EXPECT_TRUE(field["elements"].is_object()) << field.dump();
      }
    }
  }
}

TEST_F(AdminSurfaceTest, SchemasAreKongShaped) {
  json services = CallJson("GET", "/schemas/services", 200);
  EXPECT_EQ(SchemaField(services, "id"), json::parse(R"j({"type":"string","uuid":true,"auto":true})j"));
  EXPECT_EQ(SchemaField(services, "created_at"), json::parse(R"j({"type":"integer","timestamp":true,"auto":true})j"));
  EXPECT_EQ(SchemaField(services, "name"), json::parse(R"j({"type":"string","unique":true})j"));
  EXPECT_EQ(SchemaField(services, "protocol"), json::parse(R"j({"type":"string","required":true,"default":"http"})j"));
  EXPECT_EQ(SchemaField(services, "host"), json::parse(R"j({"type":"string","required":true})j"));
  EXPECT_EQ(SchemaField(services, "port"), json::parse(R"j({"type":"integer","default":80})j"));
  EXPECT_EQ(SchemaField(services, "enabled"), json::parse(R"j({"type":"boolean","default":true})j"));
  EXPECT_EQ(SchemaField(services, "tags"), json::parse(R"j({"type":"set","elements":{"type":"string"}})j"));
  EXPECT_EQ(SchemaField(services, "client_certificate"), json::parse(R"j({"type":"foreign","reference":"certificates"})j"));
  EXPECT_EQ(SchemaField(services, "ca_certificates"),
            json::parse(R"j({"type":"array","elements":{"type":"string","uuid":true}})j"));
  EXPECT_EQ(SchemaField(services, "url"), nullptr);  // a shorthand, not a field

  json routes = CallJson("GET", "/schemas/routes", 200);
  EXPECT_EQ(SchemaField(routes, "protocols"),
            json::parse(R"j({"type":"set","elements":{"type":"string"},"default":["http","https"]})j"));
  EXPECT_EQ(SchemaField(routes, "headers"),
            json::parse(R"j({"type":"map","keys":{"type":"string"},"values":{"type":"array","elements":{"type":"string"}}})j"));
  EXPECT_EQ(SchemaField(routes, "sources"),
            json::parse(R"j({"type":"set","elements":{"type":"record","fields":[{"ip":{"type":"string"}},{"port":{"type":"integer"}}]}})j"));
  EXPECT_EQ(SchemaField(routes, "service"), json::parse(R"j({"type":"foreign","reference":"services"})j"));

  // Kong's entity names, not the Admin API collection names.
  json targets = CallJson("GET", "/schemas/targets", 200);
  EXPECT_EQ(SchemaField(targets, "upstream"),
            json::parse(R"j({"type":"foreign","reference":"upstreams","on_delete":"cascade","required":true})j"));
  EXPECT_EQ(SchemaField(targets, "weight"), json::parse(R"j({"type":"integer","default":100})j"));
  json keyauth = CallJson("GET", "/schemas/keyauth_credentials", 200);
  EXPECT_EQ(SchemaField(keyauth, "consumer")["reference"], "consumers");
  EXPECT_EQ(SchemaField(keyauth, "key"), json::parse(R"j({"type":"string","unique":true})j"));
  EXPECT_EQ(CallJson("GET", "/schemas/key-auths", 404), json::parse(R"j({"message":"No entity named 'key-auths'"})j"));

  // A record with a default: the default, and its members as fields with their own defaults.
  json upstreams = CallJson("GET", "/schemas/upstreams", 200);
  const json healthchecks = SchemaField(upstreams, "healthchecks");
  EXPECT_EQ(healthchecks["type"], "record");
  EXPECT_EQ(healthchecks["default"], json::parse(DefaultUpstreamHealthchecksJson()));
  const json active = SchemaField(healthchecks, "active");
  EXPECT_EQ(active["type"], "record");
  const json& active_default = healthchecks["default"]["active"];
  ASSERT_TRUE(active_default.is_object());
  EXPECT_EQ(SchemaField(active, "timeout")["default"], active_default["timeout"]);
  EXPECT_EQ(SchemaField(active, "type"), json({{"type", "string"}, {"default", active_default["type"]}}));
  const json healthy = SchemaField(active, "healthy");
  EXPECT_EQ(SchemaField(healthy, "http_statuses")["type"], "array");
  EXPECT_EQ(SchemaField(healthy, "http_statuses")["elements"], json::parse(R"j({"type":"integer"})j"));

  // The plugin entity has its own endpoint; the entity schema is there too.
  json plugin_entity = CallJson("GET", "/schemas/plugins", 200);
  EXPECT_EQ(SchemaField(plugin_entity, "name"), json::parse(R"j({"type":"string","required":true})j"));
  EXPECT_EQ(SchemaField(plugin_entity, "service")["on_delete"], "cascade");
  json key_auth = CallJson("GET", "/schemas/plugins/key-auth", 200);
  EXPECT_EQ(SchemaField(key_auth, "config")["type"], "record");
}

TEST_F(AdminSurfaceTest, UnknownSchemasAreKongs404) {
  EXPECT_EQ(CallJson("GET", "/schemas/nope", 404), json::parse(R"j({"message":"No entity named 'nope'"})j"));
  EXPECT_EQ(CallJson("POST", "/schemas/nope/validate", 404, "{}"),
            json::parse(R"j({"message":"No entity named 'nope'"})j"));
  EXPECT_EQ(CallJson("GET", "/schemas/plugins/nope", 404), json::parse(R"j({"message":"No plugin named 'nope'"})j"));
  EXPECT_EQ(CallJson("GET", "/schemas/bad%ff", 404), json::parse(R"j({"message":"No entity named '?'"})j"));
  EXPECT_EQ(CallJson("POST", "/schemas/services", 405, "{}"), json::parse(R"j({"message":"Method not allowed"})j"));
  EXPECT_EQ(CallJson("GET", "/schemas/services/validate", 405), json::parse(R"j({"message":"Method not allowed"})j"));
  EXPECT_EQ(CallJson("GET", "/schemas/nope/validate", 405), json::parse(R"j({"message":"Method not allowed"})j"));
}

TEST_F(AdminSurfaceTest, ValidateChecksLikeACreateAndStoresNothing) {
  const json ok = json::parse(R"j({"message":"schema validation successful"})j");
  EXPECT_EQ(CallJson("POST", "/schemas/services/validate", 200, R"j({"name":"a","host":"a.example"})j"), ok);
  json bad = CallJson("POST", "/schemas/services/validate", 400, R"j({"name":"a","port":"x"})j");
  EXPECT_EQ(bad["code"], 2);
  EXPECT_EQ(bad["name"], "schema violation");
  EXPECT_EQ(bad["fields"]["host"], "required field missing");
  EXPECT_EQ(bad["fields"]["port"], "expected an integer");

  EXPECT_EQ(CallJson("POST", "/schemas/plugins/validate", 200, R"j({"name":"key-auth"})j"), ok);
  json unknown = CallJson("POST", "/schemas/plugins/validate", 400, R"j({"name":"nope"})j");
  EXPECT_EQ(unknown["code"], 2);
  EXPECT_TRUE(unknown["fields"].contains("name")) << unknown.dump();
  json bad_config =
      CallJson("POST", "/schemas/plugins/validate", 400, R"j({"name":"rate-limiting","config":{"minute":"x"}})j");
  EXPECT_EQ(bad_config["code"], 2);
  EXPECT_TRUE(bad_config["fields"]["config"].contains("minute")) << bad_config.dump();

  // References are resolved as a create resolves them (Kong's code 13 for an unknown name).
  json unresolved = CallJson("POST", "/schemas/routes/validate", 400, R"j({"paths":["/"],"service":{"name":"ghost"}})j");
  EXPECT_EQ(unresolved["code"], 13);
  EXPECT_EQ(unresolved["name"], "foreign keys unresolved");
  EXPECT_EQ(store_->CurrentVersion(), 0u);
  EXPECT_EQ(CallJson("GET", "/services", 200)["data"], json::array());
}

// Every (tag, entity) row, walked page by page; checks each page's shape.
std::vector<json> WalkTags(const std::string& first, const std::function<json(const std::string&)>& get) {
  std::vector<json> rows;
  std::string target = first;
  for (int pages = 0; pages < 100; ++pages) {
    json page = get(target);
    EXPECT_TRUE(page["data"].is_array()) << page.dump();
    for (const json& row : page["data"]) rows.push_back(row);
    if (page["next"].is_null()) {
      EXPECT_FALSE(page.contains("offset"));
      return rows;
    }
    EXPECT_TRUE(page["offset"].is_string());
    target = page["next"].get<std::string>();
  }
  ADD_FAILURE() << "no last page";
  return rows;
}

TEST_F(AdminSurfaceTest, TagsListEveryTaggedEntityInKongsOrder) {
  const std::string s1 = CallJson("POST", "/services", 201, R"j({"name":"s1","host":"a","tags":["prod","eu"]})j")["id"];
  const std::string s2 = CallJson("POST", "/services", 201, R"j({"name":"s2","host":"a","tags":["prod"]})j")["id"];
  CallJson("POST", "/services", 201, R"j({"name":"untagged","host":"a"})j");
  const std::string r1 = CallJson("POST", "/routes", 201, R"j({"paths":["/"],"tags":["eu","edge"]})j")["id"];
  const std::string c1 = CallJson("POST", "/consumers", 201, R"j({"username":"u","tags":["prod"]})j")["id"];

  // Expected: by entity id, then the tag's position in the entity's tags.
  std::vector<json> expected = {
      {{"entity_name", "services"}, {"entity_id", s1}, {"tag", "prod"}},
      {{"entity_name", "services"}, {"entity_id", s1}, {"tag", "eu"}},
      {{"entity_name", "services"}, {"entity_id", s2}, {"tag", "prod"}},
      {{"entity_name", "routes"}, {"entity_id", r1}, {"tag", "eu"}},
      {{"entity_name", "routes"}, {"entity_id", r1}, {"tag", "edge"}},
      {{"entity_name", "consumers"}, {"entity_id", c1}, {"tag", "prod"}},
  };
  std::stable_sort(expected.begin(), expected.end(),
                   [](const json& a, const json& b) { return a["entity_id"] < b["entity_id"]; });

  json all = CallJson("GET", "/tags", 200);
  EXPECT_EQ(all, json({{"data", expected}, {"next", nullptr}}));

  auto get = [this](const std::string& target) { return CallJson("GET", target, 200); };
  for (int size : {1, 2, 4}) {
    SCOPED_TRACE(size);
    EXPECT_EQ(WalkTags(absl::StrCat("/tags?size=", size), get), expected);
  }
  json first = CallJson("GET", "/tags?size=2", 200);
  EXPECT_EQ(first["data"].size(), 2u);
  EXPECT_TRUE(first["next"].get<std::string>().starts_with("/tags?offset=")) << first.dump();
  EXPECT_TRUE(first["next"].get<std::string>().ends_with("&size=2")) << first.dump();

  std::vector<json> prod;
  for (const json& row : expected) {
    if (row["tag"] == "prod") prod.push_back(row);
  }
  EXPECT_EQ(CallJson("GET", "/tags/prod", 200), json({{"data", prod}, {"next", nullptr}}));
  EXPECT_EQ(WalkTags("/tags/prod?size=1", get), prod);
  EXPECT_TRUE(CallJson("GET", "/tags/prod?size=1", 200)["next"].get<std::string>().starts_with("/tags/prod?offset="));
  EXPECT_EQ(CallJson("GET", "/tags/none", 200), json::parse(R"j({"data":[],"next":null})j"));

  EXPECT_EQ(CallJson("GET", "/tags?offset=!!", 400)["code"], 7);
  EXPECT_EQ(CallJson("GET", "/tags?offset=WyJ4Il0=", 400)["code"], 7);  // a valid list offset is not a tags one
  EXPECT_EQ(CallJson("GET", "/tags?size=0", 400)["code"], 9);
  EXPECT_EQ(CallJson("GET", "/tags/prod?size=x", 400)["code"], 9);
  EXPECT_EQ(CallJson("POST", "/tags", 405, "{}"), json::parse(R"j({"message":"Method not allowed"})j"));
  EXPECT_EQ(CallJson("GET", "/tags/a/b", 404), json::parse(R"j({"message":"Not found"})j"));
}

TEST_F(AdminSurfaceTest, TagPagesLoseNothingWhenTwoKindsShareAnId) {
  const std::string id = "00000000-0000-4000-8000-000000000001";
  CallJson("POST", "/services", 201, json{{"id", id}, {"host", "a"}, {"tags", {"a", "b"}}}.dump());
  CallJson("POST", "/consumers", 201, json{{"id", id}, {"username", "u"}, {"tags", {"c", "d"}}}.dump());
  auto get = [this](const std::string& target) { return CallJson("GET", target, 200); };
  for (int size : {1, 2, 3}) {
    SCOPED_TRACE(size);
    std::vector<json> rows = WalkTags(absl::StrCat("/tags?size=", size), get);
    ASSERT_EQ(rows.size(), 4u);
    std::multiset<std::string> seen;
    for (const json& row : rows) seen.insert(absl::StrCat(row["entity_name"].get<std::string>(), ":", row["tag"].get<std::string>()));
    EXPECT_EQ(seen, (std::multiset<std::string>{"consumers:c", "consumers:d", "services:a", "services:b"}));
  }
}

TEST_F(AdminSurfaceTest, EndpointsListEveryRouteInKongsOrder) {
  json body = CallJson("GET", "/endpoints", 200);
  ASSERT_TRUE(body["data"].is_array());
  std::vector<std::string> paths;
  for (const json& p : body["data"]) paths.push_back(p.get<std::string>());
  const std::set<std::string> unique(paths.begin(), paths.end());
  EXPECT_EQ(unique.size(), paths.size());
  for (const char* expected :
       {"/", "/status", "/endpoints", "/services", "/services/{services}", "/services/{services}/routes",
        "/services/{services}/routes/{routes}", "/services/{services}/plugins", "/routes/{routes}/service",
        "/consumers/{consumers}/key-auth", "/consumers/{consumers}/key-auth/{keyauth_credentials}", "/key-auths",
        "/key-auths/{keyauth_credentials}", "/key-auths/{keyauth_credentials}/consumer",
        "/upstreams/{upstreams}/targets", "/upstreams/{upstreams}/targets/all",
        "/upstreams/{upstreams}/targets/{targets}", "/upstreams/{upstreams}/health",
        "/upstreams/{upstreams}/targets/{targets}/healthy", "/certificates/{certificates}/snis",
        "/snis/{snis}/certificate", "/schemas/{name}", "/schemas/{db_entity_name}/validate",
        "/schemas/plugins/validate", "/schemas/plugins/{name}", "/plugins/enabled", "/tags", "/tags/{tags}",
        "/clustering/data-planes", "/clustering/status"}) {
    EXPECT_TRUE(unique.count(expected)) << expected;
  }
  EXPECT_FALSE(unique.count("/targets"));             // Kong has no top-level targets endpoints
  EXPECT_FALSE(unique.count("/targets/{targets}"));
  EXPECT_FALSE(unique.count("/metrics"));             // no metrics source in this test
  // Kong's order: '/' sorts before every other character.
  for (size_t i = 1; i < paths.size(); ++i) {
    EXPECT_LT(absl::StrReplaceAll(paths[i - 1], {{"/", std::string(1, '\0')}}),
              absl::StrReplaceAll(paths[i], {{"/", std::string(1, '\0')}}))
        << paths[i - 1] << " before " << paths[i];
  }
  EXPECT_EQ(paths.front(), "/");
  EXPECT_EQ(CallJson("POST", "/endpoints", 405, "{}"), json::parse(R"j({"message":"Method not allowed"})j"));
}

// The route table (/endpoints, OPTIONS) and the dispatch agree: a listed method is never 405, an
// unlisted one is 404 or 405, and every collection without placeholders answers GET.
TEST_F(AdminSurfaceTest, RouteTableAgreesWithWhatIsServed) {
  const std::vector<AdminRoute> routes = AdminRoutes(store_->kinds(), false);
  ASSERT_FALSE(routes.empty());
  for (const AdminRoute& route : routes) {
    std::string path = route.pattern;
    bool placeholders = false;
    while (path.find('{') != std::string::npos) {
      const size_t open = path.find('{');
      path.replace(open, path.find('}', open) - open + 1, "x");
      placeholders = true;
    }
    for (const char* method : {"GET", "POST", "PUT", "PATCH", "DELETE"}) {
      const bool listed = std::find(route.methods.begin(), route.methods.end(), method) != route.methods.end();
      const HttpResponse r = Call(method, path, std::string(method) == "GET" || std::string(method) == "DELETE" ? "" : "{}");
      SCOPED_TRACE(absl::StrCat(method, " ", path, " -> ", r.status, " ", r.body));
      if (listed) {
        EXPECT_NE(r.status, 405);
        if (!placeholders && std::string(method) == "GET") EXPECT_EQ(r.status, 200);
      } else {
        EXPECT_TRUE(r.status == 404 || r.status == 405);
      }
    }
    EXPECT_EQ(MatchRoute(routes, absl::StrSplit(path, '/', absl::SkipEmpty())), &route) << path;
  }
}

TEST_F(AdminSurfaceTest, PreflightAnswersFromTheRouteTable) {
  const uint64_t version = store_->CurrentVersion();
  HttpResponse root = Call("OPTIONS", "/");
  EXPECT_EQ(root.status, 204);
  EXPECT_EQ(root.body, "");
  EXPECT_EQ(Header(root, "Allow"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(Header(root, "Access-Control-Allow-Methods"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(Header(root, "Access-Control-Allow-Headers"), "Content-Type");
  EXPECT_EQ(Header(root, "Access-Control-Allow-Origin"), "<absent>");  // no --admin-gui-origin
  EXPECT_EQ(Header(root, "Access-Control-Allow-Credentials"), "<absent>");
  EXPECT_EQ(Header(root, "Access-Control-Max-Age"), "3600");
  EXPECT_EQ(Header(root, "Vary"), "<absent>");
  EXPECT_EQ(Header(Call("OPTIONS", "/routes"), "Allow"), "GET, HEAD, OPTIONS, POST");
  EXPECT_EQ(Header(Call("OPTIONS", "/routes/test"), "Allow"), "DELETE, GET, HEAD, OPTIONS, PATCH, PUT");
  EXPECT_EQ(Header(Call("OPTIONS", "/routes/test/service"), "Allow"), "GET, HEAD, OPTIONS, PATCH, PUT");
  EXPECT_EQ(Header(Call("OPTIONS", "/plugins/enabled"), "Allow"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(Header(Call("OPTIONS", "/plugins/p1"), "Allow"), "DELETE, GET, HEAD, OPTIONS, PATCH, PUT");
  EXPECT_EQ(Header(Call("OPTIONS", "/schemas/plugins/validate"), "Allow"), "OPTIONS, POST");
  EXPECT_EQ(Header(Call("OPTIONS", "/schemas/plugins/key-auth"), "Allow"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(Header(Call("OPTIONS", "/upstreams/u/targets/all"), "Allow"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(Header(Call("OPTIONS", "/upstreams/u/targets/t/healthy"), "Allow"), "OPTIONS, POST, PUT");

  HttpResponse asked = Call("OPTIONS", "/services", "",
                            {{"Origin", "http://ui.example"},
                             {"Access-Control-Request-Method", "POST"},
                             {"Access-Control-Request-Headers", "X-Header-1,X-Header-2"}});
  EXPECT_EQ(asked.status, 204);
  EXPECT_EQ(Header(asked, "Access-Control-Allow-Headers"), "X-Header-1,X-Header-2");
  EXPECT_EQ(Header(asked, "Access-Control-Allow-Origin"), "<absent>");

  HttpResponse unknown = Call("OPTIONS", "/nowhere");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body, R"({"message":"Not found"})");

  // The answer depends on the path's shape only: an existing entity and a missing one look alike.
  CallJson("POST", "/services", 201, R"j({"name":"real","host":"a"})j");
  HttpResponse existing = Call("OPTIONS", "/services/real");
  HttpResponse missing = Call("OPTIONS", "/services/ghost");
  EXPECT_EQ(existing.status, missing.status);
  EXPECT_EQ(existing.headers, missing.headers);
  EXPECT_EQ(existing.body, missing.body);
  EXPECT_EQ(store_->CurrentVersion(), version + 1);  // only the POST wrote
}

TEST_F(AdminSurfaceTest, NoCorsHeadersUnlessOriginsAreConfigured) {
  // The default: no page in a browser may read the Admin API, whatever Origin it sends.
  HttpResponse plain = Call("GET", "/services");
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(Header(plain, "Access-Control-Allow-Origin"), "<absent>");
  EXPECT_EQ(Header(plain, "Access-Control-Allow-Credentials"), "<absent>");
  HttpResponse from_page = Call("GET", "/services", "", {{"Origin", "http://evil.example"}});
  EXPECT_EQ(from_page.status, 200);
  EXPECT_EQ(Header(from_page, "Access-Control-Allow-Origin"), "<absent>");

  // Configured origins (Kong's admin_gui_origin): a listed one is echoed, any other gets the first.
  MakeApi({"https://gui.example:8002", "https://other.example"});
  HttpResponse listed = Call("GET", "/", "", {{"Origin", "https://other.example"}});
  EXPECT_EQ(Header(listed, "Access-Control-Allow-Origin"), "https://other.example");
  EXPECT_EQ(Header(listed, "Access-Control-Allow-Credentials"), "true");
  EXPECT_EQ(Header(listed, "Vary"), "Origin");
  EXPECT_EQ(Header(Call("GET", "/", "", {{"Origin", "http://evil.example"}}), "Access-Control-Allow-Origin"),
            "https://gui.example:8002");
  EXPECT_EQ(Header(Call("OPTIONS", "/", ""), "Access-Control-Allow-Origin"), "https://gui.example:8002");
  // A main request gets no preflight headers, whatever it asks.
  HttpResponse from_ui = Call("GET", "/services", "",
                              {{"Origin", "https://other.example"},
                               {"Access-Control-Request-Method", "PATCH"},
                               {"Access-Control-Request-Headers", "X-Header-1"}});
  EXPECT_EQ(Header(from_ui, "Access-Control-Allow-Methods"), "<absent>");
  EXPECT_EQ(Header(from_ui, "Access-Control-Allow-Headers"), "<absent>");
}

TEST_F(AdminSurfaceTest, WritesFromOriginsNotAllowedAreRefused) {
  const uint64_t version = store_->CurrentVersion();
  // A cross-site form or text/plain POST needs no preflight; its Origin gives it away.
  HttpResponse form = Call("POST", "/services", "name=csrf&host=evil.example",
                           {{"Origin", "http://evil.example"}, {"Content-Type", "application/x-www-form-urlencoded"}});
  EXPECT_EQ(form.status, 403) << form.body;
  EXPECT_NE(form.body.find("--admin-gui-origin"), std::string::npos);
  HttpResponse config = Call("POST", "/config", "_format_version: \"3.0\"\n",
                             {{"Origin", "http://evil.example"}, {"Content-Type", "text/plain"}});
  EXPECT_EQ(config.status, 403);
  EXPECT_EQ(Call("DELETE", "/services/x", "", {{"Origin", "null"}}).status, 403);
  EXPECT_EQ(store_->CurrentVersion(), version);
  // Tools send no Origin; configured UIs send theirs.
  CallJson("POST", "/services", 201, R"j({"name":"tool","host":"a"})j");
  MakeApi({"https://gui.example:8002"});
  EXPECT_EQ(Call("POST", "/services", R"j({"name":"ui","host":"a"})j",
                 {{"Origin", "https://gui.example:8002"}})
                .status,
            201);
  EXPECT_EQ(Call("POST", "/services", R"j({"name":"other","host":"a"})j",
                 {{"Origin", "https://gui.example:8003"}})
                .status,
            403);
}

TEST_F(AdminSurfaceTest, PreflightsPassTheTokenAndNothingElseDoes) {
  absl::StatusOr<AdminToken> token = AdminToken::FromText("t0ken", "test");
  ASSERT_TRUE(token.ok());
  MakeApi({"http://ui.example"}, *token);
  HttpResponse preflight = Call("OPTIONS", "/services/x", "", {{"Origin", "http://ui.example"}});
  EXPECT_EQ(preflight.status, 204);
  EXPECT_EQ(Header(preflight, "Access-Control-Allow-Origin"), "http://ui.example");
  EXPECT_EQ(Header(preflight, "Allow"), "DELETE, GET, HEAD, OPTIONS, PATCH, PUT");
  EXPECT_EQ(preflight.body, "");
  // The real request still needs the token; its 401 carries CORS so the UI can read it.
  HttpResponse refused = Call("GET", "/services", "", {{"Origin", "http://ui.example"}});
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(Header(refused, "Access-Control-Allow-Origin"), "http://ui.example");
  EXPECT_EQ(Call("HEAD", "/services").status, 401);
  EXPECT_EQ(Call("GET", "/services", "", {{"Authorization", "Bearer t0ken"}}).status, 200);
}

TEST_F(AdminSurfaceTest, HeadIsAnsweredAsGet) {
  CallJson("POST", "/services", 201, R"j({"name":"a","host":"a"})j");
  HttpResponse get = Call("GET", "/services/a");
  HttpResponse head = Call("HEAD", "/services/a");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, get.body);  // the HTTP server sends its length, not the body
  EXPECT_EQ(Call("HEAD", "/services/missing").status, 404);
  EXPECT_EQ(Call("HEAD", "/").status, 200);
}

// Kong's Admin API body limit (nginx_admin_client_max_body_size 10m) with the real HTTP server, as
// portico-cp runs it by default.
TEST_F(AdminSurfaceTest, BodyLimitIsKongs10MiB) {
  ASSERT_EQ(kAdminMaxBodyBytes, 10u * 1024 * 1024);
  HttpServerOptions options;
  options.max_body_bytes = kAdminMaxBodyBytes;
  AdminApi* api = api_.get();
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start("127.0.0.1", 0, [api](const HttpRequest& request) { return api->Handle(request); }, options);
  ASSERT_TRUE(server.ok()) << server.status();

  {
    test_support::RawHttpClient client((*server)->port());
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.Send(absl::StrCat("POST /services HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\n"
                                         "Content-Length: ", kAdminMaxBodyBytes + 1, "\r\n\r\n")));
    test_support::HttpReply reply = client.ReadResponse();
    ASSERT_TRUE(reply.ok) << reply.error;
    EXPECT_EQ(reply.status, 413);
    EXPECT_EQ(json::parse(reply.body, nullptr, false), json::parse(R"j({"message":"Payload too large"})j"));
  }
  {
    // Exactly 10 MiB is accepted: a service padded with blanks to the limit.
    std::string body = R"j({"name":"big","host":"a.example"})j";
    body.append(kAdminMaxBodyBytes - body.size(), ' ');
    test_support::RawHttpClient client((*server)->port(), 20000);
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.Send(absl::StrCat("POST /services HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\n"
                                         "Content-Length: ", body.size(), "\r\n\r\n", body)));
    test_support::HttpReply reply = client.ReadResponse();
    ASSERT_TRUE(reply.ok) << reply.error;
    EXPECT_EQ(reply.status, 201) << reply.body.substr(0, 200);
  }
  (*server)->Stop();
  EXPECT_EQ(CallJson("GET", "/services/big", 200)["host"], "a.example");
}

}  // namespace
}  // namespace portico::cp
