#include "common/tls/server_tls_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"

namespace portico {
namespace {

struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct KeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

BioPtr MemoryBio(absl::string_view pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

std::string OpenSslReason() {
  const unsigned long e = ERR_peek_last_error();
  char buf[256] = {0};
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

// Session resumption with client certificates needs a session id context.
constexpr unsigned char kSessionIdContext[] = "portico-http";

}  // namespace

void SslCtxFree::operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }

absl::StatusOr<SslCtxPtr> MakeServerTlsContext(const TlsMaterial& identity, absl::string_view client_ca_pem,
                                               absl::string_view client_ca_name) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", OpenSslReason()));
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
    return absl::InternalError(absl::StrCat("TLS 1.2 floor: ", OpenSslReason()));
  }
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_id_context(ctx.get(), kSessionIdContext, sizeof(kSessionIdContext) - 1);

  BioPtr cert_bio = MemoryBio(identity.cert_pem);
  X509Ptr leaf(cert_bio ? PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!leaf || SSL_CTX_use_certificate(ctx.get(), leaf.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS certificate: ", OpenSslReason()));
  }
  while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx.get(), extra) != 1) {  // takes `extra` on success
      X509_free(extra);
      return absl::InvalidArgumentError(absl::StrCat("TLS certificate chain: ", OpenSslReason()));
    }
  }
  ERR_clear_error();  // the end of the PEM text

  BioPtr key_bio = MemoryBio(identity.key_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr)
                                                 : nullptr);
  if (!key || SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1 || SSL_CTX_check_private_key(ctx.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("TLS private key: not a PEM private key, or not the certificate's key");
  }

  if (!client_ca_pem.empty()) {
    BioPtr ca_bio = MemoryBio(client_ca_pem);
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    int count = 0;
    while (ca_bio) {
      X509Ptr ca(PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr));
      if (!ca) break;
      if (X509_STORE_add_cert(store, ca.get()) != 1 || SSL_CTX_add_client_CA(ctx.get(), ca.get()) != 1) {
        return absl::InvalidArgumentError(absl::StrCat(client_ca_name, ": ", OpenSslReason()));
      }
      ++count;
    }
    ERR_clear_error();
    if (count == 0) return absl::InvalidArgumentError(absl::StrCat(client_ca_name, ": no PEM certificate"));
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    SSL_CTX_set_verify_depth(ctx.get(), 4);
  }
  return ctx;
}

}  // namespace portico
