#pragma once
// An OpenSSL server context for the small HTTP server's TLS listener (the Admin API's
// --admin-ssl-listen): a certificate chain and key, TLS 1.2 and 1.3 only, and optionally client
// certificates required and verified against a CA bundle. The proxy's listeners build their own.
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tls/tls_files.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace portico {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const;
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// `identity`: cert_pem (leaf first, then any intermediates) and key_pem. With `client_ca_pem`
// non-empty every client must present a certificate that chains to one of its CAs
// (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT), and the CAs' names are sent in the
// CertificateRequest. InvalidArgument naming `client_ca_name` when the bundle has no certificate;
// never any key material in a message.
absl::StatusOr<SslCtxPtr> MakeServerTlsContext(const TlsMaterial& identity, absl::string_view client_ca_pem,
                                               absl::string_view client_ca_name);

}  // namespace portico
