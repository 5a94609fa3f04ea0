#pragma once
// Upstream TLS (services with protocol "https", and "grpcs" with ALPN h2): the client SSL_CTXs of one snapshot, compiled
// once off the worker threads (RuntimeConfig::Compile) and shared read-only by every worker.
//
// One context per distinct (verify, depth, CA set, client certificate): services with equal
// settings share it. Each context has a `key` derived from those settings alone (not from ids
// that change per snapshot), so pooled connections and cached sessions carry over to the next
// snapshot when the settings stay the same, and never to a service whose settings differ.
//
// Kong's rules (docs/tls.md "Upstream TLS"):
//  - tls_verify: the service's value; null takes the DP's default (--upstream-tls-verify, off as
//    Kong's proxy_ssl_verify). Verifying checks the chain against the service's ca_certificates,
//    or the system store when it lists none, and the name (NewSsl).
//  - tls_verify_depth: the service's value; null takes nginx's proxy_ssl_verify_depth default, 1.
//  - client certificate: the service's client_certificate, else that of the upstream its host
//    names.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/config_set.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_session_st SSL_SESSION;

namespace portico::dp {

struct UpstreamTlsOptions {
  bool verify_default = false;  // tls_verify null (--upstream-tls-verify)
};

// nginx's proxy_ssl_verify_depth default, which Kong keeps for a null tls_verify_depth.
inline constexpr int kDefaultUpstreamVerifyDepth = 1;

// Whoever owns a client SSL* made by NewSsl gets the sessions the server hands out (TLS 1.3
// tickets arrive after the handshake, while reading) to offer on a later connection.
class UpstreamTlsSessionSink {
 public:
  virtual ~UpstreamTlsSessionSink() = default;
  // Takes one reference to `session`.
  virtual void OnUpstreamTlsSession(SSL_SESSION* session) = 0;
};

class UpstreamTlsContext {
 public:
  ~UpstreamTlsContext();
  UpstreamTlsContext(const UpstreamTlsContext&) = delete;
  UpstreamTlsContext& operator=(const UpstreamTlsContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }
  bool verify() const { return verify_; }
  int verify_depth() const { return verify_depth_; }
  bool has_client_certificate() const { return has_client_certificate_; }
  // 16 hex digits naming the settings (a digest of them): equal settings, equal key.
  const std::string& key() const { return key_; }

  // A client SSL* for one connection: SNI `server_name` (none when empty or an IP literal, as
  // nginx), and when verifying, the name checked against the certificate (the host name, or the
  // IP literal). `sink` (may be null) receives new sessions; `session` (may be null) is offered
  // for resumption. Null when OpenSSL fails (out of memory).
  SSL* NewSsl(absl::string_view server_name, UpstreamTlsSessionSink* sink, SSL_SESSION* session) const;

 private:
  friend class UpstreamTlsContexts;
  UpstreamTlsContext() = default;
  SSL_CTX* ctx_ = nullptr;
  bool verify_ = false;
  int verify_depth_ = kDefaultUpstreamVerifyDepth;
  bool has_client_certificate_ = false;
  std::string key_;
};

class UpstreamTlsContexts {
 public:
  // Builds a context for every service with protocol "https" or "grpcs" (and the probe contexts of every
  // upstream with a client certificate). Fails (the snapshot is refused)
  // when a referenced certificate or CA certificate is missing or does not load; the message
  // names the entity, never key material.
  static absl::StatusOr<std::unique_ptr<const UpstreamTlsContexts>> Compile(const ConfigSet& config,
                                                                            const UpstreamTlsOptions& options);

  // The context of a service of the compiled config; nullptr when it is not https or grpcs.
  const UpstreamTlsContext* ForService(const std::string& service_id) const;
  // Client contexts for the active https probes of an upstream with a client_certificate (Kong's
  // health checker presents it): system CAs with verification, and without. Nulls otherwise.
  struct ProbeContexts {
    std::shared_ptr<SSL_CTX> verify;
    std::shared_ptr<SSL_CTX> no_verify;
  };
  ProbeContexts ForUpstreamProbes(const std::string& upstream_id) const;
  // Distinct contexts built.
  size_t size() const { return contexts_.size(); }

 private:
  std::vector<std::unique_ptr<UpstreamTlsContext>> contexts_;
  absl::flat_hash_map<std::string, const UpstreamTlsContext*> by_service_;
  absl::flat_hash_map<std::string, ProbeContexts> probes_;  // by upstream id
};

// Whether `host` is an IPv4 or IPv6 literal (brackets allowed): no SNI is sent for it.
bool IsIpLiteral(absl::string_view host);

}  // namespace portico::dp
