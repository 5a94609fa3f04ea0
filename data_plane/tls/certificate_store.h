#pragma once
// The certificates of one config snapshot, compiled for the downstream TLS listener: one SSL_CTX
// per certificate served by some SNI (its cert and key, plus cert_alt/key_alt on the same
// context so that OpenSSL serves RSA or ECDSA by the client's capability) and an index from
// server names to those contexts. A context is shared with the stores of other snapshots while
// its certificate's PEM texts are unchanged (looked up by their SHA-256), so a snapshot that
// changes one certificate, or none, loads only that one. Built once per snapshot off the worker threads
// (RuntimeConfig::Compile), immutable, shared read-only by every worker; a connection pins the
// store it was accepted with until its handshake is done (the SSL keeps the chosen SSL_CTX).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/config_set.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace portico::dp {

// Longest DNS name (RFC 1035); longer server names match nothing.
inline constexpr size_t kMaxServerNameBytes = 253;

// A server name as the index compares it: ASCII-lowercased, without a trailing dot, written into
// `buffer` (at least kMaxServerNameBytes bytes). Empty when `raw` is empty or too long.
absl::string_view NormalizeServerName(absl::string_view raw, char* buffer);

class CertificateStore {
 public:
  // Compiles config.certificates and config.snis. Fails (and the snapshot is refused) when a
  // certificate or key does not load, a key does not match, or an SNI names a certificate the
  // snapshot lacks. Errors name the certificate id, never key material.
  static absl::StatusOr<std::shared_ptr<const CertificateStore>> Build(const ConfigSet& config);
  // An empty store: every name gets the default certificate.
  static std::shared_ptr<const CertificateStore> Empty();

  // The context for `server_name` (normalised, see NormalizeServerName; empty when the client
  // sent none), in Kong's order: the exact name, then the name with its leftmost label replaced
  // by "*" ("*.example.com" for "api.example.com"), then with its rightmost label replaced by "*"
  // ("api.example.*"), then the SNI "*" (Kong's catch-all, also for clients without SNI).
  // nullptr: no certificate for it (the listener's default certificate is served). Thread-safe;
  // allocates nothing.
  SSL_CTX* Find(absl::string_view server_name) const;

  size_t context_count() const { return contexts_.size(); }
  size_t name_count() const { return by_name_.size(); }
  // Contexts this store loaded itself (the others came from a live store of another snapshot).
  size_t loaded_count() const { return loaded_count_; }

  // One loaded context, shared by the stores that serve the same PEM texts.
  struct LoadedContext;

 private:
  CertificateStore() = default;
  std::vector<std::shared_ptr<const LoadedContext>> contexts_;
  size_t loaded_count_ = 0;
  // Names as configured (lowercase): "api.example.com", "*.example.com", "example.*".
  absl::flat_hash_map<std::string, SSL_CTX*> by_name_;
  SSL_CTX* catch_all_ = nullptr;  // the SNI "*", if any
};

}  // namespace portico::dp
