// Proof of the entity descriptors (issue 10 §5): a kind declared here and nowhere else (its proto
// message, toy_kind.proto; its descriptor and rules, below) gets its SQL table, Kong-shaped CRUD
// through the Admin API (top-level, nested under its parent, the reverse parent endpoint,
// name-or-id, PUT upsert, PATCH, pagination, tags, form bodies, Kong errors) and typed store
// access, with no line of the store or the Admin API written for it.
#include <algorithm>

#include "common/config/entities.h"
#include "common/config/entity_descriptor.h"
#include "common/config/validate.h"
#include "control_plane/admin/admin_api.h"
#include "control_plane/store/store.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/postgres_test_db.h"
#include "tests/common/temp_dir.h"
#include "toy_kind.pb.h"

namespace portico::cp {
namespace {

using nlohmann::json;
using test::v1::Toy;

// The toy's own rules (what validate.cc holds for a real kind).
FieldErrors ToyRules(const google::protobuf::Message& entity) {
  const Toy& toy = static_cast<const Toy&>(entity);
  FieldErrors errors;
  if (toy.color().empty()) {
    errors.Add("color", "required field missing");
  } else if (toy.color() != "red" && toy.color() != "green" && toy.color() != "blue") {
    errors.Add("color", "expected one of: red, green, blue");
  }
  if (toy.size() < 1 || toy.size() > 10) errors.Add("size", "value should be between 1 and 10");
  if (toy.has_squeaky() && toy.squeaky() && toy.has_sounds() && toy.sounds().values_size() == 0) {
    errors.AddEntity("a squeaky toy must make a sound");
  }
  return errors;
}

// The toy's descriptor: everything the store and the Admin API know about it.
const EntityDescriptor& ToysKind() {
  static const EntityDescriptor* const kind = new EntityDescriptor(
      {
          .name = "toys",
          .endpoint_key = "name",
          .fields =
              {
                  {.name = "name", .type = FieldType::kString, .unique = true},
                  {.name = "color", .type = FieldType::kString, .required = true},
                  {.name = "size", .type = FieldType::kInteger, .default_json = "3"},
                  {.name = "service",
                   .type = FieldType::kForeignKey,
                   .references = "services",
                   .on_delete = OnDelete::kCascade},
                  {.name = "tags", .type = FieldType::kSet},
                  {.name = "sounds", .type = FieldType::kArray},
                  {.name = "squeaky", .type = FieldType::kBoolean},
              },
          .validate = [](const google::protobuf::Message& m) { return ValidateEntityUtf8First(m, &ToyRules); },
      },
      Toy::default_instance());
  return *kind;
}

const EntityRegistry& KindsWithToys() {
  static const EntityRegistry* const kinds = new EntityRegistry(
      {&CertificatesKind(), &CaCertificatesKind(), &SnisKind(), &ServicesKind(), &RoutesKind(), &ToysKind()});
  return *kinds;
}

class ToyKindTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.empty());
    absl::StatusOr<std::string> location = test_support::TestStoreLocation(dir_ + "/toys.db", &db_);
    ASSERT_TRUE(location.ok()) << location.status();
    location_ = *location;
    Open();
  }
  void Open() {
    api_.reset();
    store_.reset();
    auto store = Store::Open(location_, clock_, KindsWithToys());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    AdminOptions options{"node-1", "cp.local", "127.0.0.1:8001", "0.0.0.0:8005", location_};
    api_ = std::make_unique<AdminApi>(store_.get(), nullptr, options, [this] { ++changes_; }, clock_);
  }

  json CallJson(const std::string& method, const std::string& target, int status, const std::string& body = "",
                const std::string& content_type = "application/json") {
    HttpRequest request;
    request.method = method;
    request.target = target;
    const size_t q = target.find('?');
    request.path = target.substr(0, q);
    request.query = q == std::string::npos ? "" : target.substr(q + 1);
    if (!body.empty()) request.headers.emplace_back("Content-Type", content_type);
    request.body = body;
    HttpResponse r = api_->Handle(request);
    EXPECT_EQ(r.status, status) << method << " " << target << " -> " << r.body;
    if (r.body.empty()) return nullptr;
    json parsed = json::parse(r.body, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << r.body;
    return parsed;
  }

  FakeClock clock_{1700000000};
  test_support::TempDir tmp_;  // outlives the store and the API below
  const std::string dir_ = tmp_.path();
  std::unique_ptr<test_support::PostgresTestDb> db_;  // with PORTICO_TEST_STORE=postgres
  std::string location_;                               // the store's
  std::unique_ptr<Store> store_;
  std::unique_ptr<AdminApi> api_;
  int changes_ = 0;
};

TEST_F(ToyKindTest, CrudWithKongShapesDefaultsNameOrIdAndUpsert) {
  json duck = CallJson("POST", "/toys", 201, R"j({"name":"duck","color":"red"})j");
  json expected = json::parse(R"j({"created_at":1700000000,"updated_at":1700000000,"name":"duck","color":"red",
      "size":3,"service":null,"tags":null,"sounds":null,"squeaky":null})j");
  expected["id"] = duck["id"];
  EXPECT_EQ(duck, expected);
  const std::string id = duck["id"];
  EXPECT_EQ(CallJson("GET", "/toys/duck", 200), expected);
  EXPECT_EQ(CallJson("GET", "/toys/" + id, 200), expected);

  clock_.Advance(10);
  json patched = CallJson("PATCH", "/toys/duck", 200, R"j({"size":5,"tags":["bath"],"sounds":["quack"]})j");
  EXPECT_EQ(patched["size"], 5);
  EXPECT_EQ(patched["color"], "red");
  EXPECT_EQ(patched["tags"], json::parse(R"j(["bath"])j"));
  EXPECT_EQ(patched["created_at"], 1700000000);
  EXPECT_EQ(patched["updated_at"], 1700000010);
  // PUT replaces: omitted fields go back to their defaults; the id stays.
  json put = CallJson("PUT", "/toys/duck", 200, R"j({"color":"blue"})j");
  EXPECT_EQ(put["id"], id);
  EXPECT_EQ(put["size"], 3);
  EXPECT_EQ(put["tags"], nullptr);
  // PUT by a new name creates it (Kong's upsert by endpoint key); null resets to the default.
  json frog = CallJson("PUT", "/toys/frog", 200, R"j({"color":"green","size":null,"squeaky":false})j");
  EXPECT_EQ(frog["name"], "frog");
  EXPECT_EQ(frog["size"], 3);
  EXPECT_EQ(frog["squeaky"], false);

  // Lists: keyset pages by id, tags.
  CallJson("PATCH", "/toys/frog", 200, R"j({"tags":["pond"]})j");
  json page = CallJson("GET", "/toys?size=1", 200);
  ASSERT_EQ(page["data"].size(), 1u);
  ASSERT_TRUE(page["next"].is_string());
  json page2 = CallJson("GET", page["next"].get<std::string>(), 200);
  ASSERT_EQ(page2["data"].size(), 1u);
  EXPECT_EQ(page2["next"], nullptr);
  EXPECT_LT(page["data"][0]["id"].get<std::string>(), page2["data"][0]["id"].get<std::string>());
  json pond = CallJson("GET", "/toys?tags=pond", 200);
  ASSERT_EQ(pond["data"].size(), 1u);
  EXPECT_EQ(pond["data"][0]["name"], "frog");

  EXPECT_EQ(CallJson("DELETE", "/toys/duck", 204), nullptr);
  CallJson("GET", "/toys/" + id, 404);
  CallJson("DELETE", "/toys/duck", 204);  // already gone: still 204
  EXPECT_EQ(CallJson("DELETE", "/toys", 405), json::parse(R"j({"message":"Method not allowed"})j"));
  EXPECT_EQ(store_->CurrentVersion(), 6u);
  EXPECT_EQ(changes_, 6);
}

TEST_F(ToyKindTest, ErrorsAreKongsFromTheCodecTheRulesAndTheStore) {
  EXPECT_EQ(CallJson("POST", "/toys", 400, R"j({"color":"pink","size":"x","bogus":1})j"),
            json::parse(R"j({"code":2,"name":"schema violation",
              "message":"3 schema violations (bogus: unknown field; color: expected one of: red, green, blue; size: expected an integer)",
              "fields":{"bogus":"unknown field","color":"expected one of: red, green, blue","size":"expected an integer"}})j"));
  EXPECT_EQ(CallJson("POST", "/toys", 400, R"j({"name":"x"})j")["fields"],
            json::parse(R"j({"color":"required field missing"})j"));
  EXPECT_EQ(CallJson("POST", "/toys", 400, R"j({"color":"red","squeaky":true,"sounds":[]})j")["fields"],
            json::parse(R"j({"@entity":["a squeaky toy must make a sound"]})j"));
  // Every string is UTF-8, for this kind too (the generic check runs first).
  EXPECT_EQ(CallJson("POST", "/toys", 400, "name=b%ff&color=red", "application/x-www-form-urlencoded")["fields"]["name"],
            "expected a valid UTF-8 string (invalid byte at offset 1)");

  CallJson("POST", "/toys", 201, R"j({"name":"duck","color":"red"})j");
  EXPECT_EQ(CallJson("POST", "/toys", 409, R"j({"name":"duck","color":"blue"})j"),
            json::parse(R"j({"code":5,"name":"unique constraint violation",
              "message":"UNIQUE violation detected on '{name=\"duck\"}'","fields":{"name":"duck"}})j"));
  const std::string missing = "12345678-1234-4234-8234-123456789abc";
  EXPECT_EQ(CallJson("POST", "/toys", 400, json{{"color", "red"}, {"service", {{"id", missing}}}}.dump()),
            json({{"code", 4},
                  {"name", "foreign key violation"},
                  {"message", "the foreign key '{id=\"" + missing + "\"}' does not reference an existing 'services' entity."},
                  {"fields", {{"service", {{"id", missing}}}}}}));
  EXPECT_EQ(CallJson("POST", "/toys", 400, R"j({"color":"red","service":{"name":"ghost"}})j")["message"],
            "foreign key unresolved (service.name: the foreign key cannot be resolved with '{name=\"ghost\"}' "
            "for an existing 'services' entity)");
  EXPECT_EQ(store_->CurrentVersion(), 1u);  // only the one good write
}

TEST_F(ToyKindTest, NestedReverseAndCascadeFollowTheForeignKey) {
  const std::string sid = CallJson("POST", "/services", 201, R"j({"name":"shop","host":"shop.example"})j")["id"];
  // Form body, with the parent by name in the body, then nested under the parent's URL.
  json duck = CallJson("POST", "/toys", 201,
                       "name=duck&color=green&size=4&sounds[]=quack&sounds[]=squeak&squeaky=true&service.name=shop",
                       "application/x-www-form-urlencoded");
  EXPECT_EQ(duck["service"], json({{"id", sid}}));
  EXPECT_EQ(duck["sounds"], json::parse(R"j(["quack","squeak"])j"));
  EXPECT_EQ(duck["squeaky"], true);
  json frog = CallJson("POST", "/services/shop/toys", 201, R"j({"name":"frog","color":"green"})j");
  EXPECT_EQ(frog["service"], json({{"id", sid}}));
  CallJson("POST", "/toys", 201, R"j({"name":"loner","color":"blue"})j");

  EXPECT_EQ(CallJson("GET", "/services/shop/toys", 200)["data"].size(), 2u);
  EXPECT_EQ(CallJson("GET", "/services/shop/toys/frog", 200)["id"], frog["id"]);
  CallJson("GET", "/services/shop/toys/loner", 404);  // not this service's
  EXPECT_EQ(CallJson("GET", "/toys/frog/service", 200)["id"], sid);
  EXPECT_EQ(CallJson("PATCH", "/toys/frog/service", 200, R"j({"port":8080})j")["port"], 8080);
  CallJson("DELETE", "/toys/frog/service", 405);
  CallJson("GET", "/toys/loner/service", 404);

  // ON DELETE CASCADE: deleting the service deletes its toys in the same write.
  const uint64_t version = store_->CurrentVersion();
  CallJson("DELETE", "/services/shop", 204);
  EXPECT_EQ(store_->CurrentVersion(), version + 1);
  CallJson("GET", "/toys/duck", 404);
  CallJson("GET", "/toys/frog", 404);
  EXPECT_EQ(CallJson("GET", "/toys", 200)["data"].size(), 1u);

  // The routes' RESTRICT still holds next to the toys' CASCADE.
  CallJson("POST", "/services", 201, R"j({"name":"zoo","host":"zoo.example"})j");
  CallJson("POST", "/services/zoo/toys", 201, R"j({"name":"lion","color":"red"})j");
  CallJson("POST", "/services/zoo/routes", 201, R"j({"paths":["/zoo"]})j");
  EXPECT_EQ(CallJson("DELETE", "/services/zoo", 400)["message"],
            "an existing 'routes' entity references this 'services' entity");
  CallJson("GET", "/toys/lion", 200);
}

TEST_F(ToyKindTest, TypedStoreAccessAndTheTableOutliveReopening) {
  Toy toy;
  toy.set_name("robot");
  toy.set_color("blue");
  toy.set_size(7);
  auto stored = store_->Insert(toy);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->created_at(), 1700000000);
  EXPECT_EQ(store_->GetByEndpointKey<Toy>("robot")->size(), 7);
  // Not an exported kind: the snapshot's config is untouched.
  auto config = store_->ReadConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->version.version, 1u);
  EXPECT_TRUE(config->config.services.empty() && config->config.routes.empty());

  Open();  // the table was created once and is reused
  EXPECT_EQ(CallJson("GET", "/toys/robot", 200)["size"], 7);
  // The numbered migrations only: no migration for the toys table.
  auto migrations = store_->AppliedMigrations();
  ASSERT_TRUE(migrations.ok()) << migrations.status();
  EXPECT_GE(migrations->size(), 3u);
  for (const auto& [id, name] : *migrations) EXPECT_EQ(name.find("toy"), std::string::npos) << name;
  // A store without the kind has no such endpoints (the table stays, unused).
  auto plain = Store::Open(location_, clock_);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE((*plain)->Get<Toy>(stored->id()).ok());
}

// The tooling endpoints derive from the descriptor too: the kind's schema, its routes in
// /endpoints and OPTIONS, and its tags in /tags.
TEST_F(ToyKindTest, SchemaEndpointsOptionsAndTagsIncludeTheKind) {
  json schema = CallJson("GET", "/schemas/toys", 200);
  ASSERT_EQ(schema["fields"].size(), 10u);  // id, created_at, updated_at and the seven declared
  EXPECT_EQ(schema["fields"][4], json::parse(R"j({"color":{"type":"string","required":true}})j"));
  EXPECT_EQ(schema["fields"][5], json::parse(R"j({"size":{"type":"integer","default":3}})j"));
  EXPECT_EQ(schema["fields"][6],
            json::parse(R"j({"service":{"type":"foreign","reference":"services","on_delete":"cascade"}})j"));
  EXPECT_EQ(schema["fields"][8], json::parse(R"j({"sounds":{"type":"array","elements":{"type":"string"}}})j"));

  json endpoints = CallJson("GET", "/endpoints", 200);
  for (const char* path : {"/toys", "/toys/{toys}", "/toys/{toys}/service", "/services/{services}/toys",
                           "/services/{services}/toys/{toys}"}) {
    EXPECT_NE(std::find(endpoints["data"].begin(), endpoints["data"].end(), json(path)), endpoints["data"].end())
        << path;
  }
  HttpRequest options;
  options.method = "OPTIONS";
  options.target = options.path = "/services/s/toys";
  HttpResponse preflight = api_->Handle(options);
  EXPECT_EQ(preflight.status, 204);
  bool allow_seen = false;
  for (const auto& [name, value] : preflight.headers) {
    if (name == "Allow") {
      allow_seen = true;
      EXPECT_EQ(value, "GET, HEAD, OPTIONS, POST");
    }
  }
  EXPECT_TRUE(allow_seen);

  const std::string id = CallJson("POST", "/toys", 201, R"j({"name":"duck","color":"red","tags":["bath"]})j")["id"];
  EXPECT_EQ(CallJson("GET", "/tags/bath", 200),
            json({{"data", {{{"entity_name", "toys"}, {"entity_id", id}, {"tag", "bath"}}}}, {"next", nullptr}}));
}

}  // namespace
}  // namespace portico::cp
