#include "control_plane/admin/admin_api.h"

#include <stdlib.h>

#include <filesystem>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/base/uuid.h"
#include "common/config/utf8_fields.h"
#include "common/plugins/plugin_schema.h"
#include "control_plane/cluster_status.h"
#include "control_plane/store/store.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/delegating_store.h"
#include "tests/common/jwt_signer.h"
#include "tests/unit/control_plane/admin/admin_fixture.h"

namespace portico::cp {
namespace {

using nlohmann::json;

class AdminApiTest : public AdminFixture {
 protected:
  std::string CreateService(const std::string& name) {
    return CallJson("POST", "/services", 201, json{{"name", name}, {"host", "example.com"}}.dump())["id"];
  }
};

TEST_F(AdminApiTest, TokenIsCheckedBeforeAnythingElse) {
  AdminOptions options{"node-1", "cp.local", "127.0.0.1:8001", "0.0.0.0:8005", location_};
  absl::StatusOr<AdminToken> token = AdminToken::FromText("t0ken", "test");
  ASSERT_TRUE(token.ok());
  options.token = *token;
  api_ = std::make_unique<AdminApi>(store_.get(), &data_planes_, options, [this] { ++changes_; }, clock_);

  HttpRequest post;
  post.method = "POST";
  post.target = post.path = "/services";
  post.headers.emplace_back("Content-Type", "application/json");
  post.body = R"({"name":"svc","host":"example.com"})";
  HttpResponse refused = api_->Handle(post);
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(refused.body, R"({"message":"Unauthorized"})");
  EXPECT_EQ(changes_, 0);
  HttpRequest unknown = post;
  unknown.method = "GET";
  unknown.target = unknown.path = "/no-such-endpoint";
  EXPECT_EQ(api_->Handle(unknown).status, 401);  // not 404: nothing is revealed without the token

  post.headers.emplace_back("Authorization", "Bearer t0ken");
  EXPECT_EQ(api_->Handle(post).status, 201);
  EXPECT_EQ(changes_, 1);
  HttpRequest get;
  get.method = "GET";
  get.target = get.path = "/services/svc";
  EXPECT_EQ(api_->Handle(get).status, 401);
  get.headers.emplace_back("authorization", "bearer t0ken");
  EXPECT_EQ(api_->Handle(get).status, 200);
}

TEST_F(AdminApiTest, ServiceCrudWithKongDefaults) {
  json created = CallJson("POST", "/services", 201, R"j({"name":"svc","host":"example.com"})j");
  const std::string id = created["id"];
  EXPECT_TRUE(IsUuid(id));
  json expected = json::parse(R"j({"created_at":1700000000,"updated_at":1700000000,"name":"svc",
    "retries":5,"protocol":"http","host":"example.com","port":80,"path":null,
    "connect_timeout":60000,"write_timeout":60000,"read_timeout":60000,"tags":null,
    "client_certificate":null,"tls_verify":null,"tls_verify_depth":null,"ca_certificates":null,
    "enabled":true})j");
  expected["id"] = id;
  EXPECT_EQ(created, expected);
  EXPECT_EQ(changes_, 1);
  EXPECT_EQ(store_->CurrentVersion(), 1u);

  EXPECT_EQ(CallJson("GET", "/services/" + id, 200), expected);
  EXPECT_EQ(CallJson("GET", "/services/svc", 200), expected);
  json list = CallJson("GET", "/services", 200);
  EXPECT_EQ(list, json({{"data", json::array({expected})}, {"next", nullptr}}));

  clock_.Advance(10);
  json patched = CallJson("PATCH", "/services/svc", 200, R"j({"port":8080,"tags":["a"]})j");
  EXPECT_EQ(patched["port"], 8080);
  EXPECT_EQ(patched["host"], "example.com");
  EXPECT_EQ(patched["tags"], json::parse(R"j(["a"])j"));
  EXPECT_EQ(patched["created_at"], 1700000000);
  EXPECT_EQ(patched["updated_at"], 1700000010);

  // PUT replaces: omitted fields go back to defaults.
  json put = CallJson("PUT", "/services/" + id, 200, R"j({"host":"other.com","name":"svc"})j");
  EXPECT_EQ(put["port"], 80);
  EXPECT_EQ(put["tags"], nullptr);
  EXPECT_EQ(put["host"], "other.com");
  EXPECT_EQ(put["created_at"], 1700000000);
  EXPECT_EQ(put["id"], id);

  HttpResponse del = Call("DELETE", "/services/" + id);
  EXPECT_EQ(del.status, 204);
  EXPECT_EQ(del.body, "");
  EXPECT_EQ(Call("GET", "/services/" + id).status, 404);
  EXPECT_EQ(Call("DELETE", "/services/" + id).status, 204);  // already gone: still 204
  EXPECT_EQ(Call("DELETE", "/services/never-existed").status, 204);
  EXPECT_EQ(store_->CurrentVersion(), 4u);
  EXPECT_EQ(changes_, 4);
}

TEST_F(AdminApiTest, PutByNameCreatesThenReplaces) {
  json created = CallJson("PUT", "/services/foo", 200, R"j({"host":"a.com","port":81})j");
  EXPECT_EQ(created["name"], "foo");
  EXPECT_TRUE(IsUuid(created["id"].get<std::string>()));
  json replaced = CallJson("PUT", "/services/foo", 200, R"j({"host":"b.com"})j");
  EXPECT_EQ(replaced["id"], created["id"]);
  EXPECT_EQ(replaced["port"], 80);
  EXPECT_EQ(replaced["host"], "b.com");
  EXPECT_EQ(CallJson("GET", "/services", 200)["data"].size(), 1u);
  // PUT with a fresh UUID key creates with that id.
  const std::string new_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
  EXPECT_EQ(CallJson("PUT", "/services/" + new_id, 200, R"j({"host":"c.com"})j")["id"], new_id);
}

TEST_F(AdminApiTest, UrlShorthand) {
  json s = CallJson("POST", "/services", 201, R"j({"name":"u","url":"https://api.example.com/v1"})j");
  EXPECT_EQ(s["protocol"], "https");
  EXPECT_EQ(s["host"], "api.example.com");
  EXPECT_EQ(s["port"], 443);
  EXPECT_EQ(s["path"], "/v1");
  json s2 = CallJson("POST", "/services", 201, R"j({"url":"http://10.1.2.3:9000"})j");
  EXPECT_EQ(s2["port"], 9000);
  EXPECT_EQ(s2["path"], nullptr);
  json bad = CallJson("POST", "/services", 400, R"j({"url":"http://a.com","port":1})j");
  EXPECT_EQ(bad["code"], 2);
  EXPECT_TRUE(bad["fields"].contains("url"));
}

TEST_F(AdminApiTest, WebSocketProtocolsOnServicesAndRoutes) {
  json wss = CallJson("POST", "/services", 201, R"j({"name":"live","url":"wss://live.example.com/feed"})j");
  EXPECT_EQ(wss["protocol"], "wss");
  EXPECT_EQ(wss["port"], 443);
  json ws = CallJson("POST", "/services", 201, R"j({"name":"chat","url":"ws://chat.example.com"})j");
  EXPECT_EQ(ws["protocol"], "ws");
  EXPECT_EQ(ws["port"], 80);
  json verify = CallJson("PATCH", "/services/live", 200, R"j({"tls_verify":true})j");
  EXPECT_EQ(verify["tls_verify"], true);
  json no_verify = CallJson("PATCH", "/services/chat", 400, R"j({"tls_verify":true})j");
  EXPECT_EQ(no_verify["fields"]["tls_verify"], "value must be null");

  json route = CallJson("POST", "/services/chat/routes", 201, R"j({"protocols":["ws","wss"],"paths":["/chat"]})j");
  EXPECT_EQ(route["protocols"], json::parse(R"j(["ws","wss"])j"));
  CallJson("POST", "/services/live/routes", 201, R"j({"protocols":["wss"],"snis":["live.example.com"]})j");
  json mixed = CallJson("POST", "/routes", 400, R"j({"protocols":["http","ws"],"paths":["/m"]})j");
  EXPECT_EQ(mixed["fields"]["protocols"],
            "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), ('tls_passthrough'), "
            "('grpc', 'grpcs'), ('ws', 'wss')");
  json empty = CallJson("POST", "/routes", 400, R"j({"protocols":["ws"]})j");
  EXPECT_EQ(empty["fields"]["@entity"][0],
            "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'ws'");
  json snis = CallJson("POST", "/routes", 400, R"j({"protocols":["ws"],"paths":["/x"],"snis":["a.example.com"]})j");
  EXPECT_EQ(snis["fields"]["@entity"][0],
            "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', 'tls_passthrough' or 'wss'");
  json unknown = CallJson("POST", "/routes", 400, R"j({"protocols":["wsx"],"paths":["/x"]})j");
  EXPECT_TRUE(unknown["fields"].contains("protocols"));
}

TEST_F(AdminApiTest, FormEncodedBodies) {
  const std::string sid = CallJson("POST", "/services", 201, "name=svc&host=example.com&port=8080&retries=3",
                                   "application/x-www-form-urlencoded")["id"];
  json s = CallJson("GET", "/services/svc", 200);
  EXPECT_EQ(s["port"], 8080);
  EXPECT_EQ(s["retries"], 3);
  json r = CallJson("POST", "/routes", 201,
                    "name=r1&paths[]=/a&paths[]=/b&methods=GET&service.id=" + sid +
                        "&headers.x-foo=a&headers.x-foo=b&strip_path=false&hosts=%2A.example.com",
                    "application/x-www-form-urlencoded; charset=utf-8");
  EXPECT_EQ(r["paths"], json::parse(R"j(["/a","/b"])j"));
  EXPECT_EQ(r["methods"], json::parse(R"j(["GET"])j"));
  EXPECT_EQ(r["hosts"], json::parse(R"j(["*.example.com"])j"));
  EXPECT_EQ(r["headers"], json::parse(R"j({"x-foo":["a","b"]})j"));
  EXPECT_EQ(r["strip_path"], false);
  EXPECT_EQ(r["service"], json({{"id", sid}}));
  json bad = CallJson("POST", "/services", 400, "host=example.com&port=abc", "application/x-www-form-urlencoded");
  EXPECT_EQ(bad["fields"], json::parse(R"j({"port":"expected an integer"})j"));
}

TEST_F(AdminApiTest, ErrorShapesAreKongs) {
  EXPECT_EQ(CallJson("POST", "/services", 400, R"j({"name":"x"})j"),
            json::parse(R"j({"code":2,"name":"schema violation",
              "message":"schema violation (host: required field missing)",
              "fields":{"host":"required field missing"}})j"));
  EXPECT_EQ(CallJson("POST", "/services", 400, R"j({"host":"a.com","port":70000,"foo":1})j"),
            json::parse(R"j({"code":2,"name":"schema violation",
              "message":"2 schema violations (foo: unknown field; port: value should be between 0 and 65535)",
              "fields":{"foo":"unknown field","port":"value should be between 0 and 65535"}})j"));
  EXPECT_EQ(CallJson("POST", "/routes", 400, R"j({"paths":["/ok","nope"]})j"),
            json::parse(R"j({"code":2,"name":"schema violation",
              "message":"schema violation (paths.2: should start with: / (fixed path) or ~ (regex path))",
              "fields":{"paths":[null,"should start with: / (fixed path) or ~ (regex path)"]}})j"));
  EXPECT_EQ(CallJson("POST", "/routes", 400, R"j({"name":"r"})j"),
            json::parse(R"j({"code":2,"name":"schema violation",
              "message":"schema violation (must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https')",
              "fields":{"@entity":["must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"]}})j"));

  CreateService("foo");
  EXPECT_EQ(CallJson("POST", "/services", 409, R"j({"name":"foo","host":"b.com"})j"),
            json::parse(R"j({"code":5,"name":"unique constraint violation",
              "message":"UNIQUE violation detected on '{name=\"foo\"}'","fields":{"name":"foo"}})j"));

  const std::string missing = "12345678-1234-4234-8234-123456789abc";
  EXPECT_EQ(CallJson("POST", "/routes", 400, json{{"paths", {"/"}}, {"service", {{"id", missing}}}}.dump()),
            json({{"code", 4},
                  {"name", "foreign key violation"},
                  {"message", "the foreign key '{id=\"" + missing +
                                  "\"}' does not reference an existing 'services' entity."},
                  {"fields", {{"service", {{"id", missing}}}}}}));
  // By name: Kong's code 13 (kong/db/dao resolve_foreign), not the code 4 of an unknown id.
  EXPECT_EQ(CallJson("POST", "/routes", 400, R"j({"paths":["/"],"service":{"name":"ghost"}})j"),
            json::parse(R"j({"code":13,"name":"foreign keys unresolved",
              "message":"foreign key unresolved (service.name: the foreign key cannot be resolved with '{name=\"ghost\"}' for an existing 'services' entity)",
              "fields":{"service":{"name":"the foreign key cannot be resolved with '{name=\"ghost\"}' for an existing 'services' entity"}}})j"));

  CallJson("POST", "/routes", 201, R"j({"paths":["/"],"service":{"name":"foo"}})j");
  EXPECT_EQ(CallJson("DELETE", "/services/foo", 400),
            json::parse(R"j({"code":4,"name":"foreign key violation",
              "message":"an existing 'routes' entity references this 'services' entity",
              "fields":{"@referenced_by":"routes"}})j"));

  EXPECT_EQ(CallJson("GET", "/services/nope", 404), json::parse(R"j({"message":"Not found"})j"));
  EXPECT_EQ(CallJson("GET", "/nothing/here", 404), json::parse(R"j({"message":"Not found"})j"));
  EXPECT_EQ(CallJson("DELETE", "/services", 405), json::parse(R"j({"message":"Method not allowed"})j"));
  EXPECT_EQ(CallJson("POST", "/services", 400, "{not json"), json::parse(R"j({"message":"Cannot parse JSON body"})j"));
  EXPECT_EQ(CallJson("POST", "/services", 415, "host: a", "text/yaml")["message"], "Unsupported Content-Type");

  HttpRequest two;
  two.method = "POST";
  two.path = two.target = "/services";
  two.headers = {{"Content-Type", "application/json"}, {"content-type", "application/json"}};
  two.body = R"j({"host":"a.com"})j";
  HttpResponse two_types = api_->Handle(two);
  EXPECT_EQ(two_types.status, 400);
  EXPECT_EQ(json::parse(two_types.body), json::parse(R"j({"message":"Bad request: multiple Content-Type headers"})j"))
      << "docs/admin-api.md names this text";
}

// A datastore that cannot be reached (PostgreSQL down): every store call fails with Unavailable.
class UnreachableStore : public DelegatingStore {
 public:
  using DelegatingStore::DelegatingStore;
  static absl::Status Down() {
    return absl::UnavailableError("cannot reach PostgreSQL: connection to server at \"127.0.0.1\" failed");
  }
  absl::StatusOr<EntityPtr> GetEntity(const EntityDescriptor&, absl::string_view) override { return Down(); }
  absl::StatusOr<EntityPtr> GetEntityByField(const EntityDescriptor&, absl::string_view, absl::string_view) override {
    return Down();
  }
  absl::StatusOr<ListPage<EntityPtr>> ListEntities(const EntityDescriptor&, const ListQuery&) override { return Down(); }
  absl::StatusOr<EntityPtr> WriteEntity(const EntityDescriptor&, const google::protobuf::Message&, WriteMode) override {
    return Down();
  }
  absl::StatusOr<bool> DeleteEntity(const EntityDescriptor&, absl::string_view) override { return Down(); }
  absl::StatusOr<std::vector<EntityPtr>> WriteBatch(const std::vector<BatchStep>&) override { return Down(); }
  absl::StatusOr<std::vector<EntityPtr>> ReplaceConfig(const std::vector<KindRows>&) override { return Down(); }
  absl::StatusOr<StoredConfig> ReadConfig() override { return Down(); }
  absl::StatusOr<ListPage<TaggedEntity>> ListTagged(const TagQuery&) override { return Down(); }
  absl::Status Ping() override { return Down(); }
  uint64_t CurrentVersion() override { return 0; }
};

// Every endpoint answers 503 with Kong's shape when the datastore cannot be reached, and nothing
// is written (the store is reached again afterwards: the data is as before).
TEST_F(AdminApiTest, AnUnreachableDatastoreGives503OnEveryEndpoint) {
  const std::string id = CreateService("before");
  UnreachableStore down(*store_);
  api_ = std::make_unique<AdminApi>(&down, &data_planes_, DefaultOptions(), [this] { ++changes_; }, clock_);
  const int changes = changes_;
  const std::vector<std::tuple<std::string, std::string, std::string>> calls = {
      {"GET", "/services", ""},
      {"GET", "/services/before", ""},
      {"GET", "/services/" + id + "/routes", ""},
      {"POST", "/services", R"j({"name":"new","host":"h.example"})j"},
      {"PUT", "/services/put-one", R"j({"host":"h.example"})j"},
      {"PATCH", "/services/before", R"j({"port":81})j"},
      {"DELETE", "/services/before", ""},
      {"POST", "/routes", R"j({"paths":["/x"],"service":{"name":"before"}})j"},
      {"GET", "/tags", ""},
      {"GET", "/tags/prod", ""},
      {"GET", "/config", ""},
      {"POST", "/config", R"j({"config":"_format_version: \"3.0\"\nservices: []\n"})j"},
      {"GET", "/plugins", ""},
  };
  for (const auto& [method, target, body] : calls) {
    SCOPED_TRACE(method + " " + target);
    json answer = CallJson(method, target, 503, body);
    ASSERT_TRUE(answer.contains("message")) << answer;
    // The cause (hosts, addresses, users) stays in the log.
    EXPECT_EQ(answer["message"], "the datastore is unavailable") << answer;
  }
  EXPECT_EQ(changes_, changes);
  EXPECT_EQ(CallJson("GET", "/status", 200)["database"]["reachable"], false);
  MakeApi(DefaultOptions());
  json listed = CallJson("GET", "/services", 200);
  ASSERT_EQ(listed["data"].size(), 1u);
  EXPECT_EQ(listed["data"][0]["port"], 80);
}

// Another control plane on the same database: before the first `interleave` writes this store
// sees, a write of another service lands through a second handle on the database (another CP),
// after the Admin API's reads and checks and before its own write.
class InterleavingStore : public DelegatingStore {
 public:
  InterleavingStore(Store& inner, Store& other, int interleave) : DelegatingStore(inner), other_(other), left_(interleave) {}
  absl::StatusOr<EntityPtr> WriteEntity(const EntityDescriptor& kind, const google::protobuf::Message& entity,
                                        WriteMode mode) override {
    ++writes_;
    if (left_ > 0) {
      --left_;
      config::v1::Service other;
      other.set_name(other_name.empty() ? absl::StrCat("other-", writes_) : other_name);
      other.set_host("other.example");
      other.set_port(80);
      other.set_protocol("http");
      // On a thread of its own, as another CP's: this thread's VersionFence must not cover it.
      std::thread([&] { EXPECT_TRUE(other_.Insert(other).ok()); }).join();
    }
    return DelegatingStore::WriteEntity(kind, entity, mode);
  }
  int writes_ = 0;
  std::string other_name;  // "" = a new name each time

 private:
  Store& other_;
  int left_;
};

TEST_F(AdminApiTest, AWriteMadeStaleByAnotherControlPlaneRunsAgainOnFreshReads) {
  auto other = Store::Open(location_, clock_);
  ASSERT_TRUE(other.ok()) << other.status();
  InterleavingStore store(*store_, **other, 1);
  api_ = std::make_unique<AdminApi>(&store, &data_planes_, DefaultOptions(), [this] { ++changes_; }, clock_);
  const uint64_t before = store_->CurrentVersion();
  CallJson("POST", "/services", 201, R"j({"name":"mine","host":"a.com"})j");
  EXPECT_EQ(store.writes_, 2);  // refused once (stale), then written
  EXPECT_EQ(store_->CurrentVersion(), before + 2);
  EXPECT_EQ(CallJson("GET", "/services", 200)["data"].size(), 2u);
  CallJson("GET", "/services/mine", 200);
}

TEST_F(AdminApiTest, TheRetryOfAStaleWriteSeesWhatTheOtherControlPlaneWrote) {
  auto other = Store::Open(location_, clock_);
  ASSERT_TRUE(other.ok()) << other.status();
  InterleavingStore store(*store_, **other, 1);
  store.other_name = "dup";  // the other CP takes the name between this one's check and write
  api_ = std::make_unique<AdminApi>(&store, &data_planes_, DefaultOptions(), [this] { ++changes_; }, clock_);
  const uint64_t before = store_->CurrentVersion();
  json answer = CallJson("POST", "/services", 409, R"j({"name":"dup","host":"mine.example"})j");
  EXPECT_EQ(answer["name"], "unique constraint violation") << answer;
  EXPECT_EQ(store_->CurrentVersion(), before + 1);  // the other CP's write only
  EXPECT_EQ(CallJson("GET", "/services/dup", 200)["host"], "other.example");
}

TEST_F(AdminApiTest, AWriteThatStaysStaleIsRefusedWith409AndWritesNothing) {
  auto other = Store::Open(location_, clock_);
  ASSERT_TRUE(other.ok()) << other.status();
  InterleavingStore store(*store_, **other, 1000);
  api_ = std::make_unique<AdminApi>(&store, &data_planes_, DefaultOptions(), [this] { ++changes_; }, clock_);
  const int changes = changes_;
  json answer = CallJson("POST", "/services", 409, R"j({"name":"never","host":"a.com"})j");
  EXPECT_NE(answer["message"].get<std::string>().find("send it again"), std::string::npos) << answer;
  EXPECT_EQ(store.writes_, 50);
  EXPECT_EQ(changes_, changes);
  CallJson("GET", "/services/never", 404);
}

// A name with a NUL character: SQLite keeps it whole (another name than "bob"); PostgreSQL's text
// cannot hold it, so the write is refused with a 400 naming the field (never cut to "bob": no
// false 409, no wrong GET by name).
TEST_F(AdminApiTest, ANameWithANulCharacterIsKeptWholeOrRefusedWith400) {
  CallJson("POST", "/consumers", 201, R"j({"username":"bob"})j");
  if (test_support::TestStoreIsPostgres()) {
    json refused = CallJson("POST", "/consumers", 400, R"j({"username":"bob\u0000x"})j");
    EXPECT_EQ(refused["name"], "schema violation") << refused;
    EXPECT_TRUE(refused["fields"].contains("username")) << refused;
    EXPECT_EQ(CallJson("GET", "/consumers", 200)["data"].size(), 1u);
  } else {
    CallJson("POST", "/consumers", 201, R"j({"username":"bob\u0000x"})j");
    EXPECT_EQ(CallJson("GET", "/consumers", 200)["data"].size(), 2u);
  }
  EXPECT_EQ(CallJson("GET", "/consumers/bob", 200)["username"], "bob");
}

TEST_F(AdminApiTest, RejectedWritesChangeNothing) {
  const std::string id = CreateService("keep");
  CallJson("POST", "/routes", 201, json{{"paths", {"/"}}, {"service", {{"id", id}}}}.dump());
  const uint64_t version = store_->CurrentVersion();
  const int changes = changes_;
  const json before = CallJson("GET", "/services/keep", 200);

  CallJson("POST", "/services", 400, R"j({"host":"bad host"})j");
  CallJson("POST", "/services", 409, R"j({"name":"keep","host":"a.com"})j");
  CallJson("PATCH", "/services/keep", 400, R"j({"port":-1})j");
  CallJson("PUT", "/services/keep", 400, R"j({"protocol":"ftp","host":"a.com"})j");
  CallJson("DELETE", "/services/keep", 400);
  CallJson("POST", "/routes", 400, R"j({"paths":["/"],"service":{"id":"12345678-1234-4234-8234-123456789abc"}})j");
  CallJson("POST", "/services", 400, "{");

  EXPECT_EQ(store_->CurrentVersion(), version);
  EXPECT_EQ(changes_, changes);
  EXPECT_EQ(CallJson("GET", "/services/keep", 200), before);
  EXPECT_EQ(CallJson("GET", "/routes", 200)["data"].size(), 1u);
}

TEST_F(AdminApiTest, NestedAndReverseEndpoints) {
  const std::string a = CreateService("a");
  const std::string b = CreateService("b");
  json r = CallJson("POST", "/services/a/routes", 201, R"j({"name":"ra","paths":["/a"]})j");
  EXPECT_EQ(r["service"], json({{"id", a}}));
  CallJson("POST", "/services/" + b + "/routes", 201, R"j({"name":"rb","paths":["/b"]})j");

  json list = CallJson("GET", "/services/a/routes", 200);
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["name"], "ra");
  EXPECT_EQ(CallJson("GET", "/services/a/routes/ra", 200)["id"], r["id"]);
  EXPECT_EQ(Call("GET", "/services/b/routes/ra").status, 404);     // belongs to a
  EXPECT_EQ(Call("DELETE", "/services/b/routes/ra").status, 404);  // not b's to delete
  EXPECT_EQ(Call("GET", "/services/ghost/routes").status, 404);

  EXPECT_EQ(CallJson("GET", "/routes/ra/service", 200)["id"], a);
  EXPECT_EQ(CallJson("PATCH", "/routes/ra/service", 200, R"j({"port":9999})j")["port"], 9999);
  EXPECT_EQ(CallJson("GET", "/services/a", 200)["port"], 9999);
  EXPECT_EQ(CallJson("DELETE", "/routes/ra/service", 405), json::parse(R"j({"message":"Method not allowed"})j"));

  // Route without a service: its /service is 404.
  CallJson("POST", "/routes", 201, R"j({"name":"lonely","hosts":["x.com"]})j");
  EXPECT_EQ(Call("GET", "/routes/lonely/service").status, 404);

  EXPECT_EQ(Call("DELETE", "/services/a/routes/ra").status, 204);
  EXPECT_EQ(Call("GET", "/routes/ra").status, 404);
}

TEST_F(AdminApiTest, PaginationAndTags) {
  for (int i = 0; i < 5; ++i) {
    CallJson("POST", "/services", 201,
             json{{"name", "s" + std::to_string(i)}, {"host", "h.com"}, {"tags", {i % 2 ? "odd" : "even", "all"}}}.dump());
  }
  std::vector<std::string> ids;
  std::string next = "/services?size=2";
  int pages = 0;
  while (!next.empty()) {
    json page = CallJson("GET", next, 200);
    ++pages;
    for (const auto& s : page["data"]) ids.push_back(s["id"]);
    if (page["next"].is_null()) {
      EXPECT_FALSE(page.contains("offset"));
      next.clear();
    } else {
      EXPECT_TRUE(page["offset"].is_string());
      next = page["next"];
      EXPECT_NE(next.find("size=2"), std::string::npos);
    }
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));

  EXPECT_EQ(CallJson("GET", "/services?size=0", 400)["code"], 9);
  EXPECT_EQ(CallJson("GET", "/services?size=1001", 400)["code"], 9);
  EXPECT_EQ(CallJson("GET", "/services?size=abc", 400)["name"], "invalid size");
  EXPECT_EQ(CallJson("GET", "/services?offset=!!!", 400)["code"], 7);
  EXPECT_EQ(CallJson("GET", "/services?tags=odd", 200)["data"].size(), 2u);
  EXPECT_EQ(CallJson("GET", "/services?tags=odd,all", 200)["data"].size(), 2u);
  EXPECT_EQ(CallJson("GET", "/services?tags=odd/even", 200)["data"].size(), 5u);
  EXPECT_EQ(CallJson("GET", "/services?tags=odd,even", 200)["data"].size(), 0u);
  EXPECT_EQ(CallJson("GET", "/services?tags=a,b/c", 400)["code"], 11);
}

TEST_F(AdminApiTest, RootStatusAndClustering) {
  json root = CallJson("GET", "/", 200);
  EXPECT_EQ(root["version"], "3.9.0");  // the Kong Admin API Portico speaks (meta_endpoints.h)
  EXPECT_EQ(root["portico_version"], PORTICO_VERSION);
  EXPECT_EQ(root["tagline"], "Welcome to kong");
  EXPECT_EQ(root["node_id"], "node-1");
  EXPECT_EQ(root["configuration"]["role"], "control_plane");
  EXPECT_EQ(root["configuration"]["database"], OnPostgres() ? "postgres" : "sqlite");
  EXPECT_EQ(root["plugins"]["available_on_server"]["request-termination"],
            json::parse(R"j({"priority":2,"version":")j" PORTICO_VERSION R"j("})j"));
  EXPECT_EQ(root["plugins"]["enabled_in_cluster"], json::array());
  CreateService("x");
  EXPECT_EQ(CallJson("GET", "/", 200)["config_version"], 1);
  json status = CallJson("GET", "/status", 200);
  EXPECT_EQ(status["database"]["reachable"], true);
  EXPECT_EQ(status["configuration_version"], 1);
  EXPECT_EQ(status["epoch"], ToHex(store_->Epoch()));

  DataPlaneStatus dp;
  dp.id = "dp-1";
  dp.hostname = "edge1";
  dp.ip = "10.0.0.5";
  dp.version = "0.1.0";
  dp.config_hash = "abcd";
  dp.config_version = 1;
  dp.last_seen = 1700000000;
  dp.sync_status = "normal";
  dp.state = "connected_synced";
  dp.labels = {{"region", "eu"}};
  dp.cert_expiry = 1800000000;
  DataPlaneStatus dp2 = dp;
  dp2.id = "dp-2";
  data_planes_.planes = {dp, dp2};
  json page = CallJson("GET", "/clustering/data-planes?size=1", 200);
  ASSERT_EQ(page["data"].size(), 1u);
  json row = page["data"][0];
  EXPECT_EQ(row["id"], "dp-1");
  EXPECT_EQ(row["ip"], "10.0.0.5");
  EXPECT_EQ(row["labels"], json::parse(R"j({"region":"eu"})j"));
  EXPECT_EQ(row["cert_details"]["expiry_timestamp"], 1800000000);
  EXPECT_EQ(row["config_version"], 1);
  EXPECT_EQ(row["state"], "connected_synced");
  EXPECT_EQ(row["last_error"], nullptr);
  ASSERT_TRUE(page["next"].is_string());
  json page2 = CallJson("GET", page["next"].get<std::string>(), 200);
  ASSERT_EQ(page2["data"].size(), 1u);
  EXPECT_EQ(page2["data"][0]["id"], "dp-2");
  EXPECT_EQ(page2["next"], nullptr);

  HttpResponse legacy = Call("GET", "/clustering/status");
  EXPECT_EQ(legacy.status, 200);
  bool deprecation = false;
  for (const auto& [k, v] : legacy.headers) deprecation |= (k == "Deprecation" && v == "true");
  EXPECT_TRUE(deprecation);
  EXPECT_EQ(json::parse(legacy.body)["dp-1"]["hostname"], "edge1");
}

TEST_F(AdminApiTest, DataPlaneRowsNameTheirControlPlaneAndTtlFollowsThePurgeDelay) {
  AdminOptions options{"node-1", "cp.local", "127.0.0.1:8001", "0.0.0.0:8005", dir_ + "/admin.db"};
  options.data_plane_purge_delay_seconds = 100;
  api_ = std::make_unique<AdminApi>(store_.get(), &data_planes_, options, nullptr, clock_);
  DataPlaneStatus dp;
  dp.id = "dp-1";
  dp.last_seen = clock_.NowSeconds() - 30;
  dp.control_plane_id = "cp-a";
  dp.control_plane_hostname = "cp-a.example";
  DataPlaneStatus old = dp;
  old.id = "dp-2";
  old.last_seen = clock_.NowSeconds() - 500;
  data_planes_.planes = {dp, old};
  json rows = CallJson("GET", "/clustering/data-planes", 200)["data"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["control_plane_id"], "cp-a");
  EXPECT_EQ(rows[0]["control_plane_hostname"], "cp-a.example");
  EXPECT_EQ(rows[0]["ttl"], 70);
  EXPECT_EQ(rows[1]["ttl"], 0);
}

TEST_F(AdminApiTest, RouteDefaultsAndPatch) {
  json r = CallJson("POST", "/routes", 201, R"j({"paths":["/x"]})j");
  json expected = json::parse(R"j({"created_at":1700000000,"updated_at":1700000000,"name":null,
    "protocols":["http","https"],"methods":null,"hosts":null,"paths":["/x"],"headers":null,"snis":null,
    "sources":null,"destinations":null,"https_redirect_status_code":426,"regex_priority":0,
    "strip_path":true,"preserve_host":false,"request_buffering":true,"response_buffering":true,
    "path_handling":"v0","service":null,"tags":null})j");
  expected["id"] = r["id"];
  EXPECT_EQ(r, expected);
  json patched = CallJson("PATCH", "/routes/" + r["id"].get<std::string>(), 200, R"j({"paths":null,"hosts":["a.com"]})j");
  EXPECT_EQ(patched["paths"], nullptr);
  EXPECT_EQ(patched["hosts"], json::parse(R"j(["a.com"])j"));
  // Removing the last matcher is refused.
  CallJson("PATCH", "/routes/" + r["id"].get<std::string>(), 400, R"j({"hosts":null})j");
}

TEST_F(AdminApiTest, DataPlaneLagFieldsAndMetrics) {
  DataPlaneStatus dp;
  dp.id = "dp-9";
  dp.state = "stale";
  dp.lag_versions = 3;
  dp.lag_seconds = 42;
  dp.connected_since = 1699999000;
  dp.nack_count = 2;
  data_planes_.planes = {dp};
  json row = CallJson("GET", "/clustering/data-planes", 200)["data"][0];
  EXPECT_EQ(row["state"], "stale");
  EXPECT_EQ(row["lag_versions"], 3);
  EXPECT_EQ(row["lag_seconds"], 42);
  EXPECT_EQ(row["connected_since"], 1699999000);
  EXPECT_EQ(row["nack_count"], 2);
  EXPECT_EQ(row["control_plane_id"], nullptr);
  EXPECT_EQ(row["control_plane_hostname"], nullptr);
  data_planes_.planes[0].connected_since = 0;
  EXPECT_EQ(CallJson("GET", "/clustering/data-planes", 200)["data"][0]["connected_since"], nullptr);

  // Without a metrics source /metrics does not exist; with one it serves Prometheus text.
  EXPECT_EQ(Call("GET", "/metrics").status, 404);
  AdminOptions options{"node-1", "cp.local", "127.0.0.1:8001", "0.0.0.0:8005", location_};
  int renders = 0;
  options.metrics_text = [&renders] {
    ++renders;
    return std::string("# TYPE portico_cp_config_version gauge\nportico_cp_config_version 7\n");
  };
  api_ = std::make_unique<AdminApi>(store_.get(), &data_planes_, options, nullptr, clock_);
  HttpResponse metrics = Call("GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.body, "# TYPE portico_cp_config_version gauge\nportico_cp_config_version 7\n");
  bool text_plain = false;
  for (const auto& [k, v] : metrics.headers) {
    text_plain |= (k == "Content-Type" && v.rfind("text/plain; version=0.0.4", 0) == 0);
  }
  EXPECT_TRUE(text_plain);
  EXPECT_EQ(renders, 1);
  EXPECT_EQ(Call("POST", "/metrics").status, 405);
}

constexpr char kForm[] = "application/x-www-form-urlencoded";

// Issue 9: a string that is not UTF-8 used to be stored (201) as a proto3 blob that protobuf
// cannot parse back, after which lists, the snapshot builder and restarts failed. Every input
// path now gets a Kong 400 naming the field, in a body that is itself UTF-8.
TEST_F(AdminApiTest, StringsThatAreNotUtf8AreRefusedOnEveryInputPath) {
  const std::string sid = CreateService("good");
  const uint64_t version = store_->CurrentVersion();
  struct Case {
    std::string what, method, target, body, content_type;
    int status;
    std::string field;  // the key path expected in "fields" ("" = only the status is checked)
  };
  const std::string invalid_name = "expected a valid UTF-8 string (invalid byte at offset 3)";
  const std::vector<Case> cases = {
      {"form name", "POST", "/services", "name=bad%ff%fe&host=1.2.3.4", kForm, 400, "name"},
      {"form host via url", "POST", "/services", "url=http://h%ff.example/", kForm, 400, "host"},
      {"form tag", "POST", "/services", "host=a.com&tags[]=ok&tags[]=t%ff", kForm, 400, "tags.2"},
      {"url segment PUT service", "PUT", "/services/bad%ff%fe", R"j({"host":"1.2.3.4"})j", "application/json",
       400, "name"},
      {"form PATCH", "PATCH", "/services/good", "host=h%c3", kForm, 400, "host"},
      {"form header value", "POST", "/routes", "paths=/a&headers.x-a=v%ff", kForm, 400, "headers.x-a"},
      {"form header name", "POST", "/routes", "paths=/a&headers.x-%ff=v", kForm, 400, "headers"},
      {"form second path", "POST", "/routes", "paths[]=/ok&paths[]=/v%ff", kForm, 400, "paths.2"},
      {"form method", "POST", "/routes", "paths=/a&methods=GE%ffT", kForm, 400, "methods.1"},
      {"form snis", "POST", "/routes", "protocols=https&snis=a%ff.com", kForm, 400, "snis.1"},
      {"url segment PUT route", "PUT", "/routes/r%ff", R"j({"paths":["/a"]})j", "application/json", 400, "name"},
      {"url segment PUT nested route", "PUT", "/services/good/routes/r%ed%a0%80", R"j({"paths":["/a"]})j",
       "application/json", 400, "name"},
      {"form service name", "POST", "/routes", "paths=/a&service.name=g%ff", kForm, 400, ""},
      {"raw bytes in JSON", "POST", "/services", "{\"name\":\"bad\xff\",\"host\":\"a.com\"}", "application/json",
       400, ""},
      {"lone surrogate escape in JSON", "POST", "/services", R"j({"name":"bad\udcff","host":"a.com"})j",
       "application/json", 400, ""},
      {"form unknown key", "POST", "/services", "host=a.com&na%ffme=x", kForm, 400, ""},
      {"query tags", "GET", "/services?tags=t%ff", "", "", 400, ""},
      {"query offset", "GET", "/services?offset=WyJcdTAwZmYiXQ%ff", "", "", 400, ""},
  };
  for (const Case& c : cases) {
    HttpResponse r = Call(c.method, c.target, c.body, c.content_type);
    EXPECT_EQ(r.status, c.status) << c.what << ": " << r.body;
    EXPECT_TRUE(IsValidUtf8(r.body)) << c.what << ": " << absl::CHexEscape(r.body);
    json body = json::parse(r.body, nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << c.what << ": " << r.body;
    if (c.field.empty()) continue;
    EXPECT_EQ(body["code"], 2) << c.what << ": " << r.body;
    json node = body["fields"];
    size_t start = 0;
    while (true) {  // follow "a.b.2" into the nested `fields` object
      const size_t dot = c.field.find('.', start);
      const std::string key = c.field.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (node.is_array()) {
        node = node[std::stoul(key) - 1];
      } else {
        node = node[key];
      }
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    ASSERT_TRUE(node.is_string()) << c.what << ": " << r.body;
    EXPECT_NE(node.get<std::string>().find("valid UTF-8 string"), std::string::npos)
        << c.what << ": " << r.body;
  }
  EXPECT_EQ(CallJson("POST", "/services", 400, "name=bad%ff%fe&host=1.2.3.4", kForm)["message"],
            "schema violation (name: " + invalid_name + ")");
  // Nothing was written, and everything still reads.
  EXPECT_EQ(store_->CurrentVersion(), version);
  auto config = store_->ReadConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->corrupt.empty());
  EXPECT_EQ(config->config.services.size(), 1u);
  EXPECT_EQ(CallJson("GET", "/services", 200)["data"].size(), 1u);
  EXPECT_EQ(CallJson("GET", "/services/" + sid, 200)["name"], "good");
}

// A corrupt row (written by an older CP, or damaged on disk) does not take the Admin API down:
// lists skip it, reads of it say how to repair it, and DELETE or PUT repair it, by id or name.
TEST_F(AdminApiTest, CorruptRowIsSkippedExplainedDeletedAndReplaced) {
  const std::string db = location_;
  const std::string good = CreateService("good");
  const std::string bad = "00000000-0000-4000-8000-00000000000b";
  ASSERT_EQ(test_support::InsertCorruptRowAt(db, "services", bad, "bad\xff\xfe"), "");
  const std::string bad_route = "00000000-0000-4000-8000-00000000000c";
  ASSERT_EQ(test_support::InsertCorruptRowAt(db, "routes", bad_route, "r\xff", good), "");

  EXPECT_EQ(CallJson("GET", "/services", 200)["data"].size(), 1u);
  EXPECT_EQ(CallJson("GET", "/routes", 200)["data"].size(), 0u);
  EXPECT_EQ(CallJson("GET", "/services/good/routes", 200)["data"].size(), 0u);
  const std::string repair = "delete it with DELETE /services/" + bad + " or replace it with PUT /services/" + bad;
  // On PostgreSQL the name column holds the escaped name (TEXT is UTF-8 there).
  for (const std::string& target :
       {"/services/" + bad, std::string(OnPostgres() ? "/services/bad%5Cxff%5Cxfe" : "/services/bad%ff%fe")}) {
    json get = CallJson("GET", target, 500);
    EXPECT_NE(get["message"].get<std::string>().find(repair), std::string::npos) << get;
    EXPECT_NE(get["message"].get<std::string>().find("corrupt"), std::string::npos) << get;
  }
  EXPECT_EQ(Call("PATCH", "/services/" + bad, R"j({"port":1})j").status, 500);
  EXPECT_EQ(Call("GET", "/services/" + bad + "/routes").status, 500);
  json route_get = CallJson("GET", "/routes/" + bad_route, 500);
  EXPECT_NE(route_get["message"].get<std::string>().find("DELETE /routes/" + bad_route), std::string::npos);
  EXPECT_EQ(Call("GET", "/services/good/routes/" + bad_route).status, 500);
  EXPECT_EQ(Call("GET", "/routes/" + bad_route + "/service").status, 500);

  // Replace by id: the row keeps its id and created_at; it reads again.
  const int changes = changes_;
  json replaced = CallJson("PUT", "/services/" + bad, 200, R"j({"name":"fixed","host":"fixed.example"})j");
  EXPECT_EQ(replaced["id"], bad);
  EXPECT_EQ(replaced["created_at"], 1700000000);
  EXPECT_EQ(CallJson("GET", "/services/fixed", 200)["host"], "fixed.example");
  EXPECT_EQ(changes_, changes + 1);

  // Delete by name (the name in the URL is the stored, ill-formed one) and by id.
  const std::string other = "00000000-0000-4000-8000-00000000000d";
  ASSERT_EQ(test_support::InsertCorruptRowAt(db, "services", other, "o\xff"), "");
  EXPECT_EQ(Call("DELETE", OnPostgres() ? "/services/o%5Cxff" : "/services/o%ff").status, 204);
  EXPECT_EQ(Call("GET", "/services/" + other).status, 404);
  EXPECT_EQ(Call("DELETE", "/routes/" + bad_route).status, 204);
  EXPECT_EQ(Call("GET", "/routes/" + bad_route).status, 404);

  // Replace by name: a row whose name column is fine but whose entity is damaged.
  const std::string legacy = "00000000-0000-4000-8000-00000000000e";
  ASSERT_EQ(test_support::InsertCorruptRowAt(db, "services", legacy, "legacy", "", "legacy\xff"), "");
  EXPECT_EQ(Call("GET", "/services/legacy").status, 500);
  json by_name = CallJson("POST", "/routes", 500, R"j({"paths":["/l"],"service":{"name":"legacy"}})j");
  EXPECT_NE(by_name["message"].get<std::string>().find("PUT /services/" + legacy), std::string::npos) << by_name;
  EXPECT_EQ(CallJson("PUT", "/services/legacy", 200, R"j({"host":"l.example"})j")["id"], legacy);
  EXPECT_EQ(changes_, changes + 4);

  auto config = store_->ReadConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->corrupt.empty());
  EXPECT_EQ(config->config.services.size(), 3u);
}

TEST_F(AdminApiTest, StatusReportsTheConfigBuild) {
  EXPECT_FALSE(CallJson("GET", "/status", 200).contains("config_build"));  // no builder behind the source
  data_planes_.build.known = true;
  data_planes_.build.store_version = 7;
  data_planes_.build.published = true;
  data_planes_.build.published_version = 6;
  data_planes_.build.failing = true;
  data_planes_.build.reason = "corrupt_rows";
  data_planes_.build.error = "1 corrupt row(s) in the store";
  data_planes_.build.failing_since = 1700000000;
  data_planes_.build.corrupt_rows = {{"services", "00000000-0000-4000-8000-00000000000b", "does not parse"},
                                     {"routes", "id\xff", "does not parse"}};
  data_planes_.build.corrupt_row_count = 2;
  EXPECT_EQ(CallJson("GET", "/status", 200)["config_build"], json::parse(R"j({
      "ok":false,"store_version":7,"published_version":6,"reason":"corrupt_rows",
      "error":"1 corrupt row(s) in the store","failing_since":1700000000,"corrupt_row_count":2,
      "corrupt_rows":[{"entity":"services","id":"00000000-0000-4000-8000-00000000000b","error":"does not parse"},
                      {"entity":"routes","id":"id\\xff","error":"does not parse"}]})j"));
  data_planes_.build = ConfigBuildStatus{};
  data_planes_.build.known = true;
  data_planes_.build.store_version = 0;  // an empty store publishes version 0
  data_planes_.build.published = true;
  EXPECT_EQ(CallJson("GET", "/status", 200)["config_build"], json::parse(R"j({
      "ok":true,"store_version":0,"published_version":0,"reason":null,"error":null,"failing_since":null,
      "corrupt_row_count":0,"corrupt_rows":[]})j"));
  data_planes_.build.published = false;
  EXPECT_EQ(CallJson("GET", "/status", 200)["config_build"]["published_version"], nullptr);
}

// JSON nested deeper than lua-cjson's 1000 levels is refused by a scan, before a parser builds a
// tree of it (a 100k-deep body used to cost the CP ~280 MB).
TEST_F(AdminApiTest, JsonNestedDeeperThanTheCapIsRefusedBeforeParsing) {
  const std::string deep_message = "Cannot parse JSON body: nested deeper than 1000 levels";
  auto nested = [](int depth, const std::string& open, const std::string& close) {
    std::string out;
    for (int i = 0; i < depth; ++i) out += open;
    for (int i = 0; i < depth; ++i) out += close;
    return out;
  };
  EXPECT_EQ(CallJson("POST", "/services", 400, nested(100000, "[", "]"))["message"], deep_message);
  EXPECT_EQ(CallJson("POST", "/services", 400, nested(200000, "[", ""))["message"], deep_message);
  EXPECT_EQ(CallJson("POST", "/routes", 400, "{\"paths\":" + nested(1000, "[", "]") + "}")["message"],
            deep_message);  // 1001 levels with the object
  // Exactly 1000 levels parse (and then fail the schema, as any unknown field does).
  json at_cap = CallJson("POST", "/services", 400, "{\"x\":" + nested(999, "[", "]") + "}");
  EXPECT_EQ(at_cap["code"], 2) << at_cap;
  // Brackets inside strings (with escaped quotes) do not count.
  json in_string = CallJson("POST", "/services", 400,
                            "{\"host\":\"a.com\",\"name\":\"\\\"" + std::string(5000, '[') + "\"}");
  EXPECT_EQ(in_string["code"], 2) << in_string.dump().substr(0, 200);
  // The offset cursor is JSON too.
  const std::string offset = absl::Base64Escape(nested(5000, "[", "]"));
  EXPECT_EQ(CallJson("GET", "/services?offset=" + offset, 400)["code"], 7);
}

}  // namespace
}  // namespace portico::cp

namespace portico::cp {
namespace {

class AdminPluginsTest : public AdminApiTest {};

TEST_F(AdminPluginsTest, PluginCrudFillsKongDefaultsAndNestsUnderRoutesAndServices) {
  const std::string service = CreateService("orders");
  const std::string route =
      CallJson("POST", "/services/orders/routes", 201, json{{"name", "r"}, {"paths", {"/o"}}}.dump())["id"];

  json global = CallJson("POST", "/plugins", 201, R"({"name":"request-termination"})");
  EXPECT_EQ(global["config"], json::parse(R"({"status_code":503,"message":null,"body":null,"content_type":null,
                                              "echo":false,"trigger":null})"));
  EXPECT_EQ(global["protocols"], json::parse(R"(["grpc","grpcs","http","https"])"));
  EXPECT_EQ(global["enabled"], true);
  EXPECT_TRUE(global["route"].is_null() && global["service"].is_null() && global["consumer"].is_null());

  json on_route = CallJson("POST", "/routes/r/plugins", 201,
                           R"({"name":"ip-restriction","instance_name":"deny-lab","config":{"deny":["10.0.0.0/8"]}})");
  EXPECT_EQ(on_route["route"], json({{"id", route}}));
  EXPECT_EQ(on_route["config"]["status"], nullptr);
  // Form bodies: nested config fields, strings coerced by the plugin's schema.
  json on_service = CallJson("POST", "/services/orders/plugins", 201,
                             "name=request-size-limiting&config.allowed_payload_size=10&config.size_unit=kilobytes",
                             "application/x-www-form-urlencoded");
  EXPECT_EQ(on_service["service"], json({{"id", service}}));
  EXPECT_EQ(on_service["config"]["allowed_payload_size"], 10);

  EXPECT_EQ(CallJson("GET", "/plugins", 200)["data"].size(), 3u);
  EXPECT_EQ(CallJson("GET", "/routes/r/plugins", 200)["data"].size(), 1u);
  EXPECT_EQ(CallJson("GET", "/plugins/deny-lab", 200)["id"], on_route["id"]) << "instance_name addressing";

  // PATCH merges into the config; the rest keeps its values.
  json patched = CallJson("PATCH", "/plugins/deny-lab", 200, R"({"config":{"status":401}})");
  EXPECT_EQ(patched["config"]["status"], 401);
  EXPECT_EQ(patched["config"]["deny"], json({"10.0.0.0/8"}));

  // Deleting the route deletes its plugins (Kong's cascade); the others stay.
  EXPECT_EQ(Call("DELETE", "/routes/r").status, 204);
  EXPECT_EQ(Call("GET", "/plugins/deny-lab").status, 404);
  EXPECT_EQ(CallJson("GET", "/plugins", 200)["data"].size(), 2u);

  json enabled = CallJson("GET", "/plugins/enabled", 200);
  json bundled = json::array();
  for (const plugins::PluginSchema* schema : plugins::BundledPluginSchemas()) bundled.push_back(schema->name);
  EXPECT_GE(bundled.size(), 8u);
  EXPECT_EQ(enabled["enabled_plugins"], bundled) << "every bundled plugin, sorted";

  // Kong's plugin schema endpoint: the entity's fields, config described by the plugin's schema.
  json schema = CallJson("GET", "/schemas/plugins/key-auth", 200);
  json by_name = json::object();
  for (const json& field : schema["fields"]) by_name.update(field);
  EXPECT_EQ(by_name["consumer"]["eq"], nullptr) << "key-auth cannot be scoped to a consumer";
  EXPECT_EQ(by_name["route"]["reference"], "routes");
  json config_fields = json::object();
  for (const json& field : by_name["config"]["fields"]) config_fields.update(field);
  EXPECT_EQ(config_fields["key_names"]["default"], json({"apikey"}));
  EXPECT_EQ(config_fields["key_names"]["type"], "array");
  EXPECT_EQ(config_fields["hide_credentials"]["default"], false);
  json limits = CallJson("GET", "/schemas/plugins/rate-limiting", 200);
  json rl_fields = json::object();
  for (const json& field : limits["fields"].back()["config"]["fields"]) rl_fields.update(field);
  EXPECT_EQ(rl_fields["error_code"]["default"], 429);
  EXPECT_EQ(rl_fields["limit_by"]["one_of"][0], "consumer");
  EXPECT_EQ(rl_fields["minute"]["type"], "number");
  EXPECT_EQ(CallJson("GET", "/schemas/plugins/nope", 404)["message"], "No plugin named 'nope'");
  EXPECT_EQ(Call("POST", "/schemas/plugins/key-auth").status, 405);
  // Kong's validate endpoints: the same checks as a create, nothing stored.
  const size_t plugins_before = CallJson("GET", "/plugins", 200)["data"].size();
  EXPECT_EQ(CallJson("POST", "/schemas/plugins/validate", 200, R"({"name":"rate-limiting","config":{"minute":5}})")["message"],
            "schema validation successful");
  json refused = CallJson("POST", "/schemas/plugins/validate", 400, R"({"name":"rate-limiting","config":{"minute":-1}})");
  EXPECT_TRUE(refused["fields"]["config"].contains("minute")) << refused.dump();
  EXPECT_EQ(CallJson("POST", "/schemas/plugins/validate", 400, R"({"name":"nope"})")["fields"]["name"],
            "plugin 'nope' not enabled; add it to the 'plugins' configuration property");
  EXPECT_EQ(CallJson("POST", "/schemas/services/validate", 200, R"({"url":"http://example.com:81/x"})")["message"],
            "schema validation successful");
  EXPECT_EQ(CallJson("POST", "/schemas/services/validate", 400, R"({"port":70000,"host":"x"})")["name"], "schema violation");
  EXPECT_EQ(Call("GET", "/schemas/plugins/validate").status, 405);
  EXPECT_EQ(Call("POST", "/schemas/nothing/validate").status, 404);
  EXPECT_EQ(CallJson("GET", "/plugins", 200)["data"].size(), plugins_before) << "validation stores nothing";
  EXPECT_EQ(CallJson("GET", "/", 200)["plugins"]["available_on_server"]["ip-restriction"]["priority"], 990);
  EXPECT_EQ(CallJson("GET", "/", 200)["plugins"]["enabled_in_cluster"], json({"request-size-limiting", "request-termination"}))
      << "Kong's enabled_in_cluster: the names configured, sorted and distinct";
}

TEST_F(AdminPluginsTest, BadPluginsGetKongErrorsAndWriteNothing) {
  CreateService("orders");
  const uint64_t version = store_->CurrentVersion();
  json unknown = CallJson("POST", "/plugins", 400, R"({"name":"nope"})");
  EXPECT_EQ(unknown["fields"]["name"], "plugin 'nope' not enabled; add it to the 'plugins' configuration property");

  json bad = CallJson("POST", "/plugins", 400,
                      R"({"name":"ip-restriction","config":{"allow":["1.2.3.4/33"],"status":99,"x":1}})");
  EXPECT_EQ(bad["code"], 2);
  EXPECT_EQ(bad["fields"]["config"]["allow"], json({"invalid ip or cidr range: '1.2.3.4/33'"}));
  EXPECT_EQ(bad["fields"]["config"]["status"], "value should be between 100 and 599");
  EXPECT_EQ(bad["fields"]["config"]["x"], "unknown field");

  json none = CallJson("POST", "/plugins", 400, R"({"name":"ip-restriction"})");
  EXPECT_EQ(none["message"],
            "schema violation (config: at least one of these fields must be non-empty: 'config.allow', 'config.deny')");
  EXPECT_EQ(none["fields"]["config"]["@entity"],
            json({"at least one of these fields must be non-empty: 'config.allow', 'config.deny'"}));

  json both = CallJson("POST", "/plugins", 400, R"({"name":"request-termination","config":{"message":"a","body":"b"}})");
  EXPECT_EQ(both["fields"]["config"]["@entity"], json({"'message' and 'body' are mutually exclusive"}));
  EXPECT_EQ(CallJson("POST", "/plugins", 400, R"({"name":"request-termination","config":[1]})")["fields"]["config"],
            "expected a record");
  EXPECT_EQ(CallJson("POST", "/plugins", 400, R"({"name":"request-termination","protocols":["smtp"]})")["fields"]
                    ["protocols"],
            json({"expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss"}));
  EXPECT_EQ(CallJson("POST", "/services/nope/plugins", 404, R"({"name":"request-termination"})")["message"],
            "Not found");
  EXPECT_EQ(store_->CurrentVersion(), version) << "no refused write bumped the version";

  // One instance per plugin name and scope (Kong's cache key): the second is refused with 409.
  CallJson("POST", "/services/orders/plugins", 201, R"({"name":"request-termination"})");
  json twice = CallJson("POST", "/services/orders/plugins", 409, R"({"name":"request-termination"})");
  EXPECT_EQ(twice["name"], "unique constraint violation");
  const std::string service_id = CallJson("GET", "/services/orders", 200)["id"];
  EXPECT_EQ(twice["message"], absl::StrCat("UNIQUE violation detected on '{consumer=null,name=\"request-termination\","
                                           "route=null,service={id=\"", service_id, "\"}}'"));
  CallJson("POST", "/plugins", 201, R"({"name":"request-termination"})");  // another scope: fine
  EXPECT_EQ(CallJson("POST", "/plugins", 409, R"({"name":"request-termination"})")["code"], 5);
}

}  // namespace
}  // namespace portico::cp

namespace portico::cp {
namespace {

class AdminConsumersTest : public AdminApiTest {};

TEST_F(AdminConsumersTest, ConsumersAndKeyAuthCredentialsWithKongPaths) {
  json alice = CallJson("POST", "/consumers", 201, R"({"username":"alice","custom_id":"a-1","tags":["t"]})");
  EXPECT_EQ(alice["username"], "alice");
  EXPECT_EQ(CallJson("GET", "/consumers/alice", 200)["id"], alice["id"]) << "username addressing";
  json none = CallJson("POST", "/consumers", 400, "{}");
  EXPECT_EQ(none["message"], "schema violation (at least one of these fields must be non-empty: 'custom_id', 'username')");
  EXPECT_EQ(CallJson("POST", "/consumers", 409, R"({"username":"alice"})")["code"], 5);
  json bob = CallJson("PUT", "/consumers/bob", 200, R"({"custom_id":"b-1"})");
  EXPECT_EQ(bob["username"], "bob") << "PUT by name upserts";

  // Nested and top-level credentials; a key is generated when none is given.
  json given = CallJson("POST", "/consumers/alice/key-auth", 201, R"({"key":"alice-key"})");
  EXPECT_EQ(given["consumer"], json({{"id", alice["id"]}}));
  EXPECT_EQ(given["key"], "alice-key");
  json generated = CallJson("POST", "/consumers/alice/key-auth", 201, "");
  ASSERT_TRUE(generated["key"].is_string());
  EXPECT_EQ(generated["key"].get<std::string>().size(), 32u);
  json top = CallJson("POST", "/key-auths", 201, json{{"consumer", {{"username", "bob"}}}, {"key", "bob-key"}}.dump());
  EXPECT_EQ(top["consumer"], json({{"id", bob["id"]}}));
  EXPECT_EQ(CallJson("GET", "/key-auths", 200)["data"].size(), 3u);
  EXPECT_EQ(CallJson("GET", "/consumers/alice/key-auth", 200)["data"].size(), 2u);
  EXPECT_EQ(CallJson("GET", "/key-auths/bob-key", 200)["id"], top["id"]) << "key addressing";
  EXPECT_EQ(CallJson("GET", "/consumers/alice/key-auth/bob-key", 404)["message"], "Not found")
      << "another consumer's credential";

  // Refusals: a missing consumer (404 nested, Kong's foreign key error top-level), a duplicate key.
  EXPECT_EQ(CallJson("POST", "/consumers/nobody/key-auth", 404, R"({"key":"x"})")["message"], "Not found");
  EXPECT_EQ(CallJson("POST", "/key-auths", 400, R"({"key":"x"})")["fields"]["consumer"], "required field missing");
  // A consumer named by username that does not exist: Kong's code 13 (foreign keys unresolved).
  EXPECT_EQ(CallJson("POST", "/key-auths", 400, R"({"key":"x","consumer":{"username":"nobody"}})")["code"], 13);
  EXPECT_EQ(CallJson("POST", "/consumers/bob/key-auth", 409, R"({"key":"alice-key"})")["code"], 5);

  // Plugins scoped to a consumer are stored (not run yet); deleting the consumer deletes its
  // credentials and plugins.
  CallJson("POST", "/consumers/alice/plugins", 201, R"({"name":"request-termination"})");
  EXPECT_EQ(CallJson("POST", "/consumers/alice/plugins", 400, R"({"name":"key-auth"})")["fields"]["consumer"],
            "value must be null")
      << "an auth plugin cannot be scoped to a consumer (Kong's no_consumer)";
  EXPECT_EQ(Call("DELETE", "/consumers/alice").status, 204);
  EXPECT_EQ(CallJson("GET", "/key-auths", 200)["data"].size(), 1u);
  EXPECT_EQ(CallJson("GET", "/plugins", 200)["data"].size(), 0u);
}

TEST_F(AdminConsumersTest, JwtCredentialsWithKongPathsGeneratedSecretsAndCheckedKeys) {
  json alice = CallJson("POST", "/consumers", 201, R"({"username":"alice"})");
  json hs = CallJson("POST", "/consumers/alice/jwt", 201, "");
  EXPECT_EQ(hs["consumer"], json({{"id", alice["id"]}}));
  EXPECT_EQ(hs["algorithm"], "HS256");
  ASSERT_TRUE(hs["key"].is_string() && hs["secret"].is_string()) << hs.dump();
  EXPECT_EQ(hs["key"].get<std::string>().size(), 32u) << "generated";
  EXPECT_EQ(hs["secret"].get<std::string>().size(), 32u) << "generated";
  EXPECT_NE(hs["key"], hs["secret"]);
  EXPECT_TRUE(hs["rsa_public_key"].is_null());

  const test_support::TestKeyPair rsa = test_support::NewRsaKeyPair();
  json rs = CallJson("POST", "/jwts", 201,
                     json{{"consumer", {{"username", "alice"}}}, {"key", "rs-iss"}, {"algorithm", "RS256"},
                          {"rsa_public_key", rsa.public_pem}}.dump());
  EXPECT_EQ(rs["rsa_public_key"], rsa.public_pem);
  const test_support::TestKeyPair ec = test_support::NewEcKeyPair("P-256");
  CallJson("POST", "/consumers/alice/jwt", 201,
           json{{"key", "es-iss"}, {"algorithm", "ES256"}, {"rsa_public_key", ec.public_pem}}.dump());
  EXPECT_EQ(CallJson("GET", "/jwts", 200)["data"].size(), 3u);
  EXPECT_EQ(CallJson("GET", "/consumers/alice/jwt", 200)["data"].size(), 3u);
  EXPECT_EQ(CallJson("GET", "/jwts/rs-iss", 200)["id"], rs["id"]) << "key addressing";
  EXPECT_EQ(CallJson("GET", "/consumers/alice/jwt/rs-iss", 200)["id"], rs["id"]);

  // Kong's conditional rule: an RS/ES algorithm needs a public key OpenSSL parses.
  json missing = CallJson("POST", "/consumers/alice/jwt", 400, R"({"algorithm":"RS256"})");
  EXPECT_EQ(missing["fields"]["rsa_public_key"], "required field missing") << missing.dump();
  json garbage = CallJson("POST", "/consumers/alice/jwt", 400,
                          R"({"algorithm":"RS512","rsa_public_key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"})");
  EXPECT_EQ(garbage["fields"]["rsa_public_key"], "invalid key");
  json wrong_kind = CallJson("POST", "/consumers/alice/jwt", 400,
                             json{{"algorithm", "ES384"}, {"rsa_public_key", ec.public_pem}}.dump());
  EXPECT_EQ(wrong_kind["fields"]["rsa_public_key"], "not an EC key on curve secp384r1, as algorithm ES384 needs");
  EXPECT_EQ(CallJson("POST", "/consumers/alice/jwt", 400, R"({"algorithm":"HS1"})")["fields"]["algorithm"],
            "expected one of: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA");
  EXPECT_EQ(CallJson("POST", "/consumers/alice/jwt", 400, R"({"algorithm":"ES512"})")["fields"]["rsa_public_key"],
            "required field missing");
  EXPECT_EQ(CallJson("POST", "/consumers/alice/jwt", 400, R"({"algorithm":"PS256"})")["fields"]["rsa_public_key"],
            "required field missing");
  EXPECT_EQ(CallJson("POST", "/consumers/alice/jwt", 400,
                     json{{"algorithm", "EdDSA"}, {"rsa_public_key", ec.public_pem}}.dump())["fields"]["rsa_public_key"],
            "not an Ed25519 or Ed448 key, as algorithm EdDSA needs");
  // A duplicate key, a missing consumer.
  EXPECT_EQ(CallJson("POST", "/consumers/alice/jwt", 409, R"({"key":"rs-iss"})")["code"], 5);
  EXPECT_EQ(CallJson("POST", "/consumers/nobody/jwt", 404, "")["message"], "Not found");
  EXPECT_EQ(CallJson("POST", "/jwts", 400, R"({"key":"x"})")["fields"]["consumer"], "required field missing");
  // PATCH keeps the rules; deleting the consumer deletes its credentials.
  EXPECT_EQ(CallJson("PATCH", "/jwts/rs-iss", 400, R"({"algorithm":"ES256"})")["fields"]["rsa_public_key"],
            "not an EC key on curve prime256v1, as algorithm ES256 needs");
  EXPECT_EQ(CallJson("PATCH", "/jwts/rs-iss", 200, R"({"algorithm":"RS384"})")["algorithm"], "RS384");
  EXPECT_EQ(Call("DELETE", "/consumers/alice").status, 204);
  EXPECT_EQ(CallJson("GET", "/jwts", 200)["data"].size(), 0u);
}

}  // namespace
}  // namespace portico::cp
