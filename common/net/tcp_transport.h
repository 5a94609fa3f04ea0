#pragma once
// Transport over a libuv TCP handle: the one place with libuv stream trampolines (read, write,
// shutdown, connect, close) for the proxy's client and upstream connections and the Admin/status
// server. Reads land in a buffer the owner lends for the transport's life (a loop's shared read
// buffer: reads are consumed synchronously, so one per loop suffices). Writes go to the kernel
// with uv_try_write first; only what it does not take is copied into a uv_write request.
// Thread-compatible: call only on the loop's thread.
#include <uv.h>

#include <cstddef>
#include <memory>

#include "absl/strings/string_view.h"
#include "common/net/transport.h"

namespace portico {

class TcpTransport final : public Transport {
 public:
  // `read_buffer` (`read_buffer_size` bytes) must outlive the transport. `callbacks` may be set
  // later (set_callbacks) but before any I/O starts.
  TcpTransport(uv_loop_t* loop, char* read_buffer, size_t read_buffer_size, TransportCallbacks* callbacks = nullptr);
  ~TcpTransport() override;
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  void set_callbacks(TransportCallbacks* callbacks) { callbacks_ = callbacks; }
  uv_loop_t* loop() const { return tcp_.loop; }

  // Adopts a connected, non-blocking socket (from accept4). False on error; the fd is closed
  // then, and the owner must still Close() the transport.
  bool Open(int fd);
  // Accepts the next connection of a libuv listener. False on error (the owner must Close()).
  bool Accept(uv_stream_t* listener);
  // The peer's address (getpeername), as text ("10.0.0.1", "::1"); empty when unknown.
  std::string PeerIp() const;

  int Connect(const sockaddr* address) override;
  void StartReading() override;
  void StopReading() override;
  bool reading() const override { return reading_; }
  bool Write(const absl::string_view* parts, size_t count) override;
  using Transport::Write;
  size_t pending_write_bytes() const override { return pending_write_bytes_; }
  bool Shutdown() override;
  void Close() override;
  bool closing() const override { return closing_; }
  void SetNoDelay() override;
  bool PeerSilent() override;
  // Reads what the socket holds now, without waiting and without libuv (for a TLS transport
  // checking a pooled connection): bytes read, 0 when nothing is waiting, UV_EOF at end of
  // stream, or another negative libuv error.
  ssize_t TryRead(char* buffer, size_t size);

  // The most parts one Write() takes.
  static constexpr size_t kMaxWriteParts = 32;

 private:
  struct Uv;
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  uv_tcp_t tcp_;
  TransportCallbacks* callbacks_;
  char* read_buffer_;
  size_t read_buffer_size_;
  size_t pending_write_bytes_ = 0;
  std::unique_ptr<uv_connect_t> connect_req_;    // only while connecting
  std::unique_ptr<uv_shutdown_t> shutdown_req_;  // only while shutting down
  bool initialised_ = false;
  bool reading_ = false;
  bool closing_ = false;
  bool nodelay_ = false;
};

// The text form of an IPv4 or IPv6 socket address ("::ffff:1.2.3.4" as "1.2.3.4"); empty for
// other families.
std::string IpOf(const sockaddr* address);

}  // namespace portico
