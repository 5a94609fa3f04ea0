#include "tests/common/test_certificates.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace portico::test_support {
namespace {

struct BioFree { void operator()(BIO* p) const { BIO_free(p); } };
struct X509Free { void operator()(X509* p) const { X509_free(p); } };
struct KeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct ExtFree { void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); } };

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "MakeTestCertificate: %s failed\n", what);
  std::abort();
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(length));
}

}  // namespace

TestCertificate MakeTestCertificate(const TestCertificateOptions& options) {
  std::unique_ptr<EVP_PKEY, KeyFree> key(options.key_type == PemKeyType::kRsa
                                              ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048))
                                              : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  Require(key != nullptr, "key generation");
  std::unique_ptr<X509, X509Free> cert(X509_new());
  Require(cert != nullptr && X509_set_version(cert.get(), 2) == 1, "X509_new");
  unsigned char serial[16];
  Require(RAND_bytes(serial, sizeof(serial)) == 1, "RAND_bytes");
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  Require(bn != nullptr && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr, "serial");
  BN_free(bn);
  const time_t now = std::time(nullptr);
  Require(ASN1_TIME_set(X509_getm_notBefore(cert.get()), now + options.not_before_offset) != nullptr, "notBefore");
  Require(ASN1_TIME_set(X509_getm_notAfter(cert.get()), now + options.not_after_offset) != nullptr, "notAfter");
  X509_NAME* name = X509_get_subject_name(cert.get());
  Require(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>(options.common_name.c_str()), -1, -1, 0) == 1,
          "subject");
  Require(X509_set_pubkey(cert.get(), key.get()) == 1, "pubkey");

  std::unique_ptr<X509, X509Free> issuer_cert;
  std::unique_ptr<EVP_PKEY, KeyFree> issuer_key;
  if (options.issuer != nullptr) {
    std::unique_ptr<BIO, BioFree> cert_bio(
        BIO_new_mem_buf(options.issuer->cert_pem.data(), static_cast<int>(options.issuer->cert_pem.size())));
    issuer_cert.reset(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    std::unique_ptr<BIO, BioFree> key_bio(
        BIO_new_mem_buf(options.issuer->key_pem.data(), static_cast<int>(options.issuer->key_pem.size())));
    issuer_key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    Require(issuer_cert != nullptr && issuer_key != nullptr, "reading the issuer");
    Require(X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer_cert.get())) == 1, "issuer name");
  } else {
    Require(X509_set_issuer_name(cert.get(), name) == 1, "issuer name");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_cert ? issuer_cert.get() : cert.get(), cert.get(), nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtFree> constraints(X509V3_EXT_conf_nid(
      nullptr, &ctx, NID_basic_constraints, options.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"));
  Require(constraints != nullptr && X509_add_ext(cert.get(), constraints.get(), -1) == 1, "basicConstraints");
  Require(X509_sign(cert.get(), issuer_key ? issuer_key.get() : key.get(), EVP_sha256()) > 0, "X509_sign");

  TestCertificate out;
  std::unique_ptr<BIO, BioFree> cert_out(BIO_new(BIO_s_mem()));
  Require(PEM_write_bio_X509(cert_out.get(), cert.get()) == 1, "PEM_write_bio_X509");
  out.cert_pem = BioText(cert_out.get());
  std::unique_ptr<BIO, BioFree> key_out(BIO_new(BIO_s_mem()));
  Require(PEM_write_bio_PrivateKey(key_out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1,
          "PEM_write_bio_PrivateKey");
  out.key_pem = BioText(key_out.get());
  return out;
}

}  // namespace portico::test_support
