#pragma once
// Small OpenSSL helpers of data_plane/tls: owning pointers, the error queue as text, and loading
// a certificate (with its chain) and its key into an SSL_CTX from PEM text.
#include <memory>
#include <string>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace portico::dp {

struct BioFree { void operator()(BIO* p) const { BIO_free(p); } };
struct SslCtxFree { void operator()(SSL_CTX* p) const { SSL_CTX_free(p); } };
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// `what`, then OpenSSL's queued errors (reason strings only: never key material); clears the queue.
std::string OpenSslErrors(absl::string_view what);

// Installs the PEM certificate `cert_pem` (leaf first, then its chain) and the PEM private key
// `key_pem` on `ctx`, and checks that the key belongs to the certificate. Called once per key
// type: a second call with the other type (RSA vs ECDSA) adds it beside the first, and OpenSSL
// serves whichever the client supports. Errors name `what` (e.g. "certificate 3f2a...") and never
// quote the key.
absl::Status UseCertificateAndKey(SSL_CTX* ctx, absl::string_view cert_pem, absl::string_view key_pem,
                                  absl::string_view what);

}  // namespace portico::dp
