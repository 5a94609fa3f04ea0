#include "common/net/tls_transport.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace portico {
namespace {

// Small writes are gathered into one record this size at most (TLS's maximum plaintext).
constexpr size_t kRecordBytes = 16 * 1024;
// Parts at least this large are encrypted in place instead of being gathered.
constexpr size_t kGatherLimit = 4 * 1024;

// The gather buffer for small parts: one per thread (each loop runs on one thread, and a Write
// finishes before the next starts).
thread_local char gather_buffer[kRecordBytes];

// OpenSSL's reasons for the last failure, drained from the thread's error queue (so the next
// SSL call starts with an empty queue, as SSL_get_error requires).
std::string DrainOpenSslErrors() {
  std::string reasons;
  while (const unsigned long code = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(code);
    if (!reasons.empty()) reasons += "; ";
    if (reason != nullptr) {
      reasons += reason;
    } else {
      char text[256];
      ERR_error_string_n(code, text, sizeof(text));
      reasons += text;
    }
  }
  return reasons;
}

}  // namespace

// The BIO OpenSSL reads ciphertext from and writes records to: reads come from the view the
// TCP transport delivered (no copy before OpenSSL's own record buffer), writes go straight to
// TcpTransport::Write.
struct TlsTransport::Bio {
  static TlsTransport* Self(BIO* bio) { return static_cast<TlsTransport*>(BIO_get_data(bio)); }

  static int Write(BIO* bio, const char* data, int size) {
    BIO_clear_retry_flags(bio);
    TlsTransport* self = Self(bio);
    if (size <= 0) return 0;
    if (self->write_failed_ || !self->inner_->Write(absl::string_view(data, static_cast<size_t>(size)))) {
      self->write_failed_ = true;
      return -1;
    }
    return size;
  }

  static int Read(BIO* bio, char* out, int size) {
    BIO_clear_retry_flags(bio);
    TlsTransport* self = Self(bio);
    if (size <= 0) return 0;
    const size_t n = std::min(static_cast<size_t>(size), self->cipher_in_.size());
    if (n == 0) {
      BIO_set_retry_read(bio);
      return -1;
    }
    std::memcpy(out, self->cipher_in_.data(), n);
    self->cipher_in_.remove_prefix(n);
    return static_cast<int>(n);
  }

  static long Ctrl(BIO* bio, int command, long, void*) {
    switch (command) {
      case BIO_CTRL_FLUSH:
        return 1;
      case BIO_CTRL_PENDING:
        return static_cast<long>(Self(bio)->cipher_in_.size());
      case BIO_CTRL_WPENDING:
        return 0;
      default:
        return 0;
    }
  }

  static int Create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
  }
  static int Destroy(BIO*) { return 1; }

  static const BIO_METHOD* Method() {
    static const BIO_METHOD* method = [] {
      BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portico-tcp");
      BIO_meth_set_write(m, Write);
      BIO_meth_set_read(m, Read);
      BIO_meth_set_ctrl(m, Ctrl);
      BIO_meth_set_create(m, Create);
      BIO_meth_set_destroy(m, Destroy);
      return m;
    }();
    return method;
  }
};

struct TlsTransport::Uv {
  static void Resume(uv_timer_t* timer) { static_cast<TlsTransport*>(timer->data)->OnResume(); }
  static void FreeTimer(uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); }
};

TlsTransport::TlsTransport(TcpTransport* inner, SSL* ssl, Role role, char* plain_buffer,
                           size_t plain_buffer_size, TransportCallbacks* callbacks)
    : inner_(inner),
      ssl_(ssl),
      role_(role),
      plain_buffer_(plain_buffer),
      plain_buffer_size_(plain_buffer_size),
      callbacks_(callbacks) {
  assert(plain_buffer_size_ >= kRecordBytes);
  inner_->set_callbacks(this);
  BIO* bio = BIO_new(Bio::Method());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one reference, owned by the SSL from here on
  if (role_ == Role::kServer) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
}

TlsTransport::~TlsTransport() {
  if (resume_timer_ != nullptr && uv_is_closing(reinterpret_cast<uv_handle_t*>(resume_timer_.get()))) {
    resume_timer_.release();  // freed by its close callback
  }
  assert(resume_timer_ == nullptr);  // the owner closes the transport before freeing it
  // A connection closed without close_notify would make OpenSSL mark its session as not
  // resumable; a healthy one stays resumable (the upstream pool offers it to the next connection).
  if (handshake_done_ && !failed_) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(ssl_);
}

int TlsTransport::Connect(const sockaddr* address) {
  assert(role_ == Role::kClient);
  return inner_->Connect(address);
}

void TlsTransport::StartReading() {
  if (owner_reading_ || closing() || failed_) return;
  owner_reading_ = true;
  if (handshake_done_ && (!cipher_stash_.empty() || SSL_pending(ssl_) > 0)) {
    ScheduleResume();  // delivered from the loop, never from inside this call
    return;            // the socket is read again once the stash is delivered
  }
  UpdateInnerReading();
}

void TlsTransport::StopReading() {
  if (!owner_reading_) return;
  owner_reading_ = false;
  UpdateInnerReading();
}

void TlsTransport::UpdateInnerReading() {
  const bool handshaking = role_ == Role::kClient && connecting_ && !handshake_done_;
  const bool want = !failed_ && !eof_seen_ && (handshaking || (owner_reading_ && cipher_stash_.empty()));
  if (want) {
    inner_->StartReading();
  } else {
    inner_->StopReading();
  }
}

bool TlsTransport::Write(const absl::string_view* parts, size_t count) {
  if (closing() || failed_ || write_failed_) return false;
  if (!handshake_done_) {
    for (size_t i = 0; i < count; ++i) early_writes_.append(parts[i].data(), parts[i].size());
    return true;
  }
  return EncryptAndSend(parts, count);
}

bool TlsTransport::EncryptAndSend(const absl::string_view* parts, size_t count) {
  size_t gathered = 0;
  auto flush_gathered = [&]() -> bool {
    const bool ok = WriteAll(absl::string_view(gather_buffer, gathered));
    gathered = 0;
    return ok;
  };
  for (size_t i = 0; i < count; ++i) {
    absl::string_view part = parts[i];
    if (part.empty()) continue;
    if (part.size() >= kGatherLimit) {
      if (!flush_gathered() || !WriteAll(part)) {
        write_failed_ = true;
        error_ = DrainOpenSslErrors();
        return false;
      }
      continue;
    }
    if (gathered + part.size() > kRecordBytes && !flush_gathered()) {
      write_failed_ = true;
      error_ = DrainOpenSslErrors();
      return false;
    }
    std::memcpy(gather_buffer + gathered, part.data(), part.size());
    gathered += part.size();
  }
  if (!flush_gathered()) {
    write_failed_ = true;
    error_ = DrainOpenSslErrors();
    return false;
  }
  return true;
}

bool TlsTransport::WriteAll(absl::string_view data) {
  // SSL_write_ex completes in one call unless the context enables partial writes; loop anyway,
  // so a context configured that way can never lose the tail of a write.
  while (!data.empty()) {
    size_t written = 0;
    if (SSL_write_ex(ssl_, data.data(), data.size(), &written) != 1 || written == 0) return false;
    data.remove_prefix(written);
  }
  return true;
}

size_t TlsTransport::pending_write_bytes() const {
  return inner_->pending_write_bytes() + early_writes_.size();
}

bool TlsTransport::Shutdown() {
  if (closing() || failed_) return false;
  if (handshake_done_ && !write_failed_) {
    SSL_shutdown(ssl_);  // queues close_notify through the BIO; the peer's is not awaited
    ERR_clear_error();
  }
  return inner_->Shutdown();
}

void TlsTransport::Close() {
  if (resume_timer_ != nullptr) {
    uv_timer_t* timer = resume_timer_.release();
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(timer))) {
      uv_close(reinterpret_cast<uv_handle_t*>(timer), Uv::FreeTimer);
    }
  }
  inner_->Close();
}

bool TlsTransport::PeerSilent() {
  // Inside Pump (an owner reusing this connection from its own read callback), cipher_in_ may
  // still hold records not decrypted yet: never silent then.
  if (closing() || failed_ || eof_seen_ || !handshake_done_ || in_pump_) return false;
  if (SSL_pending(ssl_) > 0) return false;
  // Records that arrived while nobody read (TLS 1.3 session tickets after the handshake, a key
  // update) are consumed here; application data, an alert or the end of the stream is not silence.
  char byte;
  for (;;) {
    std::string stash = std::move(cipher_stash_);
    cipher_stash_.clear();
    if (stash.empty()) {
      const ssize_t n = inner_->TryRead(plain_buffer_, plain_buffer_size_);
      if (n == 0) return true;
      if (n < 0) return false;
      stash.assign(plain_buffer_, static_cast<size_t>(n));
    }
    cipher_in_ = stash;
    size_t peeked = 0;
    const int rc = SSL_peek_ex(ssl_, &byte, 1, &peeked);
    const int error = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
    cipher_stash_.assign(cipher_in_.data(), cipher_in_.size());
    cipher_in_ = absl::string_view();
    if (error != SSL_ERROR_WANT_READ) {
      ERR_clear_error();
      return false;
    }
  }
}

void TlsTransport::OnTransportConnected(int status) {
  if (status < 0) {
    callbacks_->OnTransportConnected(status);
    return;
  }
  connecting_ = true;
  UpdateInnerReading();
  Pump(absl::string_view());  // writes the ClientHello
}

void TlsTransport::OnTransportRead(absl::string_view data) {
  if (failed_) return;
  Pump(data);
}

void TlsTransport::OnTransportEof() {
  eof_seen_ = true;
  if (failed_) return;
  if (!handshake_done_) {
    error_ = "the peer closed the connection during the TLS handshake";
    if (role_ == Role::kClient) {
      failed_ = true;
      callbacks_->OnTransportConnected(UV_ECONNRESET);
      return;
    }
  }
  callbacks_->OnTransportEof();
}

void TlsTransport::OnTransportReadError(int status) {
  if (failed_) return;
  if (role_ == Role::kClient && !handshake_done_) {
    failed_ = true;
    callbacks_->OnTransportConnected(status);
    return;
  }
  callbacks_->OnTransportReadError(status);
}

void TlsTransport::OnTransportWritten(size_t bytes, int status) {
  // Handshake records are the transport's own business.
  if (!handshake_done_ && status >= 0) return;
  callbacks_->OnTransportWritten(bytes, status);
}

void TlsTransport::OnTransportShutdown(int status) { callbacks_->OnTransportShutdown(status); }

void TlsTransport::OnTransportClosed() {
  callbacks_->OnTransportClosed();  // may free this transport
}

void TlsTransport::Fail(int status, const char* what) {
  failed_ = true;
  std::string reasons = DrainOpenSslErrors();
  if (role_ == Role::kClient && !handshake_done_) {
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      absl::StrAppend(&reasons, reasons.empty() ? "" : ": ", X509_verify_cert_error_string(verify));
    }
  }
  error_ = reasons.empty() ? std::string(what) : absl::StrCat(what, ": ", reasons);
  inner_->StopReading();
  if (role_ == Role::kClient && !handshake_done_) {
    callbacks_->OnTransportConnected(status);
  } else {
    callbacks_->OnTransportReadError(status);
  }
}

bool TlsTransport::ContinueHandshake() {
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    FinishHandshake();
    return !failed_ && !closing();
  }
  const int error = SSL_get_error(ssl_, rc);
  if (error == SSL_ERROR_WANT_READ && !write_failed_) return true;
  Fail(kTlsError, write_failed_ ? "TLS handshake: write failed" : "TLS handshake failed");
  return false;
}

void TlsTransport::FinishHandshake() {
  handshake_done_ = true;
  const bool was_connecting = connecting_;
  connecting_ = false;
  if (!early_writes_.empty()) {
    std::string early = std::move(early_writes_);
    early_writes_.clear();
    absl::string_view part(early);
    if (!EncryptAndSend(&part, 1)) {
      Fail(kTlsError, "TLS write failed");
      return;
    }
  }
  UpdateInnerReading();
  if (role_ == Role::kClient && was_connecting) callbacks_->OnTransportConnected(0);
}

bool TlsTransport::has_buffered_input() const {
  return !cipher_in_.empty() || !cipher_stash_.empty() || SSL_has_pending(ssl_) == 1;
}

bool TlsTransport::Pump(absl::string_view data) {
  in_pump_ = true;
  struct PumpExit {
    bool* flag;
    ~PumpExit() { *flag = false; }
  } pump_exit{&in_pump_};
  cipher_in_ = data;
  if (!handshake_done_) {
    if (!ContinueHandshake() || !handshake_done_) {
      cipher_in_ = absl::string_view();
      return !failed_;
    }
  }
  // Application data: decrypt everything OpenSSL can complete from this read, delivered in one
  // call when it fits the plaintext buffer.
  while (!failed_ && !closing()) {
    if (!owner_reading_) {
      // The owner stopped reading (possibly inside the callback below): keep the rest for later.
      if (!cipher_in_.empty()) cipher_stash_.append(cipher_in_.data(), cipher_in_.size());
      cipher_in_ = absl::string_view();
      UpdateInnerReading();
      return true;
    }
    size_t filled = 0;
    int error = SSL_ERROR_NONE;
    while (filled < plain_buffer_size_) {
      size_t n = 0;
      const int rc = SSL_read_ex(ssl_, plain_buffer_ + filled, plain_buffer_size_ - filled, &n);
      if (rc == 1) {
        filled += n;
        continue;
      }
      error = SSL_get_error(ssl_, rc);
      break;
    }
    if (filled > 0) {
      callbacks_->OnTransportRead(absl::string_view(plain_buffer_, filled));
      if (closing() || failed_) break;
    }
    if (error == SSL_ERROR_NONE) continue;  // the buffer filled up: more may be waiting
    if (error == SSL_ERROR_WANT_READ && !write_failed_) break;
    if (error == SSL_ERROR_ZERO_RETURN) {  // close_notify: the end of the peer's stream
      eof_seen_ = true;
      UpdateInnerReading();
      cipher_in_ = absl::string_view();
      callbacks_->OnTransportEof();
      return true;
    }
    cipher_in_ = absl::string_view();
    Fail(kTlsError, write_failed_ ? "TLS write failed" : "TLS record error");
    return false;
  }
  cipher_in_ = absl::string_view();
  return !failed_;
}

void TlsTransport::ScheduleResume() {
  if (resume_timer_ == nullptr) {
    resume_timer_ = std::make_unique<uv_timer_t>();
    uv_timer_init(inner_->loop(), resume_timer_.get());
    resume_timer_->data = this;
  }
  uv_timer_start(resume_timer_.get(), Uv::Resume, 0, 0);
}

void TlsTransport::OnResume() {
  if (closing() || failed_ || !owner_reading_) return;
  std::string stash = std::move(cipher_stash_);
  cipher_stash_.clear();
  Pump(stash);
  if (!closing() && !failed_) UpdateInnerReading();
}

}  // namespace portico
