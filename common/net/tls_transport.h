#pragma once
// TLS over a TcpTransport: the Transport the HTTP connections use when the peer speaks TLS, on
// the client side (downstream listener) and the upstream side alike. OpenSSL runs on the loop
// thread with a custom BIO over the TCP transport, so nothing blocks and the socket stays
// libuv's.
//
// Data path (after the handshake):
//  - in: the TCP transport's ciphertext view is handed to OpenSSL without copying; the records
//    it completes are decrypted into `plain_buffer` (lent by the owner, one per loop like the
//    TCP read buffer) and delivered in ONE OnTransportRead per TCP read.
//  - out: Write() encrypts the parts (coalesced into as few records as they fit) and the BIO
//    passes each record straight to TcpTransport::Write (uv_try_write first; only what the
//    kernel refuses is copied). No allocation per read or write once the handshake is done:
//    OpenSSL's record buffers are kept (SSL_MODE_RELEASE_BUFFERS is not set).
//
// Handshake:
//  - Server role: the owner calls StartReading() as for TCP; the handshake runs as bytes arrive
//    and the first OnTransportRead carries application data. The owner configures the SSL*
//    (context, SNI callback, ALPN) before handing it over.
//  - Client role: Connect() connects TCP, then runs the handshake (reading on its own);
//    OnTransportConnected(0) comes once the handshake is done. The owner sets the SNI name,
//    verification and any session to resume on the SSL* before Connect().
//  - A handshake or record failure is reported as kTlsError (OnTransportConnected for a
//    client handshake, OnTransportReadError otherwise) and error() says why ("certificate verify
//    failed", "wrong version number", ...). A peer that closes without close_notify is EOF.
//  - Writes before the handshake finishes are kept (plaintext, copied) and sent after it.
//
// The Transport contracts of transport.h hold (no callback from inside a method the owner
// called; Close() is final), with three differences owners must allow for:
//  - Write() returning false may follow records of the same call already queued: the transport
//    has failed then and the owner closes (it never retries).
//  - OnTransportWritten counts ciphertext bytes (records, not the owner's plaintext), and only
//    for writes queued after the handshake; use it as progress, and pending_write_bytes() as
//    the backlog.
//  - Writes kept before the handshake (early writes) produce no OnTransportWritten when the
//    kernel takes them at once; pending_write_bytes() drops to the TCP backlog then.
// Thread-compatible: one loop thread.
#include <uv.h>

#include <cstddef>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "common/net/tcp_transport.h"
#include "common/net/transport.h"

typedef struct ssl_st SSL;

namespace portico {

// The status a TLS failure is reported with (then error() says why).
inline constexpr int kTlsError = UV_EPROTO;

class TlsTransport final : public Transport, private TransportCallbacks {
 public:
  enum class Role { kServer, kClient };

  // Takes ownership of `ssl`. `inner` must outlive this transport (typically a sibling member
  // of the owner) and must not have started any I/O; this transport becomes its callbacks.
  // `plain_buffer` (`plain_buffer_size` bytes, at least 16 KiB) must outlive the transport.
  TlsTransport(TcpTransport* inner, SSL* ssl, Role role, char* plain_buffer, size_t plain_buffer_size,
               TransportCallbacks* callbacks = nullptr);
  ~TlsTransport() override;
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  void set_callbacks(TransportCallbacks* callbacks) { callbacks_ = callbacks; }
  SSL* ssl() const { return ssl_; }
  bool handshake_done() const { return handshake_done_; }
  // Why the last TLS failure happened (OpenSSL's reason, and the verify result when a peer
  // certificate was refused); empty if none. Never contains key material.
  const std::string& error() const { return error_; }

  int Connect(const sockaddr* address) override;
  void StartReading() override;
  void StopReading() override;
  bool reading() const override { return owner_reading_; }
  bool Write(const absl::string_view* parts, size_t count) override;
  using Transport::Write;
  size_t pending_write_bytes() const override;
  // Sends close_notify after the queued bytes, then the FIN.
  bool Shutdown() override;
  void Close() override;
  bool closing() const override { return inner_->closing(); }
  void SetNoDelay() override { inner_->SetNoDelay(); }
  // True when nothing is waiting: no decrypted byte held by OpenSSL and nothing on the socket.
  // False while this transport is delivering a read (see has_buffered_input).
  bool PeerSilent() override;
  // Bytes received but not delivered yet (ciphertext still to decrypt in this delivery, a stash,
  // or records OpenSSL holds). An owner that finished a message inside OnTransportRead checks it
  // the way it checks for bytes after the message in the view: such a connection is not reusable.
  bool has_buffered_input() const;

 private:
  struct Bio;
  struct Uv;

  // TransportCallbacks of the inner TCP transport.
  void OnTransportConnected(int status) override;
  void OnTransportRead(absl::string_view data) override;
  void OnTransportEof() override;
  void OnTransportReadError(int status) override;
  void OnTransportWritten(size_t bytes, int status) override;
  void OnTransportShutdown(int status) override;
  void OnTransportClosed() override;

  // Feeds `data` (may be empty) to OpenSSL: advances the handshake, then decrypts what it can
  // into plain_buffer and delivers it. Returns false when the transport failed or was closed.
  bool Pump(absl::string_view data);
  bool ContinueHandshake();
  void FinishHandshake();
  bool FlushEarlyWrites();
  bool EncryptAndSend(const absl::string_view* parts, size_t count);
  bool WriteAll(absl::string_view data);
  void Fail(int status, const char* what);
  void ScheduleResume();
  void OnResume();
  void UpdateInnerReading();

  TcpTransport* inner_;
  SSL* ssl_;
  const Role role_;
  char* plain_buffer_;
  size_t plain_buffer_size_;
  TransportCallbacks* callbacks_;

  // The ciphertext view OpenSSL reads from (the BIO), valid during Pump only.
  absl::string_view cipher_in_;
  // Ciphertext left over when the owner stopped reading mid-delivery (rare; copied).
  std::string cipher_stash_;
  // Plaintext written before the handshake finished (copied).
  std::string early_writes_;
  std::string error_;
  // Ticks once to resume a stash after StartReading (callbacks never run inside a method).
  std::unique_ptr<uv_timer_t> resume_timer_;

  bool handshake_done_ = false;
  bool owner_reading_ = false;
  bool connecting_ = false;   // client: TCP connected, handshake under way
  bool failed_ = false;
  bool eof_seen_ = false;
  bool shutdown_wanted_ = false;
  bool write_failed_ = false;
  bool in_pump_ = false;
};

}  // namespace portico
