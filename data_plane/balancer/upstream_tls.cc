#include "data_plane/balancer/upstream_tls.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/sha256.h"
#include "data_plane/tls/openssl_util.h"

namespace portico::dp {
namespace {

// The ex_data slot of a client SSL* holding its UpstreamTlsSessionSink.
int SinkIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// OpenSSL's new-session callback: hands the session to the connection's sink (which keeps the
// reference: return 1), or lets OpenSSL drop it.
int OnNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* sink = static_cast<UpstreamTlsSessionSink*>(SSL_get_ex_data(ssl, SinkIndex()));
  if (sink == nullptr) return 0;
  sink->OnUpstreamTlsSession(session);
  return 1;
}

std::string Sha256Hex(absl::string_view data) {
  Sha256 hash;
  hash.Update(data);
  uint8_t digest[Sha256::kDigestBytes];
  hash.Final(digest);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

using BioPtr = std::unique_ptr<BIO, BioFree>;
BioPtr MemoryBio(const std::string& pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

// Adds every certificate of `pem` to `store`; the count added (0: none parsed).
int AddCertificates(X509_STORE* store, const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, cert) == 1) ++added;
    X509_free(cert);
  }
  ERR_clear_error();  // the end of the PEM reads as an error
  return added;
}

// What makes two services' contexts the same.
struct Settings {
  bool verify = false;
  int depth = kDefaultUpstreamVerifyDepth;
  std::vector<std::string> ca_ids;  // sorted
  const config::v1::Certificate* client_certificate = nullptr;
};

}  // namespace

bool IsIpLiteral(absl::string_view host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char buffer[64];
  if (host.empty() || host.size() >= sizeof(buffer)) return false;
  std::copy(host.begin(), host.end(), buffer);
  buffer[host.size()] = '\0';
  unsigned char address[sizeof(in6_addr)];
  return inet_pton(AF_INET, buffer, address) == 1 || inet_pton(AF_INET6, buffer, address) == 1;
}

UpstreamTlsContext::~UpstreamTlsContext() { SSL_CTX_free(ctx_); }

SSL* UpstreamTlsContext::NewSsl(absl::string_view server_name, UpstreamTlsSessionSink* sink,
                                SSL_SESSION* session) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  if (server_name.size() > 2 && server_name.front() == '[' && server_name.back() == ']') {
    server_name = server_name.substr(1, server_name.size() - 2);
  }
  const std::string name(server_name);  // once per new connection
  const bool ip = IsIpLiteral(name);
  bool ok = true;
  if (!name.empty() && !ip) ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
  if (ok && verify_ && !name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) == 1 : SSL_set1_host(ssl, name.c_str()) == 1;
  }
  if (ok && sink != nullptr) ok = SSL_set_ex_data(ssl, SinkIndex(), sink) == 1;
  if (ok && session != nullptr) SSL_set_session(ssl, session);  // a refusal just means a full handshake
  if (!ok) {
    ERR_clear_error();
    SSL_free(ssl);
    return nullptr;
  }
  return ssl;
}

absl::StatusOr<std::unique_ptr<const UpstreamTlsContexts>> UpstreamTlsContexts::Compile(
    const ConfigSet& config, const UpstreamTlsOptions& options) {
  auto out = std::make_unique<UpstreamTlsContexts>();
  absl::flat_hash_map<std::string, const config::v1::Certificate*> certificates;
  absl::flat_hash_map<std::string, const config::v1::CaCertificate*> ca_certificates;
  absl::flat_hash_map<std::string, const config::v1::Upstream*> upstreams;  // by name
  bool any_tls = false;
  for (const config::v1::Service& s : config.services) {
    // grpcs and wss: TLS like https.
    any_tls = any_tls || s.protocol() == "https" || s.protocol() == "grpcs" || s.protocol() == "wss";
  }
  for (const config::v1::Upstream& u : config.upstreams) any_tls = any_tls || u.has_client_certificate_id();
  if (!any_tls) return std::unique_ptr<const UpstreamTlsContexts>(std::move(out));
  for (const auto& c : config.certificates) certificates.emplace(c.id(), &c);
  for (const auto& c : config.ca_certificates) ca_certificates.emplace(c.id(), &c);
  for (const auto& u : config.upstreams) upstreams.emplace(u.name(), &u);

  for (const config::v1::Upstream& u : config.upstreams) {
    if (!u.has_client_certificate_id()) continue;
    auto it = certificates.find(u.client_certificate_id());
    if (it == certificates.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("upstream ", u.id(), ": client_certificate ", u.client_certificate_id(), " does not exist"));
    }
    const config::v1::Certificate& c = *it->second;
    const std::string what = absl::StrCat("upstream ", u.id(), ": client_certificate ", c.id());
    ProbeContexts probe;
    for (const bool verify : {true, false}) {
      std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
      if (ctx == nullptr) {
        ERR_clear_error();
        return absl::ResourceExhaustedError("upstream TLS: cannot create an SSL context");
      }
      SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
      if (verify) {
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
        if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) ERR_clear_error();
      }
      if (absl::Status s = UseCertificateAndKey(ctx.get(), c.cert(), c.key(), what); !s.ok()) return s;
      (verify ? probe.verify : probe.no_verify) = std::move(ctx);
    }
    out->probes_.emplace(u.id(), std::move(probe));
  }

  absl::flat_hash_map<std::string, UpstreamTlsContext*> by_key;
  for (const config::v1::Service& service : config.services) {
    if (service.protocol() != "https" && service.protocol() != "grpcs" && service.protocol() != "wss") continue;
    Settings settings;
    settings.verify = service.has_tls_verify() ? service.tls_verify() : options.verify_default;
    if (service.has_tls_verify_depth()) settings.depth = service.tls_verify_depth();
    if (service.has_ca_certificates()) {
      settings.ca_ids.assign(service.ca_certificates().values().begin(), service.ca_certificates().values().end());
      std::sort(settings.ca_ids.begin(), settings.ca_ids.end());
      settings.ca_ids.erase(std::unique(settings.ca_ids.begin(), settings.ca_ids.end()), settings.ca_ids.end());
    }
    std::string client_certificate_id;
    if (service.has_client_certificate_id()) {
      client_certificate_id = service.client_certificate_id();
    } else if (auto u = upstreams.find(service.host()); u != upstreams.end() && u->second->has_client_certificate_id()) {
      client_certificate_id = u->second->client_certificate_id();
    }
    if (!client_certificate_id.empty()) {
      auto it = certificates.find(client_certificate_id);
      if (it == certificates.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("service ", service.id(), ": client_certificate ", client_certificate_id, " does not exist"));
      }
      settings.client_certificate = it->second;
    }

    // The key: the settings themselves (CA and certificate contents, not just ids, so an edited
    // certificate never reuses a connection made with the old one). No key material goes in.
    std::string identity = absl::StrCat("verify=", settings.verify, ";depth=", settings.depth, ";ca=");
    for (const std::string& id : settings.ca_ids) {
      auto it = ca_certificates.find(id);
      if (it == ca_certificates.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("service ", service.id(), ": ca_certificates: ", id, " does not exist"));
      }
      absl::StrAppend(&identity, Sha256Hex(it->second->cert()), ",");
    }
    if (settings.client_certificate != nullptr) {
      const config::v1::Certificate& c = *settings.client_certificate;
      absl::StrAppend(&identity, ";client=", c.id(), ":", Sha256Hex(c.cert()), ":",
                      Sha256Hex(c.has_cert_alt() ? c.cert_alt() : std::string()));
    }
    const std::string key = Sha256Hex(identity).substr(0, 16);
    if (auto it = by_key.find(key); it != by_key.end()) {
      out->by_service_.emplace(service.id(), it->second);
      continue;
    }

    std::unique_ptr<UpstreamTlsContext> context(new UpstreamTlsContext());
    context->verify_ = settings.verify;
    context->verify_depth_ = settings.depth;
    context->key_ = key;
    context->ctx_ = SSL_CTX_new(TLS_client_method());
    if (context->ctx_ == nullptr) {
      ERR_clear_error();
      return absl::ResourceExhaustedError("upstream TLS: cannot create an SSL context");
    }
    SSL_CTX* ctx = context->ctx_;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // No SSL_MODE_ENABLE_PARTIAL_WRITE: TlsTransport hands every record to TCP at once, so a
    // write always completes (and it loops over partial writes anyway).
    // Sessions go to the connection (its worker keeps the last one per pool key), never to an
    // internal cache shared across threads.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, OnNewSession);
    if (settings.verify) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      SSL_CTX_set_verify_depth(ctx, settings.depth);
      if (settings.ca_ids.empty()) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) ERR_clear_error();  // an empty system store verifies nothing
      } else {
        X509_STORE* store = SSL_CTX_get_cert_store(ctx);
        for (const std::string& id : settings.ca_ids) {
          if (AddCertificates(store, ca_certificates.at(id)->cert()) == 0) {
            return absl::InvalidArgumentError(
                absl::StrCat("service ", service.id(), ": ca_certificates: ", id, ": the certificate does not parse"));
          }
        }
      }
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    if (settings.client_certificate != nullptr) {
      const config::v1::Certificate& c = *settings.client_certificate;
      const std::string what = absl::StrCat("service ", service.id(), ": client_certificate ", c.id());
      if (absl::Status s = UseCertificateAndKey(ctx, c.cert(), c.key(), what); !s.ok()) return s;
      if (c.has_cert_alt() && c.has_key_alt() && !c.cert_alt().empty()) {
        if (absl::Status s = UseCertificateAndKey(ctx, c.cert_alt(), c.key_alt(), what); !s.ok()) return s;
      }
      context->has_client_certificate_ = true;
    }
    by_key.emplace(key, context.get());
    out->by_service_.emplace(service.id(), context.get());
    out->contexts_.push_back(std::move(context));
  }
  return std::unique_ptr<const UpstreamTlsContexts>(std::move(out));
}

UpstreamTlsContexts::ProbeContexts UpstreamTlsContexts::ForUpstreamProbes(const std::string& upstream_id) const {
  auto it = probes_.find(upstream_id);
  return it != probes_.end() ? it->second : ProbeContexts{};
}

const UpstreamTlsContext* UpstreamTlsContexts::ForService(const std::string& service_id) const {
  auto it = by_service_.find(service_id);
  return it != by_service_.end() ? it->second : nullptr;
}

}  // namespace portico::dp
