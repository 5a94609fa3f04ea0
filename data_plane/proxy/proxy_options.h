#pragma once
// The proxy's settings (the DP's flags), given to ProxyServer::Start and read by its workers.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data_plane/dns/resolver.h"

namespace portico::dp {

// The TLS listener (docs/tls.md, "Downstream TLS"): --proxy-ssl-listen, --ssl-cert, --ssl-cert-key.
struct TlsListenerOptions {
  bool enabled = false;           // portico-dp turns it on unless --proxy-ssl-listen is "off"
  std::string host = "0.0.0.0";   // IPv4 or IPv6 literal
  uint16_t port = 8443;           // 0 = ephemeral (all workers share the one chosen)
  // The default certificate (no SNI, or a name no certificate serves): PEM files, the
  // certificate possibly followed by its chain. Both empty: a generated self-signed ECDSA P-256
  // certificate for CN=localhost.
  std::string cert_file;
  std::string key_file;
  int64_t ticket_rotation_seconds = 3600;  // session ticket keys (the previous one still accepted)
};

struct ProxyOptions {
  std::string host = "0.0.0.0";        // IPv4 or IPv6 literal to listen on
  uint16_t port = 8000;                // 0 = ephemeral (all workers share the one chosen)
  int workers = 1;                     // worker threads, each with its own loop and listener
  // False: the listeners are bound at start (a taken address still fails Start) but accept only
  // after ProxyServer::StartAccepting(), so that a DP joining a port another DP serves
  // (SO_REUSEPORT) takes no connection before it has a config.
  bool accept_at_start = true;
  size_t max_header_bytes = 64 * 1024; // request (and upstream response) head limit
  bool allow_debug_header = false;     // honour `Kong-Debug: 1` (Kong-Route-Id, ... in responses)
  // HTTP/2 on the proxy listeners: h2c (prior knowledge, Upgrade: h2c) on the cleartext one, ALPN
  // "h2" on the TLS one (docs/protocols.md).
  bool http2 = true;
  // Client timeout (nginx's keepalive/client_header/send timeouts in one): an idle keep-alive
  // connection, a request head that does not complete, and a response the client stops reading
  // (no write progress) are closed after this long.
  int64_t client_timeout_ms = 60 * 1000;
  // DNS (data_plane/dns): each worker's resolver, and the health checker's (--dns-hostsfile,
  // --dns-resolver).
  ResolverOptions dns;
  TlsListenerOptions tls;
};

}  // namespace portico::dp
