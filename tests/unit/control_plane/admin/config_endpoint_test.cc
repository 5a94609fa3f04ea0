// POST/GET /config through the real AdminApi over a real SQLite store (no sockets).
#include <string>

#include "absl/strings/str_cat.h"
#include "common/declarative/yaml_document.h"
#include "common/snapshot/snapshot.h"
#include "control_plane/admin/request_decoding.h"
#include "control_plane/store/store.h"
#include "tests/unit/control_plane/admin/admin_fixture.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/test_certificates.h"

namespace portico::cp {
namespace {

using nlohmann::json;

constexpr char kDocument[] = R"({
  "_format_version": "3.0",
  "services": [{"name": "orders", "url": "http://orders.internal:8080",
                "routes": [{"name": "orders", "paths": ["/orders"], "plugins": [{"name": "key-auth"}]}]}],
  "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "alice-key"}],
                 "basicauth_credentials": [{"username": "alice", "password": "pw"}]}]
})";

class ConfigEndpointTest : public AdminFixture {
 protected:
  std::string StoreHash() {
    absl::StatusOr<StoredConfig> stored = store_->ReadConfig();
    EXPECT_TRUE(stored.ok());
    return ComputeConfigHash(stored->config, store_->Epoch());
  }
};

TEST_F(ConfigEndpointTest, PostReplacesEverythingInOneVersion) {
  const std::string old_id = CallJson("POST", "/services", 201, R"({"name":"legacy","host":"legacy.internal"})")["id"];
  const uint64_t before = store_->CurrentVersion();
  const int changes_before = changes_;
  json created = CallJson("POST", "/config", 201, kDocument);
  EXPECT_EQ(store_->CurrentVersion(), before + 1);
  EXPECT_EQ(changes_, changes_before + 1);
  ASSERT_TRUE(created["services"].is_object()) << created.dump();
  EXPECT_EQ(created["services"].size(), 1u);
  EXPECT_EQ(created["services"].begin().value()["created_at"], 1700000000);  // as stored
  EXPECT_EQ(created["services"].begin().value()["updated_at"], 1700000000);
  EXPECT_EQ(created["routes"].size(), 1u);
  // The old service is gone; the document's entities are there with their references.
  CallJson("GET", "/services/" + old_id, 404);
  json service = CallJson("GET", "/services/orders", 200);
  EXPECT_EQ(service["host"], "orders.internal");
  EXPECT_EQ(service["created_at"], 1700000000);
  json route = CallJson("GET", "/routes/orders", 200);
  EXPECT_EQ(route["service"]["id"], service["id"]);
  json key = CallJson("GET", "/key-auths/alice-key", 200);
  EXPECT_EQ(key["consumer"]["id"], CallJson("GET", "/consumers/alice", 200)["id"]);
  EXPECT_EQ(CallJson("GET", "/plugins", 200)["data"][0]["route"]["id"], route["id"]);
}

TEST_F(ConfigEndpointTest, TheBodyMayWrapTheDocument) {
  CallJson("POST", "/config", 201, json{{"config", kDocument}}.dump());
  CallJson("GET", "/services/orders", 200);
  const std::string other = R"({"_format_version":"3.0","services":[{"name":"form","host":"form.internal"}]})";
  CallJson("POST", "/config", 201, "config=" + PercentEncode(other), "application/x-www-form-urlencoded");
  CallJson("GET", "/services/form", 200);
  CallJson("GET", "/services/orders", 404);
  // curl -F config=@kong.yml (Kong's documented form).
  const std::string multipart = absl::StrCat(
      "--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nignored\r\n",
      "--XyZ\r\nContent-Disposition: form-data; name=\"config\"; filename=\"kong.yml\"\r\n",
      "Content-Type: application/octet-stream\r\n\r\n",
      "_format_version: \"3.0\"\nservices:\n  - name: multi\n    host: m.internal\n", "\r\n--XyZ--\r\n");
  CallJson("POST", "/config", 201, multipart, "multipart/form-data; boundary=XyZ");
  CallJson("GET", "/services/multi", 200);
  // No config part, no boundary, a boundary over RFC 2046's 70 characters: refused, saying why.
  json no_part = CallJson("POST", "/config", 400, "--XyZ--\r\n", "multipart/form-data; boundary=XyZ");
  EXPECT_EQ(no_part["code"], 14);
  EXPECT_NE(no_part["message"].get<std::string>().find("no complete 'config' part"), std::string::npos);
  EXPECT_NE(CallJson("POST", "/config", 400, multipart, "multipart/form-data")["message"].get<std::string>().find(
                "boundary"),
            std::string::npos);
  EXPECT_EQ(CallJson("POST", "/config", 400, multipart, "multipart/form-data; boundary=" + std::string(71, 'X'))["code"],
            14);
  CallJson("GET", "/services/multi", 200);
}

TEST_F(ConfigEndpointTest, AnInvalidDocumentChangesNothing) {
  CallJson("POST", "/config", 201, kDocument);
  const uint64_t version = store_->CurrentVersion();
  const std::string hash = StoreHash();
  json bad = CallJson("POST", "/config", 400, R"({"_format_version":"3.0",
    "services":[{"name":"x","host":"x.internal"}],
    "routes":[{"name":"r","paths":["/r"],"service":"nope"}]})");
  EXPECT_EQ(bad["code"], 14);
  EXPECT_EQ(bad["name"], "invalid declarative configuration");
  EXPECT_EQ(bad["fields"]["routes"][0]["service"], "invalid reference 'service: nope' (no such entry in 'services')");
  EXPECT_FALSE(bad.contains("flattened_errors"));
  json flat = CallJson("POST", "/config?flatten_errors=1", 400, R"({"_format_version":"3.0",
    "services":[{"name":"x"}]})");
  ASSERT_EQ(flat["flattened_errors"].size(), 1u);
  EXPECT_EQ(flat["flattened_errors"][0]["entity_type"], "service");
  EXPECT_EQ(flat["flattened_errors"][0]["errors"][0]["field"], "host");
  json syntax = CallJson("POST", "/config", 400, "{not json");
  EXPECT_EQ(syntax["code"], 14);
  EXPECT_NE(syntax["message"].get<std::string>().find("line"), std::string::npos) << syntax.dump();
  EXPECT_EQ(store_->CurrentVersion(), version);
  EXPECT_EQ(StoreHash(), hash);
  CallJson("GET", "/services/orders", 200);
}

TEST_F(ConfigEndpointTest, CheckHashAnswers304WhenNothingChanged) {
  CallJson("POST", "/config", 201, kDocument);
  const uint64_t version = store_->CurrentVersion();
  const std::string hash = StoreHash();
  clock_.Advance(100);
  // Same document (plain password included): nothing changes.
  HttpResponse same = Call("POST", "/config?check_hash=1", kDocument);
  EXPECT_EQ(same.status, 304) << same.body;
  EXPECT_EQ(store_->CurrentVersion(), version);
  // Without check_hash it is written again, still with the same entities and timestamps.
  CallJson("POST", "/config", 201, kDocument);
  EXPECT_EQ(store_->CurrentVersion(), version + 1);
  EXPECT_EQ(StoreHash(), hash);
  // A change: created_at kept, updated_at stamped now.
  json changed = json::parse(kDocument);
  changed["services"][0]["retries"] = 2;
  CallJson("POST", "/config?check_hash=1", 201, changed.dump());
  json service = CallJson("GET", "/services/orders", 200);
  EXPECT_EQ(service["retries"], 2);
  EXPECT_EQ(service["created_at"], 1700000000);
  EXPECT_EQ(service["updated_at"], 1700000100);
  EXPECT_EQ(CallJson("GET", "/routes/orders", 200)["updated_at"], 1700000000);
}

TEST_F(ConfigEndpointTest, ExportThenImportGivesTheSameIdsAndHash) {
  CallJson("POST", "/config", 201, kDocument);
  CallJson("POST", "/upstreams", 201, R"({"name":"u1"})");
  CallJson("POST", "/upstreams/u1/targets", 201, R"({"target":"10.0.0.1:80"})");
  const std::string hash = StoreHash();
  json exported = CallJson("GET", "/config", 200);
  ASSERT_TRUE(exported["config"].is_string());
  absl::StatusOr<json> document = ParseYamlDocument(exported["config"].get<std::string>());
  ASSERT_TRUE(document.ok()) << document.status();
  EXPECT_EQ((*document)["_format_version"], "3.0");
  EXPECT_EQ((*document)["_transform"], false);
  EXPECT_EQ((*document)["targets"].size(), 1u);
  clock_.Advance(50);
  HttpResponse again = Call("POST", "/config?check_hash=1", exported["config"].get<std::string>(), "text/yaml");
  EXPECT_EQ(again.status, 304) << again.body;
  CallJson("POST", "/config", 201, exported["config"].get<std::string>(), "text/yaml");
  EXPECT_EQ(StoreHash(), hash);
  EXPECT_EQ(CallJson("GET", "/config", 200)["config"], exported["config"]);
}

TEST_F(ConfigEndpointTest, CertificatesWithSnisAndServicesThatUseThem) {
  const test_support::TestCertificate ca = test_support::MakeTestCertificate({.common_name = "Test CA", .is_ca = true});
  const test_support::TestCertificate leaf = test_support::MakeTestCertificate({.common_name = "api.example.com"});
  const std::string ca_id = "5d1b0f0e-0000-4000-8000-00000000ca01";
  json doc = {
      {"_format_version", "3.0"},
      {"ca_certificates", json::array({{{"id", ca_id}, {"cert", ca.cert_pem}}})},
      {"certificates", json::array({{{"cert", leaf.cert_pem},
                                     {"key", leaf.key_pem},
                                     {"snis", json::array({"api.example.com", {{"name", "www.example.com"}}})}}})},
      {"services", json::array({{{"name", "secure"},
                                 {"url", "https://backend.internal"},
                                 {"ca_certificates", json::array({ca_id})},
                                 {"tls_verify", true}}})}};
  json created = CallJson("POST", "/config", 201, doc.dump());
  ASSERT_EQ(created["certificates"].size(), 1u) << created.dump();
  const std::string cert_id = created["certificates"].begin().key();
  json cert = CallJson("GET", "/certificates/" + cert_id, 200);
  EXPECT_EQ(cert["snis"], json::array({"api.example.com", "www.example.com"}));
  EXPECT_EQ(CallJson("GET", "/snis/www.example.com", 200)["certificate"]["id"], cert_id);
  EXPECT_EQ(CallJson("GET", "/services/secure", 200)["ca_certificates"], json::array({ca_id}));
  // A CA certificate id that the document does not hold is a dangling reference.
  doc["services"][0]["ca_certificates"] = json::array({"5d1b0f0e-0000-4000-8000-00000000ca02"});
  json bad = CallJson("POST", "/config", 400, doc.dump());
  EXPECT_EQ(bad["fields"]["services"][0]["ca_certificates"][0],
            "invalid reference 'ca_certificates: 5d1b0f0e-0000-4000-8000-00000000ca02' (no such entry in "
            "'ca_certificates')")
      << bad.dump();
  // The export carries the certificate and its snis, and loads back unchanged.
  json exported = CallJson("GET", "/config", 200);
  EXPECT_EQ(Call("POST", "/config?check_hash=1", exported["config"].get<std::string>(), "text/yaml").status, 304);
}

TEST_F(ConfigEndpointTest, ExpiredCertificatesLoadBack) {
  const test_support::TestCertificate expired =
      test_support::MakeTestCertificate({.not_before_offset = -7200, .not_after_offset = -3600});
  json doc = {{"_format_version", "3.0"},
              {"certificates", json::array({{{"cert", expired.cert_pem}, {"key", expired.key_pem}}})},
              // The same certificate twice, with its snis apart: ids come from the cert and its key.
              {"ca_certificates", json::array()}};
  CallJson("POST", "/config", 201, doc.dump());
  // The Admin API still refuses an expired certificate on its own writes.
  CallJson("POST", "/certificates", 400, json{{"cert", expired.cert_pem}, {"key", expired.key_pem}}.dump());
  json exported = CallJson("GET", "/config", 200);
  EXPECT_EQ(Call("POST", "/config?check_hash=1", exported["config"].get<std::string>(), "text/yaml").status, 304);
}

TEST_F(ConfigEndpointTest, OtherMethodsAre405) {
  EXPECT_EQ(Call("PUT", "/config", kDocument).status, 405);
  EXPECT_EQ(Call("DELETE", "/config").status, 405);
}

}  // namespace
}  // namespace portico::cp
