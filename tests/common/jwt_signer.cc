#include "tests/common/jwt_signer.h"

#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace portico::test_support {
namespace {

const EVP_MD* Digest(absl::string_view alg) {
  if (absl::EndsWith(alg, "384")) return EVP_sha384();
  if (absl::EndsWith(alg, "512")) return EVP_sha512();
  return EVP_sha256();
}

std::string PublicPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(length));
  BIO_free(bio);
  return pem;
}

TestKeyPair Pair(EVP_PKEY* key) {
  if (key == nullptr) std::abort();
  return {std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free), PublicPem(key)};
}

}  // namespace

TestKeyPair NewRsaKeyPair(int bits) { return Pair(EVP_RSA_gen(static_cast<unsigned>(bits))); }
TestKeyPair NewEcKeyPair(const char* curve) { return Pair(EVP_EC_gen(curve)); }
TestKeyPair NewEdKeyPair(const char* type) { return Pair(EVP_PKEY_Q_keygen(nullptr, nullptr, type)); }

std::string Base64Url(absl::string_view bytes) { return absl::WebSafeBase64Escape(bytes); }

std::string SignJwt(absl::string_view alg, absl::string_view claims_json, absl::string_view secret, EVP_PKEY* key,
                    absl::string_view header_json) {
  const std::string header =
      header_json.empty() ? absl::StrCat(R"({"typ":"JWT","alg":")", alg, R"("})") : std::string(header_json);
  const std::string input = absl::StrCat(Base64Url(header), ".", Base64Url(claims_json));
  std::string signature;
  if (absl::StartsWith(alg, "HS")) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_length = 0;
    HMAC(Digest(alg), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_length);
    signature.assign(reinterpret_cast<const char*>(mac), mac_length);
  } else {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t length = 0;
    EVP_PKEY_CTX* key_ctx = nullptr;
    EVP_DigestSignInit(ctx, &key_ctx, alg == "EdDSA" ? nullptr : Digest(alg), nullptr, key);
    if (absl::StartsWith(alg, "PS")) {
      EVP_PKEY_CTX_set_rsa_padding(key_ctx, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(key_ctx, RSA_PSS_SALTLEN_DIGEST);
    }
    EVP_DigestSign(ctx, nullptr, &length, reinterpret_cast<const unsigned char*>(input.data()), input.size());
    std::vector<unsigned char> der(length);
    EVP_DigestSign(ctx, der.data(), &length, reinterpret_cast<const unsigned char*>(input.data()), input.size());
    EVP_MD_CTX_free(ctx);
    signature.assign(reinterpret_cast<const char*>(der.data()), length);
    if (absl::StartsWith(alg, "ES")) {
      // DER ECDSA-Sig-Value -> r || s, each the size of the curve's order.
      const size_t half = absl::EndsWith(alg, "256") ? 32 : absl::EndsWith(alg, "384") ? 48 : 66;
      const unsigned char* p = der.data();
      ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(length));
      std::string raw(2 * half, '\0');
      BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(half));
      BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(raw.data()) + half, static_cast<int>(half));
      ECDSA_SIG_free(sig);
      signature = raw;
    }
  }
  return absl::StrCat(input, ".", Base64Url(signature));
}

}  // namespace portico::test_support
