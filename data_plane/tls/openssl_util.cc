#include "data_plane/tls/openssl_util.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"

namespace portico::dp {
namespace {

struct X509Free { void operator()(X509* p) const { X509_free(p); } };
struct KeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };

std::unique_ptr<BIO, BioFree> MemoryBio(absl::string_view text) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

}  // namespace

std::string OpenSslErrors(absl::string_view what) {
  std::string out(what);
  unsigned long error;
  while ((error = ERR_get_error()) != 0) {
    const char* reason = ERR_reason_error_string(error);
    absl::StrAppend(&out, ": ", reason != nullptr ? reason : "unknown error");
  }
  return out;
}

absl::Status UseCertificateAndKey(SSL_CTX* ctx, absl::string_view cert_pem, absl::string_view key_pem,
                                  absl::string_view what) {
  ERR_clear_error();
  std::unique_ptr<BIO, BioFree> cert_bio = MemoryBio(cert_pem);
  std::unique_ptr<X509, X509Free> leaf(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (leaf == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(what, ": the certificate is not a PEM X.509 certificate"));
  }
  if (SSL_CTX_use_certificate(ctx, leaf.get()) != 1) {
    return absl::InvalidArgumentError(OpenSslErrors(absl::StrCat(what, ": unusable certificate")));
  }
  // The rest of the PEM text is the chain, in order (for the certificate just installed).
  while (true) {
    X509* intermediate = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr);
    if (intermediate == nullptr) break;
    if (SSL_CTX_add0_chain_cert(ctx, intermediate) != 1) {
      X509_free(intermediate);
      return absl::InvalidArgumentError(OpenSslErrors(absl::StrCat(what, ": unusable chain certificate")));
    }
  }
  ERR_clear_error();  // the end of the PEM text
  std::unique_ptr<BIO, BioFree> key_bio = MemoryBio(key_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(what, ": the key is not an unencrypted PEM private key"));
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(what, ": the key does not match the certificate"));
  }
  return absl::OkStatus();
}

}  // namespace portico::dp
