#include "data_plane/tls/server_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/tls1.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "data_plane/tls/certificate_store.h"
#include "data_plane/tls/self_signed.h"

namespace portico::dp {
namespace {

// The application protocols the proxy serves, in its order of preference ("h2" only on a
// listener with HTTP/2 on; the connection dispatches on SSL_get0_alpn_selected).
constexpr absl::string_view kServedProtocols[] = {"h2", "http/1.1"};

// Same for every context, so that a session made with one certificate's context is accepted by
// another's (SSL_set_SSL_CTX copies it).
constexpr unsigned char kSessionIdContext[] = "portico-proxy";

// SSL ex_data slots: the certificate store a connection was accepted with, and the ticket keys.
int StoreIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}
int TicketKeysIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}
// Non-null on a connection that may choose "h2".
int Http2Index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int SelectAlpnCallback(SSL* ssl, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                       unsigned int in_length, void*) {
  const absl::string_view chosen = SelectAlpn(absl::string_view(reinterpret_cast<const char*>(in), in_length),
                                              SSL_get_ex_data(ssl, Http2Index()) != nullptr);
  if (chosen.empty()) return SSL_TLSEXT_ERR_NOACK;
  *out = reinterpret_cast<const unsigned char*>(chosen.data());
  *out_length = static_cast<unsigned char>(chosen.size());
  return SSL_TLSEXT_ERR_OK;
}

// The host_name of a server_name extension body (RFC 6066 §3), or empty.
absl::string_view HostNameOf(const unsigned char* data, size_t size) {
  if (size < 2) return {};
  size_t list_length = (size_t{data[0]} << 8) | data[1];
  if (list_length + 2 != size) return {};
  size_t at = 2;
  while (at + 3 <= size) {
    const unsigned char type = data[at];
    const size_t length = (size_t{data[at + 1]} << 8) | data[at + 2];
    at += 3;
    if (at + length > size) return {};
    if (type == TLSEXT_NAMETYPE_host_name) return absl::string_view(reinterpret_cast<const char*>(data + at), length);
    at += length;
  }
  return {};
}

int ClientHelloCallback(SSL* ssl, int*, void*) {
  const auto* store = static_cast<const CertificateStore*>(SSL_get_ex_data(ssl, StoreIndex()));
  if (store == nullptr) return SSL_CLIENT_HELLO_SUCCESS;
  const unsigned char* extension = nullptr;
  size_t extension_size = 0;
  char buffer[kMaxServerNameBytes];
  absl::string_view name;  // empty without SNI: the "*" certificate if any, else the default one
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &extension, &extension_size) == 1) {
    name = NormalizeServerName(HostNameOf(extension, extension_size), buffer);
  }
  if (SSL_CTX* chosen = store->Find(name); chosen != nullptr) SSL_set_SSL_CTX(ssl, chosen);
  return SSL_CLIENT_HELLO_SUCCESS;
}

int TicketKeyCallback(SSL* ssl, unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                      EVP_MAC_CTX* mac, int encrypt) {
  const auto* keys = static_cast<const SessionTicketKeys*>(SSL_get_ex_data(ssl, TicketKeysIndex()));
  if (keys == nullptr) return encrypt ? -1 : 0;
  return keys->OnTicket(key_name, iv, cipher, mac, encrypt);
}

std::string SubjectOf(SSL_CTX* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (cert == nullptr) return "";
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(length));
}

}  // namespace

absl::string_view SelectAlpn(absl::string_view client_protocols, bool allow_h2) {
  for (absl::string_view served : kServedProtocols) {
    if (served == "h2" && !allow_h2) continue;
    size_t at = 0;
    while (at < client_protocols.size()) {
      const size_t length = static_cast<unsigned char>(client_protocols[at]);
      if (length == 0 || at + 1 + length > client_protocols.size()) break;  // malformed: stop
      const absl::string_view offered = client_protocols.substr(at + 1, length);
      if (offered == served) return offered;
      at += 1 + length;
    }
  }
  return {};
}

absl::Status ConfigureServerContext(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kIntermediateCiphers) != 1 || SSL_CTX_set1_groups_list(ctx, kGroups) != 1 ||
      SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof(kSessionIdContext) - 1) != 1) {
    return absl::InternalError(OpenSslErrors("configuring a TLS server context"));
  }
  SSL_CTX_set_dh_auto(ctx, 1);  // ffdhe groups for the DHE suites
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Stateless tickets only: no session cache (and none of its locking) shared by the workers.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_timeout(ctx, 3600);
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpnCallback, nullptr);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ServerTlsContext>> ServerTlsContext::Create(const std::string& cert_file,
                                                                          const std::string& key_file,
                                                                          int64_t ticket_rotation_seconds) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("--ssl-cert and --ssl-cert-key must be given together");
  }
  std::unique_ptr<ServerTlsContext> context(new ServerTlsContext());
  context->base_.reset(SSL_CTX_new(TLS_server_method()));
  if (context->base_ == nullptr) return absl::InternalError(OpenSslErrors("SSL_CTX_new"));
  SSL_CTX* base = context->base_.get();
  if (absl::Status s = ConfigureServerContext(base); !s.ok()) return s;
  if (cert_file.empty()) {
    absl::StatusOr<PemCertificate> generated =
        GenerateSelfSignedCertificate(CertificateKeyType::kEcdsaP256, "localhost");
    if (!generated.ok()) return generated.status();
    if (absl::Status s = UseCertificateAndKey(base, generated->cert, generated->key, "generated default certificate");
        !s.ok()) {
      return s;
    }
    context->default_generated_ = true;
  } else {
    absl::StatusOr<std::string> cert = ReadFileToString(cert_file);
    if (!cert.ok()) return absl::InvalidArgumentError(absl::StrCat("--ssl-cert: ", cert.status().message()));
    absl::StatusOr<std::string> key = ReadFileToString(key_file);
    if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat("--ssl-cert-key: ", key.status().message()));
    if (absl::Status s = UseCertificateAndKey(base, *cert, *key, absl::StrCat("--ssl-cert ", cert_file)); !s.ok()) {
      return s;
    }
  }
  context->default_subject_ = SubjectOf(base);
  context->ticket_keys_ = std::make_unique<SessionTicketKeys>(ticket_rotation_seconds);
  // Ticket sealing runs on the session context, which stays the base one after SSL_set_SSL_CTX.
  if (SSL_CTX_set_tlsext_ticket_key_evp_cb(base, TicketKeyCallback) != 1) {
    return absl::InternalError(OpenSslErrors("SSL_CTX_set_tlsext_ticket_key_evp_cb"));
  }
  SSL_CTX_set_client_hello_cb(base, ClientHelloCallback, nullptr);
  return context;
}

SSL* ServerTlsContext::NewServerSsl(const CertificateStore* store) const {
  SSL* ssl = SSL_new(base_.get());
  if (ssl == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_ex_data(ssl, StoreIndex(), const_cast<CertificateStore*>(store));
  SSL_set_ex_data(ssl, TicketKeysIndex(), const_cast<SessionTicketKeys*>(ticket_keys_.get()));
  static int http2_marker = 1;
  SSL_set_ex_data(ssl, Http2Index(), http2_ ? &http2_marker : nullptr);
  SSL_set_accept_state(ssl);
  return ssl;
}

void ServerTlsContext::ForgetStore(SSL* ssl) { SSL_set_ex_data(ssl, StoreIndex(), nullptr); }

absl::string_view NegotiatedServerName(SSL* ssl, char* buffer) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return {};
  return NormalizeServerName(name, buffer);
}

}  // namespace portico::dp
