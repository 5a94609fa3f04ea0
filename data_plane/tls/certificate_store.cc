#include "data_plane/tls/certificate_store.h"

#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/sha256.h"
#include "data_plane/tls/openssl_util.h"
#include "data_plane/tls/server_context.h"

namespace portico::dp {

struct CertificateStore::LoadedContext {
  SslCtxPtr ctx;
  std::string digest;
  ~LoadedContext();
};

namespace {

// SHA-256 of a certificate's PEM texts (each length-prefixed): the key of the shared contexts.
std::string DigestOf(const config::v1::Certificate& certificate) {
  Sha256 sha;
  for (const std::string* text : {&certificate.cert(), &certificate.key(), &certificate.cert_alt(), &certificate.key_alt()}) {
    const uint64_t size = text->size();
    sha.Update(absl::string_view(reinterpret_cast<const char*>(&size), sizeof(size)));
    sha.Update(*text);
  }
  uint8_t digest[Sha256::kDigestBytes];
  sha.Final(digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// The contexts of every live store, by digest (entries leave with their last store). Used by
// Build only (the sync thread, and tests), never on the request path.
struct SharedContexts {
  std::mutex mu;
  absl::flat_hash_map<std::string, std::weak_ptr<const CertificateStore::LoadedContext>> by_digest;
};
SharedContexts& Shared() {
  static SharedContexts* shared = new SharedContexts();  // never destroyed: stores may outlive statics
  return *shared;
}

}  // namespace

CertificateStore::LoadedContext::~LoadedContext() {
  SharedContexts& shared = Shared();
  std::lock_guard<std::mutex> lock(shared.mu);
  auto it = shared.by_digest.find(digest);
  if (it != shared.by_digest.end() && it->second.expired()) shared.by_digest.erase(it);
}

absl::string_view NormalizeServerName(absl::string_view raw, char* buffer) {
  if (!raw.empty() && raw.back() == '.') raw.remove_suffix(1);
  if (raw.empty() || raw.size() > kMaxServerNameBytes) return {};
  for (size_t i = 0; i < raw.size(); ++i) buffer[i] = absl::ascii_tolower(static_cast<unsigned char>(raw[i]));
  return absl::string_view(buffer, raw.size());
}

absl::StatusOr<std::shared_ptr<const CertificateStore>> CertificateStore::Build(const ConfigSet& config) {
  std::shared_ptr<CertificateStore> store(new CertificateStore());
  // Only certificates some SNI serves get a context.
  absl::flat_hash_map<absl::string_view, const config::v1::Certificate*> certificates;
  for (const config::v1::Certificate& certificate : config.certificates) certificates[certificate.id()] = &certificate;
  absl::flat_hash_map<absl::string_view, SSL_CTX*> contexts;
  for (const config::v1::Sni& sni : config.snis) {
    const std::string& certificate_id = sni.certificate_id();
    auto found = certificates.find(certificate_id);
    if (found == certificates.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sni '", sni.name(), "': certificate ", certificate_id, " is not in the config"));
    }
    SSL_CTX*& context = contexts[certificate_id];
    if (context == nullptr) {
      const config::v1::Certificate& certificate = *found->second;
      std::string digest = DigestOf(certificate);
      std::shared_ptr<const LoadedContext> loaded;
      {
        SharedContexts& shared = Shared();
        std::lock_guard<std::mutex> lock(shared.mu);
        auto it = shared.by_digest.find(digest);
        if (it != shared.by_digest.end()) loaded = it->second.lock();
      }
      if (loaded == nullptr) {
        auto built = std::make_shared<LoadedContext>();
        built->digest = digest;
        built->ctx.reset(SSL_CTX_new(TLS_server_method()));
        if (built->ctx == nullptr) return absl::InternalError(OpenSslErrors("SSL_CTX_new"));
        if (absl::Status s = ConfigureServerContext(built->ctx.get()); !s.ok()) return s;
        const std::string what = absl::StrCat("certificate ", certificate.id());
        if (absl::Status s = UseCertificateAndKey(built->ctx.get(), certificate.cert(), certificate.key(), what);
            !s.ok()) {
          return s;
        }
        if (certificate.has_cert_alt() && !certificate.cert_alt().empty()) {
          if (absl::Status s = UseCertificateAndKey(built->ctx.get(), certificate.cert_alt(), certificate.key_alt(),
                                                    absl::StrCat(what, " (cert_alt)"));
              !s.ok()) {
            return s;
          }
        }
        ++store->loaded_count_;
        SharedContexts& shared = Shared();
        std::lock_guard<std::mutex> lock(shared.mu);
        shared.by_digest[digest] = built;
        loaded = std::move(built);
      }
      context = loaded->ctx.get();
      store->contexts_.push_back(std::move(loaded));
    }
    char buffer[kMaxServerNameBytes];
    const absl::string_view name = NormalizeServerName(sni.name(), buffer);
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("sni '", sni.name(), "': not a server name"));
    store->by_name_[name] = context;
    if (name == "*") store->catch_all_ = context;
  }
  return std::shared_ptr<const CertificateStore>(std::move(store));
}

std::shared_ptr<const CertificateStore> CertificateStore::Empty() {
  return std::shared_ptr<const CertificateStore>(new CertificateStore());
}

SSL_CTX* CertificateStore::Find(absl::string_view server_name) const {
  if (by_name_.empty() || server_name.empty()) return catch_all_;
  if (auto it = by_name_.find(server_name); it != by_name_.end()) return it->second;
  char candidate[kMaxServerNameBytes + 2];
  // "*." + everything after the leftmost label.
  if (const size_t dot = server_name.find('.'); dot != absl::string_view::npos && dot > 0) {
    const absl::string_view rest = server_name.substr(dot);  // ".example.com"
    candidate[0] = '*';
    std::memcpy(candidate + 1, rest.data(), rest.size());
    if (auto it = by_name_.find(absl::string_view(candidate, rest.size() + 1)); it != by_name_.end()) {
      return it->second;
    }
  }
  // Everything before the rightmost label + ".*".
  if (const size_t dot = server_name.rfind('.'); dot != absl::string_view::npos && dot + 1 < server_name.size()) {
    std::memcpy(candidate, server_name.data(), dot + 1);  // "api.example."
    candidate[dot + 1] = '*';
    if (auto it = by_name_.find(absl::string_view(candidate, dot + 2)); it != by_name_.end()) return it->second;
  }
  return catch_all_;
}

}  // namespace portico::dp
