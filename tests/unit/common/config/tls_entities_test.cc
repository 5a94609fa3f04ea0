// Kong's certificates, snis and ca_certificates rules, and their references in a config set, on
// certificates made at test time.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/config/entities.h"
#include "common/config/entity_json.h"
#include "common/config/validate.h"
#include "gtest/gtest.h"
#include "tests/common/test_certificates.h"

namespace portico {
namespace {

using config::v1::CaCertificate;
using config::v1::Certificate;
using config::v1::Service;
using config::v1::Sni;
using config::v1::Upstream;
using test_support::MakeTestCertificate;
using test_support::TestCertificate;

constexpr char kCertId[] = "c0000000-0000-4000-8000-000000000001";
constexpr char kSniId[] = "c0000000-0000-4000-8000-000000000002";
constexpr char kCaId[] = "c0000000-0000-4000-8000-000000000003";

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

Certificate ValidCertificate() {
  Certificate c;
  c.set_id(kCertId);
  c.set_cert(Rsa().cert_pem);
  c.set_key(Rsa().key_pem);
  return c;
}

std::string MessageFor(const FieldErrors& errors, const std::string& path) {
  for (const auto& [p, m] : errors.errors()) {
    if (p == path) return m;
  }
  return "<none>";
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

TEST(CertificateRulesTest, AcceptsAMatchingPairAndAnAlternativeOfTheOtherType) {
  EXPECT_TRUE(ValidateCertificateFields(ValidCertificate(), Now()).empty())
      << ValidateCertificateFields(ValidCertificate(), Now()).KongMessage();
  Certificate both = ValidCertificate();
  both.set_cert_alt(Ec().cert_pem);
  both.set_key_alt(Ec().key_pem);
  EXPECT_TRUE(ValidateCertificateFields(both, Now()).empty()) << ValidateCertificateFields(both, Now()).KongMessage();
}

TEST(CertificateRulesTest, RefusesWithKongsMessages) {
  Certificate c = ValidCertificate();
  c.set_key(Ec().key_pem);
  EXPECT_EQ(MessageFor(ValidateCertificateFields(c), "@entity"), "certificate does not match key");

  c = ValidCertificate();
  c.set_cert_alt(Ec().cert_pem);
  EXPECT_EQ(MessageFor(ValidateCertificateFields(c), "@entity"),
            "all or none of these fields must be set: 'cert_alt', 'key_alt'");

  c = ValidCertificate();
  c.set_cert_alt(Ec().cert_pem);
  c.set_key_alt(MakeTestCertificate({.key_type = PemKeyType::kEc}).key_pem);
  EXPECT_EQ(MessageFor(ValidateCertificateFields(c), "@entity"), "alternative certificate does not match key");

  const TestCertificate other_rsa = MakeTestCertificate({.key_type = PemKeyType::kRsa});
  c = ValidCertificate();
  c.set_cert_alt(other_rsa.cert_pem);
  c.set_key_alt(other_rsa.key_pem);
  EXPECT_EQ(MessageFor(ValidateCertificateFields(c), "@entity"),
            "certificate and alternative certificate need to have different type (e.g. RSA and ECDSA), the provided "
            "certificates were both of the same type");

  c = Certificate();
  c.set_id(kCertId);
  const FieldErrors missing = ValidateCertificateFields(c);
  EXPECT_EQ(MessageFor(missing, "cert"), "required field missing");
  EXPECT_EQ(MessageFor(missing, "key"), "required field missing");
}

TEST(CertificateRulesTest, MalformedPemNamesTheFieldAndNeverTheKey) {
  Certificate c = ValidCertificate();
  c.set_cert("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
  // A key cut in half: what parses of it must not come back in the message.
  c.set_key(Rsa().key_pem.substr(0, Rsa().key_pem.size() / 2));
  const FieldErrors errors = ValidateCertificateFields(c);
  EXPECT_EQ(MessageFor(errors, "cert").rfind("invalid certificate: ", 0), 0u) << MessageFor(errors, "cert");
  EXPECT_EQ(MessageFor(errors, "key").rfind("invalid key: ", 0), 0u) << MessageFor(errors, "key");
  const std::string text = errors.KongMessage();
  for (size_t at = 28; at + 24 < c.key().size(); at += 24) {
    EXPECT_EQ(text.find(c.key().substr(at, 24)), std::string::npos) << "key material in: " << text;
  }
  EXPECT_FALSE(MessageFor(ValidateCertificateFields(c), "@entity") != "<none>");  // no match check on bad input
}

TEST(CertificateRulesTest, ExpiredOnlyWhenAWriteGivesTheTime) {
  const TestCertificate expired = MakeTestCertificate({.not_before_offset = -7200, .not_after_offset = -60});
  Certificate c = ValidCertificate();
  c.set_cert(expired.cert_pem);
  c.set_key(expired.key_pem);
  EXPECT_EQ(MessageFor(ValidateCertificateFields(c, Now()), "cert"),
            "certificate expired, \"Not After\" time is in the past");
  // A stored certificate that expired since does not make a config set invalid.
  EXPECT_TRUE(ValidateCertificateFields(c).empty());

  Certificate alt = ValidCertificate();
  const TestCertificate expired_ec =
      MakeTestCertificate({.key_type = PemKeyType::kEc, .not_before_offset = -7200, .not_after_offset = -60});
  alt.set_cert_alt(expired_ec.cert_pem);
  alt.set_key_alt(expired_ec.key_pem);
  EXPECT_EQ(MessageFor(ValidateCertificateFields(alt, Now()), "cert_alt"),
            "certificate expired, \"Not After\" time is in the past");
}

TEST(SniRulesTest, KongsWildcardHostRule) {
  for (const char* good : {"example.com", "*.example.com", "example.*", "*", "foo.test.wildcard.*", "*test.com"}) {
    EXPECT_EQ(WildcardHostError(good), "") << good;
  }
  EXPECT_EQ(WildcardHostError("foo.*.com"), "wildcard must be leftmost or rightmost character");
  EXPECT_EQ(WildcardHostError("*.example.*"), "only one wildcard must be specified");
  EXPECT_EQ(WildcardHostError("example.com:443"), "must not have a port");
  EXPECT_EQ(WildcardHostError("*.example.com:8000"), "must not have a port");
  EXPECT_EQ(WildcardHostError("10.0.0.1"), "must not be an IP");
  EXPECT_EQ(WildcardHostError("10.0.0.1:443"), "must not be an IP");
  EXPECT_EQ(WildcardHostError("::1"), "must not be an IP");
  EXPECT_EQ(WildcardHostError("[::1]"), "must not be an IP");
  EXPECT_EQ(WildcardHostError("test.wildcard.com:*"), "invalid value: test.wildcard.com:wildcard");
  EXPECT_EQ(WildcardHostError("bad host"), "invalid value: bad host");

  Sni sni;
  sni.set_id(kSniId);
  sni.set_name("Example.COM");
  EXPECT_EQ(MessageFor(ValidateSniFields(sni), "name"), "must be lowercase");
  EXPECT_EQ(MessageFor(ValidateSniFields(sni), "certificate"), "required field missing");
  NormalizeSni(&sni);
  sni.set_certificate_id(kCertId);
  EXPECT_EQ(sni.name(), "example.com");
  EXPECT_TRUE(ValidateSniFields(sni).empty()) << ValidateSniFields(sni).KongMessage();
}

TEST(CaCertificateRulesTest, OneUnexpiredCaCertificateWithItsDigest) {
  CaCertificate ca;
  ca.set_id(kCaId);
  ca.set_cert(Ca().cert_pem);
  NormalizeCaCertificate(&ca);
  ASSERT_EQ(ca.cert_digest().size(), 64u);
  EXPECT_TRUE(ValidateCaCertificateFields(ca, Now()).empty()) << ValidateCaCertificateFields(ca, Now()).KongMessage();

  CaCertificate leaf = ca;
  leaf.set_cert(Rsa().cert_pem);
  NormalizeCaCertificate(&leaf);
  EXPECT_EQ(MessageFor(ValidateCaCertificateFields(leaf), "@entity"),
            "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint");

  CaCertificate two = ca;
  two.set_cert(Ca().cert_pem + Rsa().cert_pem);
  EXPECT_EQ(MessageFor(ValidateCaCertificateFields(two), "@entity"), "please submit only one certificate at a time");

  const TestCertificate old_ca =
      MakeTestCertificate({.not_before_offset = -7200, .not_after_offset = -60, .is_ca = true});
  CaCertificate expired = ca;
  expired.set_cert(old_ca.cert_pem);
  NormalizeCaCertificate(&expired);
  EXPECT_EQ(MessageFor(ValidateCaCertificateFields(expired, Now()), "@entity"),
            "certificate expired, \"Not After\" time is in the past");
  EXPECT_TRUE(ValidateCaCertificateFields(expired).empty());

  CaCertificate wrong_digest = ca;
  wrong_digest.set_cert_digest(std::string(64, '0'));
  EXPECT_NE(MessageFor(ValidateCaCertificateFields(wrong_digest), "cert_digest"), "<none>");
}

// A set with a certificate, its SNI, a CA certificate, and a service and an upstream using them.
ConfigSet TlsConfig() {
  ConfigSet set;
  set.certificates.push_back(ValidCertificate());
  Sni sni;
  sni.set_id(kSniId);
  sni.set_name("*.example.com");
  sni.set_certificate_id(kCertId);
  set.snis.push_back(sni);
  CaCertificate ca;
  ca.set_id(kCaId);
  ca.set_cert(Ca().cert_pem);
  NormalizeCaCertificate(&ca);
  set.ca_certificates.push_back(ca);
  Service s = DefaultService();
  s.set_id("c0000000-0000-4000-8000-000000000004");
  s.set_protocol("https");
  s.set_host("backend.internal");
  s.set_port(443);
  s.set_client_certificate_id(kCertId);
  s.mutable_ca_certificates()->add_values(kCaId);
  set.services.push_back(s);
  return set;
}

TEST(TlsConfigSetTest, ReferencesMustExistAndNamesBeUnique) {
  ConfigSet set = TlsConfig();
  ASSERT_TRUE(ValidateConfigSet(set).ok()) << ValidateConfigSet(set);

  ConfigSet no_cert = TlsConfig();
  no_cert.certificates.clear();
  absl::Status st = ValidateConfigSet(no_cert);
  EXPECT_NE(st.message().find("does not exist"), absl::string_view::npos) << st;

  ConfigSet no_ca = TlsConfig();
  no_ca.ca_certificates.clear();
  st = ValidateConfigSet(no_ca);
  EXPECT_NE(st.message().find("ca_certificate c0000000-0000-4000-8000-000000000003 does not exist"),
            absl::string_view::npos)
      << st;

  ConfigSet twice = TlsConfig();
  Sni again = twice.snis[0];
  again.set_id("c0000000-0000-4000-8000-000000000009");
  twice.snis.push_back(again);
  st = ValidateConfigSet(twice);
  EXPECT_NE(st.message().find("duplicate name '*.example.com'"), absl::string_view::npos) << st;

  ConfigSet upstream_ref = TlsConfig();
  upstream_ref.certificates[0].set_id("c0000000-0000-4000-8000-00000000000a");
  upstream_ref.snis.clear();
  upstream_ref.services[0].clear_client_certificate_id();
  Upstream u = static_cast<const Upstream&>(UpstreamsKind().defaults());
  FieldErrors ignored;
  NormalizeUpstream(&u, &ignored);
  u.set_id("c0000000-0000-4000-8000-000000000005");
  u.set_name("backend.internal");
  u.set_client_certificate_id(kCertId);
  upstream_ref.upstreams.push_back(u);
  st = ValidateConfigSet(upstream_ref);
  EXPECT_NE(st.message().find("upstream c0000000-0000-4000-8000-000000000005: client_certificate"),
            absl::string_view::npos)
      << st;
}

TEST(TlsConfigSetTest, AMismatchedKeyIsRefusedWithoutItsBytes) {
  ConfigSet set = TlsConfig();
  set.certificates[0].set_key(Ec().key_pem);
  absl::Status st = ValidateConfigSet(set);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("certificate does not match key"), absl::string_view::npos) << st;
  EXPECT_EQ(st.message().find("PRIVATE KEY"), absl::string_view::npos) << st;
}

TEST(TlsKindsTest, DescriptorsDeclareKongsKeys) {
  EXPECT_EQ(SnisKind().endpoint_key(), "name");
  EXPECT_TRUE(CertificatesKind().endpoint_key().empty());
  EXPECT_TRUE(CaCertificatesKind().endpoint_key().empty());
  EXPECT_EQ(CertificatesKind().child_keys_field(), "snis");
  ASSERT_EQ(SnisKind().stored_foreign_keys().size(), 1u);
  EXPECT_EQ(SnisKind().stored_foreign_keys()[0]->on_delete, OnDelete::kCascade);
  const auto listed = EntityRegistry::Default().ArrayReferencesTo(CaCertificatesKind());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].kind, &ServicesKind());
  EXPECT_EQ(listed[0].field->name, "ca_certificates");
}

// What a data plane pays per certificate when it validates a snapshot (the figures in
// docs/tls.md): the first time (OpenSSL parses), and again at the next snapshot (pem_checks
// remembers). Printed, and bounded loosely so a regression (chain verification, a lost cache) shows.
TEST(TlsConfigSetTest, ValidatingCertificatesIsCheapPerCertificate) {
  static int round = 0;
  for (const TestCertificate* pair : {&Rsa(), &Ec()}) {
    ConfigSet set;
    constexpr int kCount = 200;
    ++round;
    for (int i = 0; i < kCount; ++i) {
      Certificate& c = set.certificates.emplace_back();
      c.set_id(absl::StrFormat("c0000000-0000-4000-8000-%012d", i));
      // Text before the PEM block is ignored by the parser but makes every entity new to the cache.
      c.set_cert(absl::StrCat("round ", round, " certificate ", i, "\n", pair->cert_pem));
      c.set_key(absl::StrCat("round ", round, " key ", i, "\n", pair->key_pem));
    }
    auto per_certificate = [&] {
      const auto start = std::chrono::steady_clock::now();
      EXPECT_TRUE(ValidateConfigSet(set).ok()) << ValidateConfigSet(set);
      return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / kCount;
    };
    const double first = per_certificate();
    const double again = per_certificate();
    std::printf("%s: %.1f us per certificate the first time, %.1f us again\n",
                pair == &Rsa() ? "RSA 2048" : "ECDSA P-256", first, again);
    EXPECT_LT(first, 10000.0);
    EXPECT_LT(again, 200.0);
    EXPECT_LT(again, first);
  }
}

}  // namespace
}  // namespace portico
