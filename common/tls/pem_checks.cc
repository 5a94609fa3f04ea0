#include "common/tls/pem_checks.h"

#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace portico {
namespace {

struct BioFree { void operator()(BIO* p) const { BIO_free(p); } };
struct X509Free { void operator()(X509* p) const { X509_free(p); } };
struct KeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

// The reason of the oldest queued OpenSSL error (the root cause), or `fallback`; clears the
// queue. Reason strings are fixed texts: they never carry the parsed bytes.
std::string TakeOpenSslReason(absl::string_view fallback) {
  const unsigned long first = ERR_get_error();
  ERR_clear_error();
  const char* reason = first != 0 ? ERR_reason_error_string(first) : nullptr;
  return reason != nullptr ? std::string(reason) : std::string(fallback);
}

BioPtr MemoryBio(absl::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

PemKeyType KeyTypeOf(const EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      return PemKeyType::kRsa;
    case EVP_PKEY_EC:
      return PemKeyType::kEc;
    default:
      return PemKeyType::kOther;
  }
}

std::string PublicKeyDer(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key, &der);
  if (length <= 0) return "";
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(length));
  OPENSSL_free(der);
  return out;
}

// Never prompts for a passphrase: an encrypted key fails to load.
int NoPassphrase(char*, int, int, void*) { return -1; }

// Successful parses, keyed by the SHA-256 of the PEM text. A data plane validates the same
// certificates at every snapshot, and OpenSSL 3.0's decoders cost ~0.2 ms per certificate and
// ~0.4 ms per key: a repeated parse costs one hash instead. Holds public facts and digests only
// (never key text). Bounded: emptied when full. Thread-safe.
template <typename Facts>
class FactsCache {
 public:
  static constexpr size_t kMaxEntries = 20000;

  static std::string KeyOf(absl::string_view pem) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(pem.data()), pem.size(), digest);
    return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
  }
  bool Find(const std::string& key, Facts* out) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    *out = it->second;
    return true;
  }
  void Add(const std::string& key, const Facts& facts) {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.size() >= kMaxEntries) entries_.clear();
    entries_.emplace(key, facts);
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, Facts> entries_;
};

FactsCache<PemCertificateFacts>& CertificateCache() {
  static auto* const cache = new FactsCache<PemCertificateFacts>();
  return *cache;
}
FactsCache<PemKeyFacts>& KeyCache() {
  static auto* const cache = new FactsCache<PemKeyFacts>();
  return *cache;
}

absl::StatusOr<PemCertificateFacts> ParseCertificate(absl::string_view pem);
absl::StatusOr<PemKeyFacts> ParsePrivateKey(absl::string_view pem);

}  // namespace

absl::StatusOr<PemCertificateFacts> InspectPemCertificate(absl::string_view pem) {
  const std::string key = FactsCache<PemCertificateFacts>::KeyOf(pem);
  PemCertificateFacts facts;
  if (CertificateCache().Find(key, &facts)) return facts;
  absl::StatusOr<PemCertificateFacts> parsed = ParseCertificate(pem);
  if (parsed.ok()) CertificateCache().Add(key, *parsed);
  return parsed;
}

absl::StatusOr<PemKeyFacts> InspectPemPrivateKey(absl::string_view pem) {
  const std::string key = FactsCache<PemKeyFacts>::KeyOf(pem);
  PemKeyFacts facts;
  if (KeyCache().Find(key, &facts)) return facts;
  absl::StatusOr<PemKeyFacts> parsed = ParsePrivateKey(pem);
  if (parsed.ok()) KeyCache().Add(key, *parsed);
  return parsed;
}

const char* PemKeyTypeName(PemKeyType type) {
  switch (type) {
    case PemKeyType::kRsa:
      return "RSA";
    case PemKeyType::kEc:
      return "EC";
    case PemKeyType::kOther:
      break;
  }
  return "other";
}

namespace {

absl::StatusOr<PemCertificateFacts> ParseCertificate(absl::string_view pem) {
  ERR_clear_error();
  BioPtr bio = MemoryBio(pem);
  if (!bio) return absl::ResourceExhaustedError("out of memory");
  PemCertificateFacts facts;
  X509Ptr leaf;
  while (true) {
    X509Ptr certificate(PEM_read_bio_X509(bio.get(), nullptr, &NoPassphrase, nullptr));
    if (!certificate) {
      const unsigned long error = ERR_peek_last_error();
      const bool end_of_text = ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
      if (facts.certificates > 0 && end_of_text) {
        ERR_clear_error();
        break;
      }
      return absl::InvalidArgumentError(TakeOpenSslReason("not a PEM certificate"));
    }
    ++facts.certificates;
    if (!leaf) leaf = std::move(certificate);
  }
  EVP_PKEY* public_key = X509_get0_pubkey(leaf.get());
  if (public_key == nullptr) return absl::InvalidArgumentError(TakeOpenSslReason("unreadable public key"));
  facts.key_type = KeyTypeOf(public_key);
  facts.public_key_der = PublicKeyDer(public_key);
  struct tm not_after {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf.get()), &not_after) != 1) {
    return absl::InvalidArgumentError(TakeOpenSslReason("unreadable notAfter time"));
  }
  facts.not_after = static_cast<int64_t>(timegm(&not_after));
  facts.is_ca = (X509_get_extension_flags(leaf.get()) & EXFLAG_CA) != 0;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_length = 0;
  if (X509_digest(leaf.get(), EVP_sha256(), digest, &digest_length) != 1) {
    return absl::InternalError(TakeOpenSslReason("cannot digest the certificate"));
  }
  facts.sha256_hex = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), digest_length));
  return facts;
}

absl::StatusOr<PemKeyFacts> ParsePrivateKey(absl::string_view pem) {
  ERR_clear_error();
  if (absl::StrContains(pem, "ENCRYPTED")) {
    return absl::InvalidArgumentError("encrypted private keys are not supported");
  }
  BioPtr bio = MemoryBio(pem);
  if (!bio) return absl::ResourceExhaustedError("out of memory");
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, &NoPassphrase, nullptr));
  if (!key) return absl::InvalidArgumentError(TakeOpenSslReason("not a PEM private key"));
  PemKeyFacts facts;
  facts.key_type = KeyTypeOf(key.get());
  facts.public_key_der = PublicKeyDer(key.get());
  if (facts.public_key_der.empty()) return absl::InvalidArgumentError(TakeOpenSslReason("unusable private key"));
  return facts;
}

}  // namespace

}  // namespace portico
