// The upstream TLS contexts of a snapshot (data_plane/balancer/upstream_tls.h): which services
// share a context, and what each context does in a real handshake (in memory, certificates made
// at test time) against a server: verification against ca_certificates, the name check, verify
// off, the client certificate (the service's or its upstream's), SNI, and session resumption
// through the session sink.
#include "data_plane/balancer/upstream_tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/common/test_certificates.h"

namespace portico::dp {
namespace {

using test_support::MakeTestCertificate;
using test_support::TestCertificate;
using test_support::TestCertificateOptions;

TestCertificate MakeCa(const std::string& name) {
  TestCertificateOptions o;
  o.common_name = name;
  o.is_ca = true;
  return MakeTestCertificate(o);
}

TestCertificate MakeLeaf(const std::string& name, const TestCertificate& issuer) {
  TestCertificateOptions o;
  o.common_name = name;
  o.issuer = &issuer;
  return MakeTestCertificate(o);
}

X509* ParseCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return cert;
}

EVP_PKEY* ParseKey(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return key;
}

// A TLS server context with `leaf`; when `require_client_cert`, it asks for a client certificate
// and refuses a handshake without one (any certificate is accepted: the test reads its subject).
SSL_CTX* ServerContext(const TestCertificate& leaf, bool require_client_cert) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  X509* cert = ParseCert(leaf.cert_pem);
  EVP_PKEY* key = ParseKey(leaf.key_pem);
  EXPECT_EQ(SSL_CTX_use_certificate(ctx, cert), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx, key), 1);
  X509_free(cert);
  EVP_PKEY_free(key);
  if (require_client_cert) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, [](int, X509_STORE_CTX*) { return 1; });
  }
  return ctx;
}

struct HandshakeResult {
  bool ok = false;
  long verify_result = X509_V_OK;
  std::string server_saw_sni;          // empty: none sent
  std::string server_saw_client_cn;    // empty: no client certificate
  bool reused = false;
};

std::string CommonName(X509* cert) {
  char buffer[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buffer, sizeof(buffer));
  return buffer;
}

// Runs `client` (owned here) against a fresh server SSL of `server_ctx` over memory BIOs, then
// one byte of application data each way so the client reads the server's session tickets.
HandshakeResult Handshake(SSL* client, SSL_CTX* server_ctx) {
  HandshakeResult result;
  SSL* server = SSL_new(server_ctx);
  BIO* client_side = nullptr;
  BIO* server_side = nullptr;
  BIO_new_bio_pair(&client_side, 0, &server_side, 0);
  SSL_set_bio(client, client_side, client_side);
  SSL_set_bio(server, server_side, server_side);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  bool client_done = false, server_done = false, failed = false;
  for (int i = 0; i < 100 && !(client_done && server_done) && !failed; ++i) {
    if (!client_done) {
      const int rc = SSL_do_handshake(client);
      if (rc == 1) client_done = true;
      else if (SSL_get_error(client, rc) != SSL_ERROR_WANT_READ) failed = true;
    }
    if (!server_done) {
      const int rc = SSL_do_handshake(server);
      if (rc == 1) server_done = true;
      else if (SSL_get_error(server, rc) != SSL_ERROR_WANT_READ) failed = true;
    }
  }
  result.verify_result = SSL_get_verify_result(client);
  if (!failed && client_done && server_done) {
    // Application data both ways: the client processes the TLS 1.3 tickets, and a server that
    // refuses the client certificate after a TLS 1.3 handshake says so here.
    char byte = 'x';
    size_t n = 0;
    bool data_ok = SSL_write_ex(server, &byte, 1, &n) == 1;
    data_ok = data_ok && SSL_read_ex(client, &byte, 1, &n) == 1;
    data_ok = data_ok && SSL_write_ex(client, &byte, 1, &n) == 1;
    data_ok = data_ok && SSL_read_ex(server, &byte, 1, &n) == 1;
    result.ok = data_ok;
  }
  if (const char* sni = SSL_get_servername(server, TLSEXT_NAMETYPE_host_name); sni != nullptr) {
    result.server_saw_sni = sni;
  }
  if (X509* peer = SSL_get1_peer_certificate(server); peer != nullptr) {
    result.server_saw_client_cn = CommonName(peer);
    X509_free(peer);
  }
  result.reused = SSL_session_reused(client) == 1;
  ERR_clear_error();
  // As TlsTransport does for a healthy connection: freed without close_notify, its session stays
  // resumable.
  if (result.ok) SSL_set_shutdown(client, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(client);
  SSL_free(server);
  return result;
}

class SessionKeeper : public UpstreamTlsSessionSink {
 public:
  ~SessionKeeper() override { SSL_SESSION_free(last); }
  void OnUpstreamTlsSession(SSL_SESSION* session) override {
    SSL_SESSION_free(last);
    last = session;
    ++count;
  }
  SSL_SESSION* last = nullptr;
  int count = 0;
};

class UpstreamTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = new TestCertificate(MakeCa("Upstream Test CA"));
    other_ca_ = new TestCertificate(MakeCa("Other CA"));
    server_leaf_ = new TestCertificate(MakeLeaf("upstream.test", *ca_));
    client_leaf_ = new TestCertificate(MakeLeaf("portico-client", *ca_));
    upstream_client_leaf_ = new TestCertificate(MakeLeaf("upstream-entity-client", *ca_));
  }
  static void TearDownTestSuite() {
    delete ca_;
    delete other_ca_;
    delete server_leaf_;
    delete client_leaf_;
    delete upstream_client_leaf_;
  }

  void SetUp() override {
    server_ctx_ = ServerContext(*server_leaf_, false);
    mtls_server_ctx_ = ServerContext(*server_leaf_, true);
    config::v1::CaCertificate ca;
    ca.set_id("ca-right");
    ca.set_cert(ca_->cert_pem);
    config_.ca_certificates.push_back(ca);
    ca.set_id("ca-wrong");
    ca.set_cert(other_ca_->cert_pem);
    config_.ca_certificates.push_back(ca);
    config::v1::Certificate client;
    client.set_id("client-cert");
    client.set_cert(client_leaf_->cert_pem);
    client.set_key(client_leaf_->key_pem);
    config_.certificates.push_back(client);
    client.set_id("upstream-client-cert");
    client.set_cert(upstream_client_leaf_->cert_pem);
    client.set_key(upstream_client_leaf_->key_pem);
    config_.certificates.push_back(client);
  }
  void TearDown() override {
    SSL_CTX_free(server_ctx_);
    SSL_CTX_free(mtls_server_ctx_);
  }

  config::v1::Service& AddService(const std::string& id, const std::string& protocol = "https") {
    config::v1::Service s;
    s.set_id(id);
    s.set_name(id);
    s.set_protocol(protocol);
    s.set_host("upstream.test");
    s.set_port(443);
    config_.services.push_back(s);
    return config_.services.back();
  }

  std::unique_ptr<const UpstreamTlsContexts> Compile(UpstreamTlsOptions options = {}) {
    absl::StatusOr<std::unique_ptr<const UpstreamTlsContexts>> compiled = UpstreamTlsContexts::Compile(config_, options);
    EXPECT_TRUE(compiled.ok()) << compiled.status();
    return compiled.ok() ? *std::move(compiled) : nullptr;
  }

  static TestCertificate* ca_;
  static TestCertificate* other_ca_;
  static TestCertificate* server_leaf_;
  static TestCertificate* client_leaf_;
  static TestCertificate* upstream_client_leaf_;
  ConfigSet config_;
  SSL_CTX* server_ctx_ = nullptr;
  SSL_CTX* mtls_server_ctx_ = nullptr;
};

TestCertificate* UpstreamTlsTest::ca_ = nullptr;
TestCertificate* UpstreamTlsTest::other_ca_ = nullptr;
TestCertificate* UpstreamTlsTest::server_leaf_ = nullptr;
TestCertificate* UpstreamTlsTest::client_leaf_ = nullptr;
TestCertificate* UpstreamTlsTest::upstream_client_leaf_ = nullptr;

TEST_F(UpstreamTlsTest, OnlyHttpsServicesGetAContextAndEqualSettingsShareOne) {
  AddService("plain", "http");
  AddService("a");
  AddService("b");
  AddService("verified").set_tls_verify(true);
  auto contexts = Compile();
  ASSERT_NE(contexts, nullptr);
  EXPECT_EQ(contexts->ForService("plain"), nullptr);
  ASSERT_NE(contexts->ForService("a"), nullptr);
  EXPECT_EQ(contexts->ForService("a"), contexts->ForService("b"));
  ASSERT_NE(contexts->ForService("verified"), nullptr);
  EXPECT_NE(contexts->ForService("verified"), contexts->ForService("a"));
  EXPECT_NE(contexts->ForService("verified")->key(), contexts->ForService("a")->key());
  EXPECT_EQ(contexts->size(), 2u);
  EXPECT_FALSE(contexts->ForService("a")->verify());
  EXPECT_TRUE(contexts->ForService("verified")->verify());
  EXPECT_EQ(contexts->ForService("verified")->verify_depth(), kDefaultUpstreamVerifyDepth);
}

TEST_F(UpstreamTlsTest, KeysDependOnSettingsOnlyAndFollowTheDefault) {
  AddService("a").mutable_ca_certificates()->add_values("ca-right");
  auto first = Compile();
  config_.services[0].set_id("renamed");  // another snapshot, same settings
  auto second = Compile();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(first->ForService("a")->key(), second->ForService("renamed")->key());
  EXPECT_EQ(first->ForService("a")->key().size(), 16u);
  // tls_verify null follows --upstream-tls-verify.
  UpstreamTlsOptions verify_default;
  verify_default.verify_default = true;
  auto third = Compile(verify_default);
  ASSERT_NE(third, nullptr);
  EXPECT_TRUE(third->ForService("renamed")->verify());
  EXPECT_NE(third->ForService("renamed")->key(), second->ForService("renamed")->key());
  // A different CA set is a different context.
  config_.services[0].mutable_ca_certificates()->set_values(0, "ca-wrong");
  auto fourth = Compile(verify_default);
  ASSERT_NE(fourth, nullptr);
  EXPECT_NE(fourth->ForService("renamed")->key(), third->ForService("renamed")->key());
}

TEST_F(UpstreamTlsTest, VerifiesAgainstTheServiceCaCertificatesAndTheName) {
  config::v1::Service& s = AddService("a");
  s.set_tls_verify(true);
  s.mutable_ca_certificates()->add_values("ca-right");
  auto contexts = Compile();
  ASSERT_NE(contexts, nullptr);
  const UpstreamTlsContext* tls = contexts->ForService("a");
  HandshakeResult good = Handshake(tls->NewSsl("upstream.test", nullptr, nullptr), server_ctx_);
  EXPECT_TRUE(good.ok);
  EXPECT_EQ(good.verify_result, X509_V_OK);
  EXPECT_EQ(good.server_saw_sni, "upstream.test");
  // The chain is right but the name is not.
  HandshakeResult wrong_name = Handshake(tls->NewSsl("other.test", nullptr, nullptr), server_ctx_);
  EXPECT_FALSE(wrong_name.ok);
  EXPECT_EQ(wrong_name.verify_result, X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST_F(UpstreamTlsTest, AWrongCaFailsVerificationAndVerifyOffAcceptsIt) {
  AddService("strict").set_tls_verify(true);
  config_.services.back().mutable_ca_certificates()->add_values("ca-wrong");
  AddService("lenient").set_tls_verify(false);
  config_.services.back().mutable_ca_certificates()->add_values("ca-wrong");
  auto contexts = Compile();
  ASSERT_NE(contexts, nullptr);
  HandshakeResult strict = Handshake(contexts->ForService("strict")->NewSsl("upstream.test", nullptr, nullptr), server_ctx_);
  EXPECT_FALSE(strict.ok);
  EXPECT_EQ(strict.verify_result, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  HandshakeResult lenient =
      Handshake(contexts->ForService("lenient")->NewSsl("upstream.test", nullptr, nullptr), server_ctx_);
  EXPECT_TRUE(lenient.ok);
}

TEST_F(UpstreamTlsTest, NoSniForAnIpLiteral) {
  AddService("a");
  auto contexts = Compile();
  ASSERT_NE(contexts, nullptr);
  HandshakeResult result = Handshake(contexts->ForService("a")->NewSsl("127.0.0.1", nullptr, nullptr), server_ctx_);
  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.server_saw_sni, "");
  EXPECT_TRUE(IsIpLiteral("[::1]"));
  EXPECT_TRUE(IsIpLiteral("10.0.0.1"));
  EXPECT_FALSE(IsIpLiteral("upstream.test"));
  EXPECT_FALSE(IsIpLiteral(""));
}

TEST_F(UpstreamTlsTest, ClientCertificateOfTheServiceElseOfItsUpstream) {
  AddService("own").set_client_certificate_id("client-cert");
  config::v1::Service& balanced = AddService("balanced");
  balanced.set_host("backends");
  AddService("none");
  config::v1::Upstream upstream;
  upstream.set_id("u1");
  upstream.set_name("backends");
  upstream.set_client_certificate_id("upstream-client-cert");
  config_.upstreams.push_back(upstream);
  auto contexts = Compile();
  ASSERT_NE(contexts, nullptr);
  EXPECT_TRUE(contexts->ForService("own")->has_client_certificate());
  EXPECT_TRUE(contexts->ForService("balanced")->has_client_certificate());
  EXPECT_FALSE(contexts->ForService("none")->has_client_certificate());

  HandshakeResult own = Handshake(contexts->ForService("own")->NewSsl("upstream.test", nullptr, nullptr), mtls_server_ctx_);
  EXPECT_TRUE(own.ok);
  EXPECT_EQ(own.server_saw_client_cn, "portico-client");
  HandshakeResult from_upstream =
      Handshake(contexts->ForService("balanced")->NewSsl("upstream.test", nullptr, nullptr), mtls_server_ctx_);
  EXPECT_TRUE(from_upstream.ok);
  EXPECT_EQ(from_upstream.server_saw_client_cn, "upstream-entity-client");
  HandshakeResult without =
      Handshake(contexts->ForService("none")->NewSsl("upstream.test", nullptr, nullptr), mtls_server_ctx_);
  EXPECT_FALSE(without.ok);
  EXPECT_EQ(without.server_saw_client_cn, "");
}

TEST_F(UpstreamTlsTest, ProbeContextsOfAnUpstreamPresentItsClientCertificate) {
  config::v1::Upstream with;
  with.set_id("u1");
  with.set_name("backends");
  with.set_client_certificate_id("upstream-client-cert");
  config_.upstreams.push_back(with);
  config::v1::Upstream without;
  without.set_id("u2");
  without.set_name("others");
  config_.upstreams.push_back(without);
  auto contexts = Compile();  // no https service: probe contexts only
  ASSERT_NE(contexts, nullptr);
  EXPECT_EQ(contexts->ForUpstreamProbes("u2").verify, nullptr);
  EXPECT_EQ(contexts->ForUpstreamProbes("u2").no_verify, nullptr);
  UpstreamTlsContexts::ProbeContexts probe = contexts->ForUpstreamProbes("u1");
  ASSERT_NE(probe.verify, nullptr);
  ASSERT_NE(probe.no_verify, nullptr);
  HandshakeResult lenient = Handshake(SSL_new(probe.no_verify.get()), mtls_server_ctx_);
  EXPECT_TRUE(lenient.ok);
  EXPECT_EQ(lenient.server_saw_client_cn, "upstream-entity-client");
  // Verifying probes trust the system store, which does not know the test CA.
  HandshakeResult strict = Handshake(SSL_new(probe.verify.get()), mtls_server_ctx_);
  EXPECT_FALSE(strict.ok);
  EXPECT_NE(strict.verify_result, X509_V_OK);
}

TEST_F(UpstreamTlsTest, AMissingOrBrokenReferenceFailsTheCompileWithoutKeyMaterial) {
  AddService("a").set_client_certificate_id("nope");
  absl::StatusOr<std::unique_ptr<const UpstreamTlsContexts>> missing = UpstreamTlsContexts::Compile(config_, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("client_certificate nope"), std::string::npos) << missing.status();

  config_.services[0].set_client_certificate_id("client-cert");
  config_.certificates[0].set_key(upstream_client_leaf_->key_pem);  // not this certificate's key
  absl::StatusOr<std::unique_ptr<const UpstreamTlsContexts>> mismatch = UpstreamTlsContexts::Compile(config_, {});
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("does not match"), std::string::npos) << mismatch.status();
  EXPECT_EQ(mismatch.status().message().find("PRIVATE KEY"), std::string::npos);

  config_.services[0].clear_client_certificate_id();
  config_.services[0].mutable_ca_certificates()->add_values("ca-missing");
  EXPECT_FALSE(UpstreamTlsContexts::Compile(config_, {}).ok());
}

TEST_F(UpstreamTlsTest, TheSinkGetsSessionsThatResumeTheNextConnection) {
  AddService("a");
  auto contexts = Compile();
  ASSERT_NE(contexts, nullptr);
  const UpstreamTlsContext* tls = contexts->ForService("a");
  SessionKeeper keeper;
  HandshakeResult first = Handshake(tls->NewSsl("upstream.test", &keeper, nullptr), server_ctx_);
  ASSERT_TRUE(first.ok);
  EXPECT_FALSE(first.reused);
  ASSERT_GE(keeper.count, 1);
  ASSERT_NE(keeper.last, nullptr);
  EXPECT_EQ(SSL_SESSION_is_resumable(keeper.last), 1);
  HandshakeResult second = Handshake(tls->NewSsl("upstream.test", &keeper, keeper.last), server_ctx_);
  EXPECT_TRUE(second.ok);
  EXPECT_TRUE(second.reused);
}

}  // namespace
}  // namespace portico::dp
