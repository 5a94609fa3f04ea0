// OpenSSL's SHA-2 contexts on the stack (deprecated in 3.0, still the only allocation-free way to
// resume a prepared HMAC pad): see HmacKey.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "data_plane/plugins/jwt/jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config/jwt_algorithms.h"
#include "data_plane/plugins/auth_consumer.h"
#include "data_plane/plugins/jwt/jwt_token.h"
#include "data_plane/pipeline/query_arguments.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

using config::v1::Consumer;
using config::v1::JwtSecret;
using jwt::DecodedToken;
using jwt::JsonMember;
using jwt::TokenError;

// HMAC-SHA-256/384/512 (RFC 2104) with the key's inner and outer pads absorbed once; Mac() copies
// the prepared contexts (plain structs) and allocates nothing.
class HmacKey {
 public:
  void Init(int bits, absl::string_view key) {
    bits_ = bits;
    const size_t block = bits == 256 ? 64 : 128;
    unsigned char k[128] = {0};
    if (key.size() > block) {
      Digest(key, k);
    } else {
      std::memcpy(k, key.data(), key.size());
    }
    unsigned char ipad[128], opad[128];
    for (size_t i = 0; i < block; ++i) {
      ipad[i] = k[i] ^ 0x36;
      opad[i] = k[i] ^ 0x5c;
    }
    Start(&inner_.s256, &inner_.s512);
    Start(&outer_.s256, &outer_.s512);
    Update(&inner_.s256, &inner_.s512, ipad, block);
    Update(&outer_.s256, &outer_.s512, opad, block);
    OPENSSL_cleanse(k, sizeof(k));
  }

  // The MAC of `data` into `out` (64 bytes); returns its length.
  size_t Mac(absl::string_view data, unsigned char* out) const {
    Pad c = inner_;
    unsigned char inner[64];
    Update(&c.s256, &c.s512, reinterpret_cast<const unsigned char*>(data.data()), data.size());
    Final(&c.s256, &c.s512, inner);
    c = outer_;
    Update(&c.s256, &c.s512, inner, static_cast<size_t>(bits_ / 8));
    Final(&c.s256, &c.s512, out);
    return static_cast<size_t>(bits_ / 8);
  }

 private:
  void Start(SHA256_CTX* c256, SHA512_CTX* c512) const {
    if (bits_ == 256) SHA256_Init(c256);
    if (bits_ == 384) SHA384_Init(c512);
    if (bits_ == 512) SHA512_Init(c512);
  }
  void Update(SHA256_CTX* c256, SHA512_CTX* c512, const unsigned char* data, size_t size) const {
    if (bits_ == 256) {
      SHA256_Update(c256, data, size);
    } else {
      SHA512_Update(c512, data, size);  // also SHA-384's
    }
  }
  void Final(SHA256_CTX* c256, SHA512_CTX* c512, unsigned char* out) const {
    if (bits_ == 256) SHA256_Final(out, c256);
    if (bits_ == 384) SHA384_Final(out, c512);
    if (bits_ == 512) SHA512_Final(out, c512);
  }
  void Digest(absl::string_view data, unsigned char* out) const {
    SHA256_CTX c256;
    SHA512_CTX c512;
    Start(&c256, &c512);
    Update(&c256, &c512, reinterpret_cast<const unsigned char*>(data.data()), data.size());
    Final(&c256, &c512, out);
  }

  union Pad {  // SHA-256's context, or SHA-384/512's
    SHA256_CTX s256;
    SHA512_CTX s512;
  };
  int bits_ = 256;
  Pad inner_{}, outer_{};
};

// One jwt credential as the plugin verifies with it.
struct Credential {
  const JwtSecret* entity = nullptr;
  const Consumer* consumer = nullptr;
  const JwtAlgorithm* algorithm = nullptr;
  const EVP_MD* digest = nullptr;  // RS/ES: fetched once
  EvpPkeyPtr public_key;           // RS/ES
  HmacKey hmac;                    // HS: the secret (base64-decoded with secret_is_base64)
  bool secret_ok = true;           // HS: false when secret_is_base64 and it is not base64
};

// The snapshot's credentials by key, shared by its jwt plugin instances with the same
// secret_is_base64.
struct CredentialTable {
  absl::flat_hash_map<absl::string_view, Credential> by_key;  // keys are snapshot strings
  std::vector<std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)>> digests;
};

const EVP_MD* FetchDigest(CredentialTable* table, int bits) {
  const char* name = bits == 256 ? "SHA256" : bits == 384 ? "SHA384" : "SHA512";
  for (const auto& md : table->digests) {
    if (EVP_MD_is_a(md.get(), name)) return md.get();
  }
  table->digests.emplace_back(EVP_MD_fetch(nullptr, name, nullptr), &EVP_MD_free);
  return table->digests.back().get();
}

absl::StatusOr<std::shared_ptr<const CredentialTable>> BuildTable(const ConfigSet& snapshot, bool secret_is_base64) {
  auto table = std::make_shared<CredentialTable>();
  absl::flat_hash_map<absl::string_view, const Consumer*> consumers;
  for (const Consumer& c : snapshot.consumers) consumers.emplace(c.id(), &c);
  for (const JwtSecret& j : snapshot.jwt_secrets) {
    const std::string context = absl::StrCat("jwt credential ", j.id(), ": ");
    auto consumer = consumers.find(j.consumer_id());
    if (consumer == consumers.end()) continue;  // the validator refuses such a snapshot
    Credential c;
    c.entity = &j;
    c.consumer = consumer->second;
    c.algorithm = FindJwtAlgorithm(j.algorithm());
    if (c.algorithm == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(context, "algorithm: '", j.algorithm(), "' is not supported"));
    }
    if (c.algorithm->family == JwtAlgorithmFamily::kHmac) {
      if (secret_is_base64) {
        std::string decoded;
        c.secret_ok = jwt::DecodeBase64(j.secret(), &decoded);
        if (c.secret_ok) c.hmac.Init(c.algorithm->digest_bits, decoded);
        OPENSSL_cleanse(decoded.data(), decoded.size());
      } else {
        c.hmac.Init(c.algorithm->digest_bits, j.secret());
      }
    } else {
      absl::StatusOr<EvpPkeyPtr> key = ParseJwtPublicKey(j.rsa_public_key(), *c.algorithm);
      if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat(context, "rsa_public_key: ", key.status().message()));
      c.public_key = *std::move(key);
      if (c.algorithm->family != JwtAlgorithmFamily::kEdDsa) {  // EdDSA: no separate digest
        c.digest = FetchDigest(table.get(), c.algorithm->digest_bits);
        if (c.digest == nullptr) return absl::InternalError(absl::StrCat(context, "no digest for ", j.algorithm()));
      }
    }
    table->by_key.emplace(j.key(), std::move(c));
  }
  return std::shared_ptr<const CredentialTable>(std::move(table));
}

// The table of `snapshot`, built by the first jwt instance compiled from it and shared by the
// others (compile time only; the snapshot outlives every handler, so a live entry is never stale).
absl::StatusOr<std::shared_ptr<const CredentialTable>> SharedTable(const ConfigSet& snapshot, bool secret_is_base64) {
  struct Entry {
    const ConfigSet* snapshot = nullptr;
    std::weak_ptr<const CredentialTable> table;
  };
  static std::mutex mu;
  static Entry* const cache = new Entry[2];  // by secret_is_base64
  std::lock_guard<std::mutex> lock(mu);
  Entry& entry = cache[secret_is_base64 ? 1 : 0];
  if (entry.snapshot == &snapshot) {
    if (std::shared_ptr<const CredentialTable> table = entry.table.lock()) return table;
  }
  absl::StatusOr<std::shared_ptr<const CredentialTable>> built = BuildTable(snapshot, secret_is_base64);
  if (built.ok()) entry = {&snapshot, *built};
  return built;
}

// The largest DER ECDSA-Sig-Value EcdsaDer writes (P-521: two 67-byte INTEGERs, long-form length).
constexpr size_t kMaxEcdsaDer = 2 * (66 + 3) + 3;

// JWS ECDSA r || s -> DER ECDSA-Sig-Value on the stack; returns its length, 0 when `raw` does not
// have the curve's size (`half` <= 66).
size_t EcdsaDer(absl::string_view raw, size_t half, unsigned char* der) {
  if (raw.size() != 2 * half || half > 66) return 0;
  unsigned char body[2 * (66 + 3)];
  size_t n = 0;
  for (int part = 0; part < 2; ++part) {
    const auto* p = reinterpret_cast<const unsigned char*>(raw.data()) + part * half;
    size_t len = half;
    while (len > 1 && *p == 0) {
      ++p;
      --len;
    }
    const bool pad = (*p & 0x80) != 0;
    body[n++] = 0x02;
    body[n++] = static_cast<unsigned char>(len + (pad ? 1 : 0));
    if (pad) body[n++] = 0;
    std::memcpy(body + n, p, len);
    n += len;
  }
  der[0] = 0x30;
  size_t header = 2;
  if (n < 0x80) {
    der[1] = static_cast<unsigned char>(n);
  } else {  // P-521: DER's long form, one length byte
    der[1] = 0x81;
    der[2] = static_cast<unsigned char>(n);
    header = 3;
  }
  std::memcpy(der + header, body, n);
  return n + header;
}

bool VerifySignature(const Credential& c, const DecodedToken& token) {
  if (c.algorithm->family == JwtAlgorithmFamily::kHmac) {
    unsigned char mac[64];
    const size_t length = c.hmac.Mac(token.signing_input, mac);
    return token.signature.size() == length && CRYPTO_memcmp(mac, token.signature.data(), length) == 0;
  }
  absl::string_view signature = token.signature;
  unsigned char der[kMaxEcdsaDer];
  if (c.algorithm->family == JwtAlgorithmFamily::kEcdsa) {
    const size_t length = EcdsaDer(signature, static_cast<size_t>(c.algorithm->ec_bytes), der);
    if (length == 0) return false;
    signature = absl::string_view(reinterpret_cast<const char*>(der), length);
  }
  // OpenSSL allocates its contexts here: the RS/ES path is not allocation-free.
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* key_ctx = nullptr;
  // PS*: RSASSA-PSS with MGF1 of the same hash and a salt as long as the hash (RFC 7518 §3.5).
  const bool pss = c.algorithm->family == JwtAlgorithmFamily::kRsaPss;
  const bool ok = ctx != nullptr &&
                  EVP_DigestVerifyInit(ctx, &key_ctx, c.digest, nullptr, c.public_key.get()) == 1 &&
                  (!pss || (EVP_PKEY_CTX_set_rsa_padding(key_ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                            EVP_PKEY_CTX_set_rsa_pss_saltlen(key_ctx, RSA_PSS_SALTLEN_DIGEST) == 1)) &&
                  EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                                   reinterpret_cast<const unsigned char*>(token.signing_input.data()),
                                   token.signing_input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// Per worker thread, reused (capacity kept): the decoded token and what the search needs.
struct Scratch {
  std::string token;    // a query argument's decoded value
  std::string other;    // another candidate, to compare
  std::string decoded;  // the token's decoded segments
  std::string key;      // the key claim unescaped
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

enum class Claim { kExp, kNbf };

class Jwt final : public PluginHandler {
 public:
  StepStatus Access(RequestContext& request) const override {
    const MessageHead& head = *request.head;
    if (!run_on_preflight_ && head.method == "OPTIONS") return StepStatus::kContinue;
    // Kong's logical OR: with `anonymous`, a request another auth plugin identified passes.
    if (anonymous_.configured() && request.consumer != nullptr && !request.credential_id.empty()) {
      return StepStatus::kContinue;
    }
    Scratch& scratch = ThreadScratch();
    int found = 0;  // distinct tokens, up to 2
    absl::string_view token;
    auto offer = [&](absl::string_view candidate) {
      if (candidate.empty() || found == 2) return;
      if (found == 0) {
        token = candidate;
        found = 1;
      } else if (candidate != token) {
        found = 2;
      }
    };
    if (request.target.has_query) {
      for (const std::string& name : uri_param_names_) {
        ForEachQueryArgument(request.target.query, [&](absl::string_view n, absl::string_view raw, absl::string_view) {
          if (n != name || raw.empty() || found == 2) return;
          std::string& into = found == 0 ? scratch.token : scratch.other;
          DecodeQueryValue(raw, &into);
          offer(into);
        });
      }
    }
    for (const std::string& name : cookie_names_) offer(head.FindCookie(name));
    for (const std::string& name : header_names_) {
      for (const auto& [n, value] : head.headers) {
        if (!absl::EqualsIgnoreCase(n, name)) continue;
        offer(jwt::BearerToken(value));
        break;  // the first value of a repeated header, as Kong's
      }
    }
    if (found == 0) return Fail(request, "Unauthorized", www_authenticate_);
    if (found == 2) return Fail(request, "Multiple tokens provided", www_authenticate_error_);

    DecodedToken decoded;
    const TokenError error = jwt::DecodeToken(token, key_claim_name_, &scratch.decoded, &decoded);
    if (error != TokenError::kNone) {
      request.response_text.assign("Bad token; ");
      request.response_text.append(jwt::TokenErrorText(error).data(), jwt::TokenErrorText(error).size());
      return Fail(request, request.response_text, www_authenticate_error_);
    }
    const JsonMember& key_member = decoded.claims_key.type != JsonMember::kMissing ? decoded.claims_key : decoded.header_key;
    if (key_member.type == JsonMember::kMissing) return Fail(request, no_mandatory_claim_, www_authenticate_error_);
    const absl::string_view key =
        key_member.type == JsonMember::kString ? jwt::JsonStringValue(key_member, &scratch.key) : absl::string_view();
    if (key_member.type == JsonMember::kString && key.empty()) {
      return Fail(request, invalid_claim_, www_authenticate_error_);
    }
    auto it = key_member.type == JsonMember::kString ? table_->by_key.find(key) : table_->by_key.end();
    if (it == table_->by_key.end()) return Fail(request, no_credentials_, www_authenticate_error_);
    const Credential& credential = it->second;
    if (!jwt::JsonStringEquals(decoded.alg, credential.algorithm->name)) {
      return Fail(request, "Invalid algorithm", www_authenticate_error_);
    }
    if (!credential.secret_ok) return Fail(request, "Invalid key/secret", www_authenticate_error_);
    if (!VerifySignature(credential, decoded)) {
      return Fail(request, "Invalid signature", www_authenticate_error_);
    }
    if (!CheckClaims(request, decoded)) return FailWithBody(request);
    SetAuthenticatedConsumer(request, *credential.consumer, credential.entity->id(), credential.entity->key());
    return StepStatus::kContinue;
  }

  std::vector<std::string> uri_param_names_, cookie_names_, header_names_;
  std::string key_claim_name_;
  bool secret_is_base64_ = false;  // applied to HMAC secrets when the table is built
  bool run_on_preflight_ = true;
  std::vector<Claim> claims_to_verify_;
  double maximum_expiration_ = 0;
  std::string www_authenticate_, www_authenticate_error_;
  std::string no_mandatory_claim_, invalid_claim_, no_credentials_;
  AnonymousConsumer anonymous_;
  std::shared_ptr<const CredentialTable> table_;

 private:
  // Kong's verify_registered_claims and check_maximum_expiration; the errors, as Kong's JSON
  // object, go to request.response_text.
  bool CheckClaims(RequestContext& request, const DecodedToken& token) const {
    std::string& body = request.response_text;
    body.clear();
    const double now = static_cast<double>(std::time(nullptr));
    auto add = [&body](absl::string_view claim, absl::string_view message) {
      body.append(body.empty() ? "{\"" : ",\"");
      body.append(claim.data(), claim.size());
      body.append("\":\"");
      body.append(message.data(), message.size());
      body.append("\"");
    };
    for (Claim claim : claims_to_verify_) {
      const JsonMember& value = claim == Claim::kExp ? token.exp : token.nbf;
      const absl::string_view name = claim == Claim::kExp ? "exp" : "nbf";
      if (value.type != JsonMember::kNumber) {
        add(name, "must be a number");
      } else if (claim == Claim::kExp && value.number <= now) {
        add(name, "token expired");
      } else if (claim == Claim::kNbf && value.number > now) {
        add(name, "token not valid yet");
      }
    }
    if (body.empty() && maximum_expiration_ > 0 &&
        (token.exp.type != JsonMember::kNumber || token.exp.number - now > maximum_expiration_)) {
      add("exp", "exceeds maximum allowed expiration");
    }
    if (body.empty()) return true;
    body.append("}");
    return false;
  }

  StepStatus Fail(RequestContext& request, absl::string_view message, absl::string_view challenge) const {
    return anonymous_.Fail(request, 401, message, challenge);
  }

  // 401 with the claim errors in request.response_text as the body.
  StepStatus FailWithBody(RequestContext& request) const {
    LocalResponse response;
    if (!anonymous_.configured()) {
      response.status = 401;
      response.body = request.response_text;
      response.headers.emplace_back("WWW-Authenticate", www_authenticate_error_);
    }
    return anonymous_.Fail(request, response);
  }
};

std::vector<std::string> Strings(const nlohmann::json& array) {
  std::vector<std::string> out;
  for (const nlohmann::json& v : array) out.push_back(v.get<std::string>());
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileJwt(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  auto handler = std::make_unique<Jwt>();
  handler->uri_param_names_ = Strings(config["uri_param_names"]);
  handler->cookie_names_ = Strings(config["cookie_names"]);
  handler->header_names_ = Strings(config["header_names"]);
  handler->key_claim_name_ = config["key_claim_name"].get<std::string>();
  handler->secret_is_base64_ = config["secret_is_base64"].get<bool>();
  handler->run_on_preflight_ = config["run_on_preflight"].get<bool>();
  if (config["claims_to_verify"].is_array()) {
    for (const std::string& claim : Strings(config["claims_to_verify"])) {
      const Claim c = claim == "exp" ? Claim::kExp : Claim::kNbf;
      if (std::find(handler->claims_to_verify_.begin(), handler->claims_to_verify_.end(), c) ==
          handler->claims_to_verify_.end()) {
        handler->claims_to_verify_.push_back(c);
      }
    }
  }
  handler->maximum_expiration_ = config["maximum_expiration"].get<double>();
  handler->www_authenticate_ =
      config["realm"].is_string() ? absl::StrCat("Bearer realm=\"", config["realm"].get<std::string>(), "\"") : "Bearer";
  handler->www_authenticate_error_ = absl::StrCat(handler->www_authenticate_, " error=\"invalid_token\"");
  const std::string& claim = handler->key_claim_name_;
  handler->no_mandatory_claim_ = absl::StrCat("No mandatory '", claim, "' in claims");
  handler->invalid_claim_ = absl::StrCat("Invalid '", claim, "' in claims");
  handler->no_credentials_ = absl::StrCat("No credentials found for given '", claim, "'");
  handler->anonymous_ = AnonymousConsumer(config["anonymous"], context.snapshot);
  absl::StatusOr<std::shared_ptr<const CredentialTable>> table = SharedTable(context.snapshot, handler->secret_is_base64_);
  if (!table.ok()) return table.status();
  handler->table_ = *std::move(table);
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
