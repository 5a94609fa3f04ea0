#pragma once
// The downstream TLS listener's OpenSSL setup (docs/tls.md, "Downstream TLS").
//
// One base SSL_CTX per process, shared by every worker (SSL_new on it is thread-safe): the
// default certificate, the session ticket keys and a client-hello callback. The callback reads
// the server_name extension and switches the connection to the snapshot's certificate for that
// name (CertificateStore::Find, then SSL_set_SSL_CTX); no SNI, or a name no certificate serves,
// keeps the default certificate. Every context (base and per certificate) gets the same
// settings from ConfigureServerContext: TLS 1.2 and 1.3 only, Mozilla's "intermediate" ciphers
// (as Kong), ALPN, and stateless session tickets (no server-side session cache).
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data_plane/tls/openssl_util.h"
#include "data_plane/tls/session_ticket_keys.h"

namespace portico::dp {

class CertificateStore;

// TLS 1.2 cipher list (Mozilla "intermediate", as Kong's ssl_cipher_suite default); TLS 1.3
// uses OpenSSL's default suites.
inline constexpr char kIntermediateCiphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
inline constexpr char kGroups[] = "X25519:P-256:P-384";

// The application protocol chosen in ALPN from the client's list `client_protocols` (wire
// format: length-prefixed names): the first of the protocols the proxy serves ("h2" only when
// `allow_h2`, then "http/1.1"), in the proxy's order of preference, that the client offers. Empty
// when none is offered: the handshake goes on without ALPN (with HTTP/2 off, a client offering
// only "h2" gets HTTP/1.1 without ALPN, never a failure). Points into `client_protocols`.
absl::string_view SelectAlpn(absl::string_view client_protocols, bool allow_h2 = false);

// Applies the shared settings above to `ctx` (a TLS_server_method context).
absl::Status ConfigureServerContext(SSL_CTX* ctx);

class ServerTlsContext {
 public:
  // The default certificate comes from `cert_file` + `key_file` (PEM; the certificate file may
  // hold a chain, leaf first), both or neither; with neither, a self-signed ECDSA P-256
  // certificate for CN=localhost is generated. Errors name the file, never the key.
  static absl::StatusOr<std::unique_ptr<ServerTlsContext>> Create(const std::string& cert_file,
                                                                  const std::string& key_file,
                                                                  int64_t ticket_rotation_seconds = 3600);

  // A server SSL for one accepted connection, in accept state. `store` (null: the default
  // certificate only) picks the certificate by SNI during the handshake and must outlive it.
  // nullptr when OpenSSL cannot allocate one.
  SSL* NewServerSsl(const CertificateStore* store) const;
  // The handshake is done: `ssl` forgets the store it was given (the connection may unpin it).
  static void ForgetStore(SSL* ssl);
  // Whether connections made from now on may choose HTTP/2 through ALPN (default: yes).
  void set_http2(bool enabled) { http2_ = enabled; }

  // The default certificate's subject (RFC 2253) and whether it was generated.
  const std::string& default_subject() const { return default_subject_; }
  bool default_generated() const { return default_generated_; }
  const SessionTicketKeys& ticket_keys() const { return *ticket_keys_; }

 private:
  ServerTlsContext() = default;
  SslCtxPtr base_;
  std::unique_ptr<SessionTicketKeys> ticket_keys_;
  std::string default_subject_;
  bool default_generated_ = false;
  bool http2_ = true;
};

// The server name the client sent (SNI), normalised (NormalizeServerName) into `buffer`
// (kMaxServerNameBytes); empty when none. For a connection whose handshake is done.
absl::string_view NegotiatedServerName(SSL* ssl, char* buffer);

}  // namespace portico::dp
