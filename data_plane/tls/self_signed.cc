#include "data_plane/tls/self_signed.h"

#include <memory>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data_plane/tls/openssl_util.h"

namespace portico::dp {
namespace {

struct X509Free { void operator()(X509* p) const { X509_free(p); } };
struct KeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct BnFree { void operator()(BIGNUM* p) const { BN_free(p); } };
struct ExtFree { void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); } };

absl::StatusOr<std::string> ToPem(bool is_key, X509* cert, EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  const int ok = is_key ? PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)
                        : PEM_write_bio_X509(bio.get(), cert);
  if (bio == nullptr || ok != 1) return absl::InternalError(OpenSslErrors("writing PEM"));
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(length));
}

bool AddExtension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, cert, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtFree> extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str()));
  return extension != nullptr && X509_add_ext(cert, extension.get(), -1) == 1;
}

}  // namespace

absl::StatusOr<PemCertificate> GenerateSelfSignedCertificate(CertificateKeyType key_type,
                                                             absl::string_view common_name,
                                                             const std::vector<std::string>& dns_names, int days) {
  std::unique_ptr<EVP_PKEY, KeyFree> key(key_type == CertificateKeyType::kEcdsaP256
                                             ? EVP_EC_gen("P-256")
                                             : EVP_RSA_gen(2048));
  if (key == nullptr) return absl::InternalError(OpenSslErrors("generating a key"));
  std::unique_ptr<X509, X509Free> cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return absl::InternalError(OpenSslErrors("X509_new"));
  }
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) return absl::InternalError(OpenSslErrors("RAND_bytes"));
  serial_bytes[0] &= 0x7F;  // positive
  std::unique_ptr<BIGNUM, BnFree> serial(BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr));
  if (serial == nullptr || BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return absl::InternalError(OpenSslErrors("serial"));
  }
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 24 * 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string cn(common_name);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                                 -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1 || X509_set_pubkey(cert.get(), key.get()) != 1) {
    return absl::InternalError(OpenSslErrors("certificate subject"));
  }
  std::vector<std::string> sans;
  for (const std::string& dns : dns_names.empty() ? std::vector<std::string>{cn} : dns_names) {
    sans.push_back(absl::StrCat("DNS:", dns));
  }
  if (!AddExtension(cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExtension(cert.get(), NID_subject_alt_name, absl::StrJoin(sans, ",")) ||
      !AddExtension(cert.get(), NID_ext_key_usage, "serverAuth")) {
    return absl::InternalError(OpenSslErrors("certificate extensions"));
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) return absl::InternalError(OpenSslErrors("X509_sign"));
  PemCertificate out;
  absl::StatusOr<std::string> cert_pem = ToPem(false, cert.get(), nullptr);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ToPem(true, nullptr, key.get());
  if (!key_pem.ok()) return key_pem.status();
  out.cert = *std::move(cert_pem);
  out.key = *std::move(key_pem);
  return out;
}

}  // namespace portico::dp
