#include "common/config/jwt_algorithms.h"

#include <openssl/decoder.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace portico {
namespace {

constexpr JwtAlgorithm kAlgorithms[] = {
    {"HS256", JwtAlgorithmFamily::kHmac, 256},
    {"HS384", JwtAlgorithmFamily::kHmac, 384},
    {"HS512", JwtAlgorithmFamily::kHmac, 512},
    {"RS256", JwtAlgorithmFamily::kRsa, 256},
    {"RS384", JwtAlgorithmFamily::kRsa, 384},
    {"RS512", JwtAlgorithmFamily::kRsa, 512},
    {"ES256", JwtAlgorithmFamily::kEcdsa, 256, NID_X9_62_prime256v1, 32},
    {"ES384", JwtAlgorithmFamily::kEcdsa, 384, NID_secp384r1, 48},
    {"ES512", JwtAlgorithmFamily::kEcdsa, 512, NID_secp521r1, 66},
    {"PS256", JwtAlgorithmFamily::kRsaPss, 256},
    {"PS384", JwtAlgorithmFamily::kRsaPss, 384},
    {"PS512", JwtAlgorithmFamily::kRsaPss, 512},
    {"EdDSA", JwtAlgorithmFamily::kEdDsa, 0},
};

}  // namespace

absl::Span<const absl::string_view> KongJwtAlgorithms() {
  static constexpr absl::string_view kNames[] = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256",
                                                 "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"};
  return kNames;
}

const std::string& KongJwtAlgorithmList() {
  static const std::string* const list = new std::string(absl::StrJoin(KongJwtAlgorithms(), ", "));
  return *list;
}

bool IsKongJwtAlgorithm(absl::string_view name) {
  for (absl::string_view known : KongJwtAlgorithms()) {
    if (name == known) return true;
  }
  return false;
}

const JwtAlgorithm* FindJwtAlgorithm(absl::string_view name) {
  for (const JwtAlgorithm& a : kAlgorithms) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

void EvpPkeyDeleter::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

absl::StatusOr<EvpPkeyPtr> ParseJwtPublicKey(absl::string_view pem, const JwtAlgorithm& algorithm) {
  EVP_PKEY* parsed = nullptr;
  OSSL_DECODER_CTX* decoder = OSSL_DECODER_CTX_new_for_pkey(&parsed, "PEM", nullptr, nullptr, EVP_PKEY_PUBLIC_KEY,
                                                            nullptr, nullptr);
  if (decoder == nullptr) return absl::InternalError("no PEM decoder");
  const auto* data = reinterpret_cast<const unsigned char*>(pem.data());
  size_t length = pem.size();
  const bool ok = OSSL_DECODER_from_data(decoder, &data, &length) == 1;
  OSSL_DECODER_CTX_free(decoder);
  EvpPkeyPtr key(ok ? parsed : nullptr);
  if (!ok) EVP_PKEY_free(parsed);
  if (key == nullptr) return absl::InvalidArgumentError("invalid key");
  if (algorithm.family == JwtAlgorithmFamily::kEdDsa && !EVP_PKEY_is_a(key.get(), "ED25519") &&
      !EVP_PKEY_is_a(key.get(), "ED448")) {
    return absl::InvalidArgumentError("not an Ed25519 or Ed448 key, as algorithm EdDSA needs");
  }
  if ((algorithm.family == JwtAlgorithmFamily::kRsa || algorithm.family == JwtAlgorithmFamily::kRsaPss) &&
      !EVP_PKEY_is_a(key.get(), "RSA")) {
    return absl::InvalidArgumentError(absl::StrCat("not an RSA key, as algorithm ", algorithm.name, " needs"));
  }
  if (algorithm.family == JwtAlgorithmFamily::kEcdsa) {
    char group[64] = {0};
    size_t group_length = 0;
    const char* want = OBJ_nid2sn(algorithm.ec_nid);
    const bool is_ec = EVP_PKEY_is_a(key.get(), "EC") &&
                       EVP_PKEY_get_group_name(key.get(), group, sizeof(group), &group_length) == 1;
    if (!is_ec || std::strcmp(group, want) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("not an EC key on curve ", want, ", as algorithm ", algorithm.name, " needs"));
    }
  }
  return key;
}

}  // namespace portico
