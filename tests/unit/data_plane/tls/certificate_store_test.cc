// The certificate store and the listener context: SNI selection (exact, wildcards, default),
// RSA and ECDSA on one name, ALPN and session resumption, through real in-memory handshakes with
// certificates generated here.
#include "data_plane/tls/certificate_store.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "data_plane/tls/self_signed.h"
#include "data_plane/tls/server_context.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico::dp {
namespace {

struct SslFree { void operator()(SSL* p) const { SSL_free(p); } };
using SslPtr = std::unique_ptr<SSL, SslFree>;
struct SessionFree { void operator()(SSL_SESSION* p) const { SSL_SESSION_free(p); } };

PemCertificate Generate(CertificateKeyType type, const std::string& cn) {
  absl::StatusOr<PemCertificate> pem = GenerateSelfSignedCertificate(type, cn);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.ok() ? *pem : PemCertificate{};
}

config::v1::Certificate MakeCertificate(const std::string& id, const PemCertificate& pem,
                                        const PemCertificate* alt = nullptr) {
  config::v1::Certificate certificate;
  certificate.set_id(id);
  certificate.set_cert(pem.cert);
  certificate.set_key(pem.key);
  if (alt != nullptr) {
    certificate.set_cert_alt(alt->cert);
    certificate.set_key_alt(alt->key);
  }
  return certificate;
}

void AddSni(ConfigSet* config, const std::string& name, const std::string& certificate_id) {
  config::v1::Sni sni;
  sni.set_id(absl::StrCat("sni-", config->snis.size()));
  sni.set_name(name);
  sni.set_certificate_id(certificate_id);
  config->snis.push_back(sni);
}

std::string CommonNameOf(SSL_CTX* ctx) {
  if (ctx == nullptr) return "<default>";
  X509* cert = SSL_CTX_get0_certificate(ctx);
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  return cn;
}

// Runs a handshake between `client` and `server` over a memory BIO pair. True when both finish.
bool Handshake(SSL* client, SSL* server) {
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  if (BIO_new_bio_pair(&client_bio, 0, &server_bio, 0) != 1) return false;
  SSL_set_bio(client, client_bio, client_bio);
  SSL_set_bio(server, server_bio, server_bio);
  SSL_set_connect_state(client);
  bool client_done = false, server_done = false;
  for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
    if (!client_done) {
      const int rc = SSL_do_handshake(client);
      if (rc == 1) {
        client_done = true;
      } else if (SSL_get_error(client, rc) != SSL_ERROR_WANT_READ) {
        return false;
      }
    }
    if (!server_done) {
      const int rc = SSL_do_handshake(server);
      if (rc == 1) {
        server_done = true;
      } else if (SSL_get_error(server, rc) != SSL_ERROR_WANT_READ) {
        return false;
      }
    }
  }
  if (!(client_done && server_done)) return false;
  // TLS 1.3 tickets follow the handshake: let the client read them.
  char byte;
  SSL_read(client, &byte, 1);
  return true;
}

struct PeerCertificate {
  std::string cn;
  int key_type = 0;  // EVP_PKEY_EC / EVP_PKEY_RSA
};

PeerCertificate PeerOf(SSL* client) {
  PeerCertificate out;
  X509* cert = SSL_get0_peer_certificate(client);
  if (cert == nullptr) return out;
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  out.cn = cn;
  out.key_type = EVP_PKEY_get_base_id(X509_get0_pubkey(cert));
  return out;
}

class ClientContext {
 public:
  ClientContext() : ctx_(SSL_CTX_new(TLS_client_method())) { SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr); }
  ~ClientContext() { SSL_CTX_free(ctx_); }
  SslPtr NewSsl(const char* sni, int max_version = TLS1_3_VERSION, const char* sigalgs = nullptr) {
    SslPtr ssl(SSL_new(ctx_));
    if (sni != nullptr) SSL_set_tlsext_host_name(ssl.get(), sni);
    SSL_set_max_proto_version(ssl.get(), max_version);
    if (sigalgs != nullptr) SSL_set1_sigalgs_list(ssl.get(), sigalgs);
    return ssl;
  }

 private:
  SSL_CTX* ctx_;
};

TEST(ServerNameTest, NormalisesCaseAndTrailingDot) {
  char buffer[kMaxServerNameBytes];
  EXPECT_EQ(NormalizeServerName("API.Example.COM.", buffer), "api.example.com");
  EXPECT_EQ(NormalizeServerName("", buffer), "");
  EXPECT_EQ(NormalizeServerName(".", buffer), "");
  EXPECT_EQ(NormalizeServerName(std::string(kMaxServerNameBytes + 1, 'a'), buffer), "");
}

class CertificateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    exact_ = Generate(CertificateKeyType::kEcdsaP256, "exact");
    leading_ = Generate(CertificateKeyType::kEcdsaP256, "leading-wildcard");
    trailing_ = Generate(CertificateKeyType::kEcdsaP256, "trailing-wildcard");
    config_.certificates.push_back(MakeCertificate("c1", exact_));
    config_.certificates.push_back(MakeCertificate("c2", leading_));
    config_.certificates.push_back(MakeCertificate("c3", trailing_));
    AddSni(&config_, "api.example.com", "c1");
    AddSni(&config_, "*.example.com", "c2");
    AddSni(&config_, "api.example.*", "c3");
    AddSni(&config_, "shop.*", "c3");
  }

  std::shared_ptr<const CertificateStore> Build() {
    absl::StatusOr<std::shared_ptr<const CertificateStore>> store = CertificateStore::Build(config_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *store : CertificateStore::Empty();
  }

  PemCertificate exact_, leading_, trailing_;
  ConfigSet config_;
};

TEST_F(CertificateStoreTest, ExactThenLeadingWildcardThenTrailingWildcard) {
  std::shared_ptr<const CertificateStore> store = Build();
  EXPECT_EQ(store->context_count(), 3u);
  EXPECT_EQ(store->name_count(), 4u);
  EXPECT_EQ(CommonNameOf(store->Find("api.example.com")), "exact");            // exact beats both wildcards
  EXPECT_EQ(CommonNameOf(store->Find("www.example.com")), "leading-wildcard");  // *.example.com
  EXPECT_EQ(CommonNameOf(store->Find("api.example.org")), "trailing-wildcard");  // api.example.*
  EXPECT_EQ(CommonNameOf(store->Find("shop.io")), "trailing-wildcard");          // shop.*
  // A wildcard stands for exactly one label (Kong replaces the leftmost / rightmost label).
  EXPECT_EQ(CommonNameOf(store->Find("a.b.example.com")), "<default>");
  EXPECT_EQ(CommonNameOf(store->Find("example.com")), "<default>");
  EXPECT_EQ(CommonNameOf(store->Find("shop.example.co.uk")), "<default>");
  EXPECT_EQ(CommonNameOf(store->Find("unknown.test")), "<default>");
  EXPECT_EQ(CommonNameOf(store->Find("")), "<default>");
}

TEST_F(CertificateStoreTest, LeadingWildcardBeatsTrailingWildcard) {
  AddSni(&config_, "www.example.*", "c3");
  std::shared_ptr<const CertificateStore> store = Build();
  EXPECT_EQ(CommonNameOf(store->Find("www.example.com")), "leading-wildcard");
  EXPECT_EQ(CommonNameOf(store->Find("www.example.net")), "trailing-wildcard");
}

TEST_F(CertificateStoreTest, TheStarSniCatchesEveryOtherNameAndClientsWithoutSni) {
  config_.certificates.push_back(MakeCertificate("c4", Generate(CertificateKeyType::kEcdsaP256, "star")));
  AddSni(&config_, "*", "c4");
  std::shared_ptr<const CertificateStore> store = Build();
  EXPECT_EQ(CommonNameOf(store->Find("api.example.com")), "exact");
  EXPECT_EQ(CommonNameOf(store->Find("www.example.com")), "leading-wildcard");
  EXPECT_EQ(CommonNameOf(store->Find("unknown.test")), "star");
  EXPECT_EQ(CommonNameOf(store->Find("")), "star");
}

TEST_F(CertificateStoreTest, OnlyCertificatesServedBySomeSniGetAContext) {
  config_.certificates.push_back(MakeCertificate("c4", Generate(CertificateKeyType::kEcdsaP256, "unused")));
  EXPECT_EQ(Build()->context_count(), 3u);
}

TEST_F(CertificateStoreTest, LaterSnapshotsReuseTheContextsOfUnchangedCertificates) {
  std::shared_ptr<const CertificateStore> first = Build();
  EXPECT_EQ(first->loaded_count(), 3u);
  std::shared_ptr<const CertificateStore> same = Build();
  EXPECT_EQ(same->loaded_count(), 0u);
  EXPECT_EQ(same->Find("api.example.com"), first->Find("api.example.com"));
  config_.certificates[0] = MakeCertificate("c1", Generate(CertificateKeyType::kEcdsaP256, "exact-2"));
  std::shared_ptr<const CertificateStore> changed = Build();
  EXPECT_EQ(changed->loaded_count(), 1u);
  EXPECT_EQ(CommonNameOf(changed->Find("api.example.com")), "exact-2");
  EXPECT_EQ(CommonNameOf(first->Find("api.example.com")), "exact");  // the old store is unchanged
  EXPECT_EQ(changed->Find("www.example.com"), first->Find("www.example.com"));
  // Once no store holds a context, it is loaded again.
  first.reset();
  same.reset();
  changed.reset();
  EXPECT_EQ(Build()->loaded_count(), 3u);
}

// How long a snapshot's certificates take to compile, first and when unchanged (printed).
TEST(CertificateStoreCostTest, UnchangedCertificatesCostAlmostNothing) {
  ConfigSet config;
  constexpr int kCertificates = 100;
  for (int i = 0; i < kCertificates; ++i) {
    const std::string id = absl::StrCat("c", i);
    config.certificates.push_back(MakeCertificate(id, Generate(CertificateKeyType::kEcdsaP256, id)));
    AddSni(&config, absl::StrCat("host", i, ".test"), id);
  }
  auto time_build = [&config](std::shared_ptr<const CertificateStore>* out) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::shared_ptr<const CertificateStore>> store = CertificateStore::Build(config);
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_TRUE(store.ok()) << store.status();
    if (store.ok()) *out = *store;
    return std::chrono::duration<double, std::micro>(took).count() / kCertificates;
  };
  std::shared_ptr<const CertificateStore> first, second;
  const double first_us = time_build(&first);
  const double second_us = time_build(&second);
  std::printf("certificate store: %.1f us per certificate loaded, %.1f us per unchanged certificate\n", first_us,
              second_us);
  EXPECT_EQ(first->loaded_count(), static_cast<size_t>(kCertificates));
  EXPECT_EQ(second->loaded_count(), 0u);
  EXPECT_LT(second_us, first_us);
}

TEST_F(CertificateStoreTest, RefusesAKeyOfAnotherCertificateWithoutQuotingIt) {
  config_.certificates[0].set_key(leading_.key);
  absl::StatusOr<std::shared_ptr<const CertificateStore>> store = CertificateStore::Build(config_);
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(absl::StrContains(store.status().message(), "certificate c1")) << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(), "does not match")) << store.status();
  EXPECT_FALSE(absl::StrContains(store.status().message(), "PRIVATE KEY")) << store.status();
}

TEST_F(CertificateStoreTest, RefusesGarbageAndAnSniWithoutItsCertificate) {
  config_.certificates[1].set_cert("not a certificate");
  EXPECT_FALSE(CertificateStore::Build(config_).ok());
  config_.certificates[1].set_cert(leading_.cert);
  AddSni(&config_, "orphan.test", "no-such-certificate");
  absl::StatusOr<std::shared_ptr<const CertificateStore>> store = CertificateStore::Build(config_);
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(absl::StrContains(store.status().message(), "orphan.test")) << store.status();
}

// Through real handshakes: the listener context picks the certificate in its client-hello
// callback.
class ServerContextTest : public CertificateStoreTest {
 protected:
  void SetUp() override {
    CertificateStoreTest::SetUp();
    absl::StatusOr<std::unique_ptr<ServerTlsContext>> server = ServerTlsContext::Create("", "");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  PeerCertificate Connect(const CertificateStore* store, const char* sni, int max_version = TLS1_3_VERSION,
                          const char* sigalgs = nullptr) {
    SslPtr server(server_->NewServerSsl(store));
    SslPtr client = client_.NewSsl(sni, max_version, sigalgs);
    if (!Handshake(client.get(), server.get())) {
      ADD_FAILURE() << "handshake failed: " << OpenSslErrors("");
      return {};
    }
    return PeerOf(client.get());
  }

  std::unique_ptr<ServerTlsContext> server_;
  ClientContext client_;
};

TEST_F(ServerContextTest, GeneratedDefaultCertificateIsEcdsaForLocalhost) {
  EXPECT_TRUE(server_->default_generated());
  EXPECT_EQ(server_->default_subject(), "CN=localhost");
  const PeerCertificate peer = Connect(nullptr, "anything.test");
  EXPECT_EQ(peer.cn, "localhost");
  EXPECT_EQ(peer.key_type, EVP_PKEY_EC);
}

TEST_F(ServerContextTest, SelectsBySniAndFallsBackToTheDefault) {
  std::shared_ptr<const CertificateStore> store = Build();
  EXPECT_EQ(Connect(store.get(), "api.example.com").cn, "exact");
  EXPECT_EQ(Connect(store.get(), "API.Example.com").cn, "exact");
  EXPECT_EQ(Connect(store.get(), "www.example.com").cn, "leading-wildcard");
  EXPECT_EQ(Connect(store.get(), "api.example.net", TLS1_2_VERSION).cn, "trailing-wildcard");
  EXPECT_EQ(Connect(store.get(), "other.test").cn, "localhost");
  EXPECT_EQ(Connect(store.get(), nullptr).cn, "localhost");
}

TEST_F(ServerContextTest, ServesRsaOrEcdsaByTheClientsCapability) {
  const PemCertificate rsa = Generate(CertificateKeyType::kRsa2048, "dual-rsa");
  const PemCertificate ecdsa = Generate(CertificateKeyType::kEcdsaP256, "dual-ecdsa");
  config_.certificates.push_back(MakeCertificate("dual", rsa, &ecdsa));
  AddSni(&config_, "dual.test", "dual");
  std::shared_ptr<const CertificateStore> store = Build();
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version);
    const PeerCertificate ec = Connect(store.get(), "dual.test", version, "ECDSA+SHA256");
    EXPECT_EQ(ec.cn, "dual-ecdsa");
    EXPECT_EQ(ec.key_type, EVP_PKEY_EC);
    const PeerCertificate rsa_peer = Connect(store.get(), "dual.test", version, "RSA-PSS+SHA256:RSA+SHA256");
    EXPECT_EQ(rsa_peer.cn, "dual-rsa");
    EXPECT_EQ(rsa_peer.key_type, EVP_PKEY_RSA);
  }
}

TEST_F(ServerContextTest, AlpnPrefersH2WhenOnAndNeverFailsAnH2OnlyClientWhenOff) {
  std::shared_ptr<const CertificateStore> store = Build();
  auto negotiate = [&](const unsigned char* protocols, unsigned int size) {
    SslPtr server(server_->NewServerSsl(store.get()));
    SslPtr client = client_.NewSsl("api.example.com");
    SSL_set_alpn_protos(client.get(), protocols, size);
    EXPECT_TRUE(Handshake(client.get(), server.get()));
    const unsigned char* chosen = nullptr;
    unsigned int length = 0;
    SSL_get0_alpn_selected(client.get(), &chosen, &length);
    return std::string(reinterpret_cast<const char*>(chosen), length);
  };
  static const unsigned char kBoth[] = "\x02h2\x08http/1.1";
  static const unsigned char kH2Only[] = "\x02h2";
  EXPECT_EQ(negotiate(kBoth, sizeof(kBoth) - 1), "h2");
  EXPECT_EQ(negotiate(kH2Only, sizeof(kH2Only) - 1), "h2");
  server_->set_http2(false);
  EXPECT_EQ(negotiate(kBoth, sizeof(kBoth) - 1), "http/1.1");
  EXPECT_EQ(negotiate(kH2Only, sizeof(kH2Only) - 1), "");
  server_->set_http2(true);
  EXPECT_EQ(SelectAlpn(absl::string_view("\x08http/1.1", 9), true), "http/1.1");
  EXPECT_EQ(SelectAlpn(absl::string_view("\x02h2\x08http/1.1", 12), true), "h2");
  EXPECT_EQ(SelectAlpn(absl::string_view("\x02h2\x08http/1.1", 12), false), "http/1.1");
  EXPECT_EQ(SelectAlpn(absl::string_view("\x09http/1.1", 9)), "");  // malformed length
}

TEST_F(ServerContextTest, ResumesWithATicketOnAnotherSniContextAndProtocolVersion) {
  std::shared_ptr<const CertificateStore> store = Build();
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version);
    SslPtr server(server_->NewServerSsl(store.get()));
    SslPtr client = client_.NewSsl("api.example.com", version);
    ASSERT_TRUE(Handshake(client.get(), server.get()));
    EXPECT_FALSE(SSL_session_reused(client.get()));
    std::unique_ptr<SSL_SESSION, SessionFree> session(SSL_get1_session(client.get()));
    ASSERT_NE(session, nullptr);
    ASSERT_TRUE(SSL_SESSION_is_resumable(session.get()));

    SslPtr server2(server_->NewServerSsl(store.get()));
    SslPtr client2 = client_.NewSsl("api.example.com", version);
    SSL_set_session(client2.get(), session.get());
    ASSERT_TRUE(Handshake(client2.get(), server2.get()));
    EXPECT_TRUE(SSL_session_reused(client2.get()));
    EXPECT_EQ(PeerOf(client2.get()).cn, "exact");
  }
}

TEST(ServerTlsContextFilesTest, LoadsADefaultCertificateChainFromFilesAndRefusesBadOnes) {
  test_support::TempDir dir;
  const PemCertificate leaf = Generate(CertificateKeyType::kRsa2048, "files.test");
  const PemCertificate other = Generate(CertificateKeyType::kEcdsaP256, "other.test");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.File(name)) << text;
    return dir.File(name);
  };
  // A "chain": the leaf followed by another certificate (served as the chain).
  const std::string cert = write("cert.pem", leaf.cert + other.cert);
  const std::string key = write("key.pem", leaf.key);
  absl::StatusOr<std::unique_ptr<ServerTlsContext>> context = ServerTlsContext::Create(cert, key);
  ASSERT_TRUE(context.ok()) << context.status();
  EXPECT_FALSE((*context)->default_generated());
  EXPECT_EQ((*context)->default_subject(), "CN=files.test");

  absl::StatusOr<std::unique_ptr<ServerTlsContext>> mismatch =
      ServerTlsContext::Create(cert, write("other.key", other.key));
  ASSERT_FALSE(mismatch.ok());
  EXPECT_TRUE(absl::StrContains(mismatch.status().message(), "does not match")) << mismatch.status();
  EXPECT_FALSE(absl::StrContains(mismatch.status().message(), "BEGIN")) << mismatch.status();
  EXPECT_FALSE(ServerTlsContext::Create(dir.File("missing.pem"), key).ok());
  EXPECT_FALSE(ServerTlsContext::Create(write("garbage.pem", "garbage"), key).ok());
  EXPECT_FALSE(ServerTlsContext::Create(cert, "").ok());
}

}  // namespace
}  // namespace portico::dp
