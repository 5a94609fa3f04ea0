#pragma once
// Small HTTP/1.1 server on libuv + llhttp for the Admin API (CP) and the DP status listener.
// Not the proxy. One thread, one uv loop; the handler runs on that thread, one request at a time.
//
// Behaviour: keep-alive (HTTP/1.1 default, HTTP/1.0 with "Connection: keep-alive"), pipelined
// requests answered in order, Content-Length and chunked request bodies (decoded), 413/400 for
// limits and malformed input (then the connection closes), idle connections closed after
// `idle_timeout_ms`. The server sets Content-Length, Date, Server and Connection; a handler's own
// Content-Length / Transfer-Encoding are dropped. A handler "Connection: close" closes after the
// response. HEAD responses carry the Content-Length of the body but no body.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/message.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace portico {

struct HttpServerOptions {
  size_t max_body_bytes = 16 * 1024 * 1024;  // larger bodies -> 413 and close
  size_t max_header_bytes = 64 * 1024;       // request line + header section; larger -> 400 and close
  uint64_t idle_timeout_ms = 60 * 1000;      // no bytes read or written for this long -> close
  size_t max_pending_write_bytes = 4 * 1024 * 1024;  // stop reading while more is unsent
  // When set, every connection speaks TLS (server role, common/net/tls_transport.h) with this
  // context: its certificate, protocol floor and client-certificate verification are the
  // caller's (common/tls/server_tls_context.h builds the Admin API's). Start() takes a reference
  // of its own. A failed handshake closes the connection with a log line naming the peer and
  // OpenSSL's reason.
  SSL_CTX* tls_context = nullptr;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  // Binds host:port (port 0 = ephemeral; `host` an IPv4 or IPv6 literal, brackets optional),
  // starts the server thread. Errors: InvalidArgument for a bad address, Unavailable when the bind
  // or listen fails (e.g. the port is taken).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& host, uint16_t port,
                                                           Handler handler,
                                                           HttpServerOptions options = {});

  ~HttpServer();  // calls Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the ephemeral one when started with 0).
  uint16_t port() const;

  // Graceful stop, without waiting: the listener closes at once, idle keep-alive connections
  // close, connections accepted that have not sent a request yet stay open for it, and
  // requests being received or answered finish (their responses carry `Connection: close`) for at
  // most `grace_ms`; then every connection left is closed. Stop() waits for the end. Thread-safe;
  // the first of BeginStop()/Stop() decides how the server stops.
  void BeginStop(uint64_t grace_ms);

  // Closes the listener and every connection (responses not yet written are dropped) and joins the
  // thread; after BeginStop(), waits for that graceful stop to end instead. Idempotent and
  // thread-safe. REQUIRES: not called from the handler (it would self-join).
  void Stop();

  struct Impl;  // public only so the libuv/llhttp trampolines in http_server.cc can name it

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};


}  // namespace portico
