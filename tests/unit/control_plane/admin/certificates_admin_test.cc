// Kong's certificates, snis and ca_certificates through the Admin API (certificates made at test
// time), the service fields that use them, and on to a snapshot a data plane decodes.
#include <stdlib.h>

#include <filesystem>

#include "common/base/uuid.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"
#include "control_plane/admin/admin_api.h"
#include "control_plane/cluster_status.h"
#include "control_plane/store/store.h"
#include "tests/unit/control_plane/admin/admin_fixture.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/test_certificates.h"

namespace portico::cp {
namespace {

using nlohmann::json;
using test_support::MakeTestCertificate;
using test_support::TestCertificate;

const TestCertificate& Rsa() {
  static const TestCertificate* const pair = new TestCertificate(MakeTestCertificate({.key_type = PemKeyType::kRsa}));
  return *pair;
}
const TestCertificate& Ec() {
  static const TestCertificate* const pair = new TestCertificate(MakeTestCertificate({.key_type = PemKeyType::kEc}));
  return *pair;
}
const TestCertificate& Ca() {
  static const TestCertificate* const pair =
      new TestCertificate(MakeTestCertificate({.common_name = "Test CA", .is_ca = true}));
  return *pair;
}

std::string CertificateBody(const TestCertificate& pair, const json& extra = json::object()) {
  json body = {{"cert", pair.cert_pem}, {"key", pair.key_pem}};
  body.update(extra);
  return body.dump();
}

// Pieces of a PEM key's base64 lines: none may appear in an answer.
std::vector<std::string> KeyPieces(const std::string& key_pem) {
  std::vector<std::string> pieces;
  for (size_t at = key_pem.find('\n') + 1; at + 20 < key_pem.size() - 30; at += 20) pieces.push_back(key_pem.substr(at, 20));
  return pieces;
}

class CertificatesAdminTest : public AdminFixture {
 protected:
  size_t Count(const std::string& collection) {
    return CallJson("GET", collection, 200)["data"].size();
  }
  std::string HttpsService(const json& extra) {
    json body = {{"name", "secure"}, {"url", "https://backend.internal:8443"}};
    body.update(extra);
    return body.dump();
  }
};

TEST_F(CertificatesAdminTest, CrudInKongsShape) {
  json created = CallJson("POST", "/certificates", 201, CertificateBody(Rsa(), {{"tags", {"edge"}}}));
  const std::string id = created["id"];
  EXPECT_TRUE(IsUuid(id));
  EXPECT_EQ(created["cert"], Rsa().cert_pem);
  EXPECT_EQ(created["key"], Rsa().key_pem);
  EXPECT_TRUE(created["cert_alt"].is_null());
  EXPECT_TRUE(created["key_alt"].is_null());
  EXPECT_EQ(created["snis"], json::array());
  EXPECT_EQ(created["tags"], json({"edge"}));
  EXPECT_EQ(created["created_at"], 1700000000);

  EXPECT_EQ(CallJson("GET", "/certificates/" + id, 200), created);
  json listed = CallJson("GET", "/certificates", 200);
  ASSERT_EQ(listed["data"].size(), 1u);
  EXPECT_EQ(listed["data"][0], created);

  json patched = CallJson("PATCH", "/certificates/" + id, 200,
                          json{{"cert_alt", Ec().cert_pem}, {"key_alt", Ec().key_pem}}.dump());
  EXPECT_EQ(patched["cert_alt"], Ec().cert_pem);
  EXPECT_EQ(patched["cert"], Rsa().cert_pem);

  // Certificates are addressed by id only.
  EXPECT_EQ(Call("GET", "/certificates/example.com").status, 404);
  EXPECT_EQ(Call("DELETE", "/certificates/" + id).status, 204);
  EXPECT_EQ(Call("GET", "/certificates/" + id).status, 404);
}

TEST_F(CertificatesAdminTest, BadPemAndMismatchedKeysAreRefusedWithoutTheKey) {
  const TestCertificate other = MakeTestCertificate({.key_type = PemKeyType::kRsa});
  HttpResponse mismatch = Call("POST", "/certificates", json{{"cert", Rsa().cert_pem}, {"key", other.key_pem}}.dump());
  EXPECT_EQ(mismatch.status, 400);
  json body = json::parse(mismatch.body);
  EXPECT_EQ(body["code"], 2);
  EXPECT_EQ(body["fields"]["@entity"], json({"certificate does not match key"}));
  for (const std::string& piece : KeyPieces(other.key_pem)) {
    ASSERT_EQ(mismatch.body.find(piece), std::string::npos) << "key material in " << mismatch.body;
  }

  const std::string damaged_key = other.key_pem.substr(0, other.key_pem.size() - 80) + "-----END PRIVATE KEY-----\n";
  HttpResponse malformed =
      Call("POST", "/certificates", json{{"cert", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
                                         {"key", damaged_key}}.dump());
  EXPECT_EQ(malformed.status, 400);
  body = json::parse(malformed.body);
  EXPECT_EQ(body["fields"]["cert"].get<std::string>().rfind("invalid certificate: ", 0), 0u) << malformed.body;
  EXPECT_EQ(body["fields"]["key"].get<std::string>().rfind("invalid key: ", 0), 0u) << malformed.body;
  for (const std::string& piece : KeyPieces(damaged_key)) {
    ASSERT_EQ(malformed.body.find(piece), std::string::npos) << "key material in " << malformed.body;
  }

  json missing = CallJson("POST", "/certificates", 400, json{{"cert", Rsa().cert_pem}}.dump());
  EXPECT_EQ(missing["fields"]["key"], "required field missing");

  json same_type = CallJson("POST", "/certificates", 400,
                            CertificateBody(Rsa(), {{"cert_alt", other.cert_pem}, {"key_alt", other.key_pem}}));
  EXPECT_EQ(same_type["fields"]["@entity"][0].get<std::string>().rfind("certificate and alternative certificate", 0), 0u);
  json half_alt = CallJson("POST", "/certificates", 400, CertificateBody(Rsa(), {{"cert_alt", Ec().cert_pem}}));
  EXPECT_EQ(half_alt["fields"]["@entity"], json({"all or none of these fields must be set: 'cert_alt', 'key_alt'"}));
  EXPECT_EQ(Count("/certificates"), 0u);  // nothing written
}

TEST_F(CertificatesAdminTest, AnExpiredCertificateIsRefusedNamingTheField) {
  const TestCertificate expired = MakeTestCertificate({.not_before_offset = -7200, .not_after_offset = -60});
  json refused = CallJson("POST", "/certificates", 400, CertificateBody(expired));
  EXPECT_EQ(refused["fields"]["cert"], "certificate expired, \"Not After\" time is in the past");
  EXPECT_EQ(Count("/certificates"), 0u);
}

TEST_F(CertificatesAdminTest, TheSnisFieldCreatesAndReplacesTheCertificatesSnis) {
  json created =
      CallJson("POST", "/certificates", 201, CertificateBody(Rsa(), {{"snis", {"b.example.com", "A.example.com"}}}));
  const std::string id = created["id"];
  EXPECT_EQ(created["snis"], json({"a.example.com", "b.example.com"}));
  json snis = CallJson("GET", "/snis", 200);
  ASSERT_EQ(snis["data"].size(), 2u);
  for (const json& sni : snis["data"]) EXPECT_EQ(sni["certificate"]["id"], id);
  EXPECT_EQ(CallJson("GET", "/certificates/" + id + "/snis", 200)["data"].size(), 2u);
  const std::string a_id = CallJson("GET", "/snis/a.example.com", 200)["id"];

  // PATCH with snis: b goes, c comes, a stays the same entity.
  json patched = CallJson("PATCH", "/certificates/" + id, 200, json{{"snis", {"a.example.com", "*.c.example.com"}}}.dump());
  EXPECT_EQ(patched["snis"], json({"*.c.example.com", "a.example.com"}));
  EXPECT_EQ(CallJson("GET", "/snis/a.example.com", 200)["id"], a_id);
  EXPECT_EQ(Call("GET", "/snis/b.example.com").status, 404);
  EXPECT_EQ(CallJson("GET", "/certificates/" + id, 200)["snis"], json({"*.c.example.com", "a.example.com"}));

  // PATCH without snis keeps them; null removes them all.
  EXPECT_EQ(CallJson("PATCH", "/certificates/" + id, 200, R"({"tags":["x"]})")["snis"],
            json({"*.c.example.com", "a.example.com"}));
  EXPECT_EQ(CallJson("PATCH", "/certificates/" + id, 200, R"({"snis":null})")["snis"], json::array());
  EXPECT_EQ(Count("/snis"), 0u);

  // Form input.
  json form = CallJson("PATCH", "/certificates/" + id, 200, "snis[]=f1.example.com&snis[]=f2.example.com",
                       "application/x-www-form-urlencoded");
  EXPECT_EQ(form["snis"], json({"f1.example.com", "f2.example.com"}));
}

TEST_F(CertificatesAdminTest, SniConflictsInTheSnisFieldAreKongsErrorsAndWriteNothing) {
  const std::string first = CallJson("POST", "/certificates", 201, CertificateBody(Rsa(), {{"snis", {"taken.example.com"}}}))["id"];
  json dup = CallJson("POST", "/certificates", 400, CertificateBody(Ec(), {{"snis", {"x.example.com", "x.example.com"}}}));
  EXPECT_EQ(dup["fields"]["snis"], "x.example.com is duplicated");
  json taken = CallJson("POST", "/certificates", 400, CertificateBody(Ec(), {{"snis", {"taken.example.com"}}}));
  EXPECT_EQ(taken["fields"]["snis"], "taken.example.com already associated with existing certificate '" + first + "'");
  EXPECT_EQ(Count("/certificates"), 1u);
  EXPECT_EQ(Count("/snis"), 1u);

  json bad = CallJson("POST", "/certificates", 400, CertificateBody(Ec(), {{"snis", {"ok.example.com", "foo.*.com"}}}));
  EXPECT_EQ(bad["fields"]["snis"], json({nullptr, "wildcard must be leftmost or rightmost character"}));
  json not_array = CallJson("POST", "/certificates", 400, CertificateBody(Ec(), {{"snis", "a.example.com"}}));
  EXPECT_EQ(not_array["fields"]["snis"], "expected an array");
  EXPECT_EQ(Count("/certificates"), 1u);
}

TEST_F(CertificatesAdminTest, SnisEndpointsWildcardsAndConflicts) {
  const std::string cert = CallJson("POST", "/certificates", 201, CertificateBody(Rsa()))["id"];
  json sni = CallJson("POST", "/snis", 201, json{{"name", "*.Example.com"}, {"certificate", {{"id", cert}}}}.dump());
  EXPECT_EQ(sni["name"], "*.example.com");
  EXPECT_EQ(sni["certificate"]["id"], cert);
  EXPECT_TRUE(sni["tags"].is_null());
  EXPECT_EQ(CallJson("POST", "/certificates/" + cert + "/snis", 201, R"({"name":"example.*"})")["certificate"]["id"], cert);
  EXPECT_EQ(CallJson("GET", "/certificates/" + cert, 200)["snis"], json({"*.example.com", "example.*"}));

  json conflict = CallJson("POST", "/snis", 409, json{{"name", "*.example.com"}, {"certificate", {{"id", cert}}}}.dump());
  EXPECT_EQ(conflict["code"], 5);
  EXPECT_EQ(conflict["message"], "UNIQUE violation detected on '{name=\"*.example.com\"}'");
  EXPECT_EQ(conflict["fields"]["name"], "*.example.com");

  auto refused = [&](const std::string& name) {
    return CallJson("POST", "/snis", 400, json{{"name", name}, {"certificate", {{"id", cert}}}}.dump())["fields"]["name"];
  };
  EXPECT_EQ(refused("foo.*.example.com"), "wildcard must be leftmost or rightmost character");
  EXPECT_EQ(refused("*.example.*"), "only one wildcard must be specified");
  EXPECT_EQ(refused("example.com:443"), "must not have a port");
  EXPECT_EQ(refused("10.1.2.3"), "must not be an IP");
  EXPECT_EQ(CallJson("POST", "/snis", 400, R"({"name":"a.example.com"})")["fields"]["certificate"], "required field missing");
  const std::string unknown = NewUuid();
  json missing = CallJson("POST", "/snis", 400, json{{"name", "a.example.com"}, {"certificate", {{"id", unknown}}}}.dump());
  EXPECT_EQ(missing["code"], 4);

  // By name; the certificate of an SNI.
  EXPECT_EQ(CallJson("GET", "/snis/example.*", 200)["certificate"]["id"], cert);
  EXPECT_EQ(CallJson("GET", "/snis/example.*/certificate", 200)["id"], cert);
  EXPECT_EQ(Call("DELETE", "/snis/example.*").status, 204);
  EXPECT_EQ(CallJson("GET", "/certificates/" + cert, 200)["snis"], json({"*.example.com"}));
}

TEST_F(CertificatesAdminTest, DeletingACertificateDeletesItsSnisUnlessAServiceUsesIt) {
  const std::string cert = CallJson("POST", "/certificates", 201, CertificateBody(Rsa(), {{"snis", {"a.example.com"}}}))["id"];
  const std::string service = CallJson("POST", "/services", 201, HttpsService({{"client_certificate", {{"id", cert}}}}))["id"];
  json refused = CallJson("DELETE", "/certificates/" + cert, 400);
  EXPECT_EQ(refused["code"], 4);
  EXPECT_EQ(refused["message"], "an existing 'services' entity references this 'certificates' entity");
  EXPECT_EQ(Count("/snis"), 1u);

  // A service's client certificate must exist, and only with a TLS protocol.
  json unknown = CallJson("POST", "/services", 400,
                          json{{"name", "other"}, {"url", "https://b.internal"}, {"client_certificate", {{"id", NewUuid()}}}}.dump());
  EXPECT_EQ(unknown["code"], 4);
  json plain = CallJson("POST", "/services", 400,
                        json{{"name", "other"}, {"url", "http://b.internal"}, {"client_certificate", {{"id", cert}}}}.dump());
  EXPECT_EQ(plain["fields"]["client_certificate"], "value must be null");

  EXPECT_EQ(Call("DELETE", "/services/" + service).status, 204);
  EXPECT_EQ(Call("DELETE", "/certificates/" + cert).status, 204);
  EXPECT_EQ(Count("/snis"), 0u);
}

TEST_F(CertificatesAdminTest, AnUpstreamsClientCertificateIsAForeignKey) {
  const std::string cert = CallJson("POST", "/certificates", 201, CertificateBody(Ec()))["id"];
  json upstream = CallJson("POST", "/upstreams", 201, json{{"name", "u1"}, {"client_certificate", {{"id", cert}}}}.dump());
  EXPECT_EQ(upstream["client_certificate"]["id"], cert);
  EXPECT_EQ(CallJson("DELETE", "/certificates/" + cert, 400)["message"],
            "an existing 'upstreams' entity references this 'certificates' entity");
  EXPECT_EQ(CallJson("POST", "/upstreams", 400, json{{"name", "u2"}, {"client_certificate", {{"id", NewUuid()}}}}.dump())["code"], 4);
}

TEST_F(CertificatesAdminTest, CaCertificatesAndTheServicesThatUseThem) {
  json ca = CallJson("POST", "/ca_certificates", 201, json{{"cert", Ca().cert_pem}, {"cert_digest", "ignored"}}.dump());
  const std::string ca_id = ca["id"];
  const std::string digest = ca["cert_digest"];
  EXPECT_EQ(digest.size(), 64u);
  EXPECT_EQ(digest.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_TRUE(ca["tags"].is_null());

  json again = CallJson("POST", "/ca_certificates", 409, json{{"cert", Ca().cert_pem}}.dump());
  EXPECT_EQ(again["code"], 5);
  EXPECT_EQ(again["message"], "UNIQUE violation detected on '{cert_digest=\"" + digest + "\"}'");
  json not_ca = CallJson("POST", "/ca_certificates", 400, json{{"cert", Rsa().cert_pem}}.dump());
  EXPECT_EQ(not_ca["fields"]["@entity"],
            json({"certificate does not appear to be a CA because it is missing the \"CA\" basic constraint"}));
  const TestCertificate old_ca = MakeTestCertificate({.not_before_offset = -7200, .not_after_offset = -60, .is_ca = true});
  EXPECT_EQ(CallJson("POST", "/ca_certificates", 400, json{{"cert", old_ca.cert_pem}}.dump())["fields"]["@entity"],
            json({"certificate expired, \"Not After\" time is in the past"}));
  EXPECT_EQ(CallJson("POST", "/ca_certificates", 400, json{{"cert", Ca().cert_pem + Rsa().cert_pem}}.dump())["fields"]["@entity"],
            json({"please submit only one certificate at a time"}));

  // A service lists CA certificates by id: they must exist, and one in use cannot be deleted.
  const std::string unknown = NewUuid();
  json missing = CallJson("POST", "/services", 400, HttpsService({{"ca_certificates", {unknown}}}));
  EXPECT_EQ(missing["code"], 4);
  EXPECT_EQ(missing["message"],
            "the foreign key '{id=\"" + unknown + "\"}' does not reference an existing 'ca_certificates' entity.");
  json service = CallJson("POST", "/services", 201,
                          HttpsService({{"ca_certificates", {ca_id}}, {"tls_verify", true}, {"tls_verify_depth", 3}}));
  EXPECT_EQ(service["ca_certificates"], json({ca_id}));
  const std::string service_id = service["id"];
  EXPECT_EQ(CallJson("PATCH", "/services/secure", 400, R"({"tls_verify_depth":65})")["fields"]["tls_verify_depth"],
            "value should be between 0 and 64");
  json in_use = CallJson("DELETE", "/ca_certificates/" + ca_id, 400);
  EXPECT_EQ(in_use["code"], 19);
  EXPECT_EQ(in_use["name"], "referenced by others");
  EXPECT_EQ(in_use["message"],
            "ca certificate " + ca_id + " is still referenced by services (id = " + service_id + ")");
  EXPECT_EQ(Count("/ca_certificates"), 1u);
  CallJson("PATCH", "/services/secure", 200, R"({"ca_certificates":null})");
  EXPECT_EQ(Call("DELETE", "/ca_certificates/" + ca_id).status, 204);
  EXPECT_EQ(Count("/ca_certificates"), 0u);
}

// Admin API -> store -> snapshot -> what a data plane decodes (keys included: DPs serve them).
TEST_F(CertificatesAdminTest, SnapshotsCarryCertificatesSnisAndCaCertificates) {
  const std::string cert = CallJson("POST", "/certificates", 201,
                                    CertificateBody(Rsa(), {{"cert_alt", Ec().cert_pem},
                                                            {"key_alt", Ec().key_pem},
                                                            {"snis", {"*.example.com", "api.example.com"}}}))["id"];
  const std::string ca = CallJson("POST", "/ca_certificates", 201, json{{"cert", Ca().cert_pem}}.dump())["id"];
  const std::string service = CallJson("POST", "/services", 201,
                                       HttpsService({{"client_certificate", {{"id", cert}}}, {"ca_certificates", {ca}}}))["id"];
  absl::StatusOr<StoredConfig> stored = store_->ReadConfig();
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(ValidateConfigSet(stored->config).ok()) << ValidateConfigSet(stored->config);
  absl::StatusOr<std::shared_ptr<const BuiltSnapshot>> built = BuildSnapshot(*stored, clock_);
  ASSERT_TRUE(built.ok()) << built.status();
  absl::StatusOr<DecodedSnapshot> decoded =
      DecodeSnapshot((*built)->compressed, true, (*built)->uncompressed_size, (*built)->version);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const ConfigSet& config = *decoded->config;
  ASSERT_EQ(config.certificates.size(), 1u);
  EXPECT_EQ(config.certificates[0].id(), cert);
  EXPECT_EQ(config.certificates[0].cert(), Rsa().cert_pem);
  EXPECT_EQ(config.certificates[0].key(), Rsa().key_pem);
  EXPECT_EQ(config.certificates[0].key_alt(), Ec().key_pem);
  ASSERT_EQ(config.snis.size(), 2u);
  std::set<std::string> names;
  for (const auto& sni : config.snis) {
    names.insert(sni.name());
    EXPECT_EQ(sni.certificate_id(), cert);
  }
  EXPECT_EQ(names, (std::set<std::string>{"*.example.com", "api.example.com"}));
  ASSERT_EQ(config.ca_certificates.size(), 1u);
  EXPECT_EQ(config.ca_certificates[0].id(), ca);
  EXPECT_EQ(config.ca_certificates[0].cert_digest().size(), 64u);
  ASSERT_EQ(config.services.size(), 1u);
  EXPECT_EQ(config.services[0].id(), service);
  EXPECT_EQ(config.services[0].client_certificate_id(), cert);
  EXPECT_TRUE(ValidateConfigSet(config).ok()) << ValidateConfigSet(config);
  // The hash covers the TLS kinds: another SNI is another config.
  CallJson("POST", "/snis", 201, json{{"name", "more.example.com"}, {"certificate", {{"id", cert}}}}.dump());
  absl::StatusOr<StoredConfig> more = store_->ReadConfig();
  ASSERT_TRUE(more.ok());
  EXPECT_NE(ComputeConfigHash(more->config, more->version.epoch), ComputeConfigHash(stored->config, stored->version.epoch));
}

}  // namespace
}  // namespace portico::cp
