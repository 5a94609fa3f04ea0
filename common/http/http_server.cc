// HTTP/1.1 server on the shared TCP transport (common/net) and HTTP/1 codec (http1_codec.h); the
// listener, stop and sweep handles are the only libuv callbacks here. Everything except
// Start()/Stop() runs on the server thread.
//
// Connection lifecycle:
//   kReading --(response with close | parse error | limit | peer EOF)--> kClosingAfterWrites
//   kClosingAfterWrites --(all writes done)--> kLingering (FIN sent, input drained and discarded
//       for up to kLingerMs so the peer sees the response instead of a reset), or straight to
//       kClosed when the peer already sent EOF
//   any --(read/write error | idle timeout | Stop)--> kClosed; uv_close's callback deletes it.
#include "common/http/http_server.h"

#include <openssl/ssl.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/http/http1_codec.h"
#include "common/net/tcp_transport.h"
#include "common/net/tls_transport.h"

namespace portico {
namespace {

constexpr uint64_t kLingerMs = 2000;
constexpr size_t kReadBufferBytes = 64 * 1024;
constexpr char kBadRequestBody[] = R"({"message":"Bad request"})";
constexpr char kHeaderTooLargeBody[] = R"({"message":"Request header or cookie too large"})";
constexpr char kPayloadTooLargeBody[] = R"({"message":"Payload too large"})";

class Connection;
void FinishDrain(HttpServer::Impl* server);

std::string HttpDate() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const time_t now = time(nullptr);
  struct tm tm_utc;
  gmtime_r(&now, &tm_utc);
  char buffer[64];
  snprintf(buffer, sizeof(buffer), "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm_utc.tm_wday],
           tm_utc.tm_mday, kMonths[tm_utc.tm_mon], tm_utc.tm_year + 1900, tm_utc.tm_hour,
           tm_utc.tm_min, tm_utc.tm_sec);
  return buffer;
}

bool HasLineBreak(absl::string_view s) { return s.find_first_of("\r\n") != absl::string_view::npos; }

// Serializes `response`. `head`: omit the body bytes; `keep_alive`: otherwise "Connection: close".
std::string SerializeResponse(const HttpResponse& response, bool head, bool keep_alive,
                              bool http10) {
  std::string out = absl::StrCat("HTTP/1.1 ", response.status, " ", HttpReasonPhrase(response.status),
                                 "\r\n");
  bool has_date = false;
  bool has_server = false;
  for (const auto& [name, value] : response.headers) {
    if (absl::EqualsIgnoreCase(name, "content-length") ||
        absl::EqualsIgnoreCase(name, "transfer-encoding") ||
        absl::EqualsIgnoreCase(name, "connection") || name.empty() || HasLineBreak(name) ||
        HasLineBreak(value)) {
      continue;  // framing is the server's; CR/LF would split the response
    }
    has_date |= absl::EqualsIgnoreCase(name, "date");
    has_server |= absl::EqualsIgnoreCase(name, "server");
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  if (!has_date) absl::StrAppend(&out, "Date: ", HttpDate(), "\r\n");
  if (!has_server) absl::StrAppend(&out, "Server: portico/", PORTICO_VERSION, "\r\n");
  const bool body_allowed =
      !(response.status < 200 || response.status == 204 || response.status == 304);
  if (body_allowed) absl::StrAppend(&out, "Content-Length: ", response.body.size(), "\r\n");
  if (!keep_alive) {
    out.append("Connection: close\r\n");
  } else if (http10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  if (body_allowed && !head) out.append(response.body);
  return out;
}

bool WantsClose(const HttpResponse& response) {
  for (const auto& [name, value] : response.headers) {
    if (absl::EqualsIgnoreCase(name, "connection") && absl::StrContains(absl::AsciiStrToLower(value), "close")) {
      return true;
    }
  }
  return false;
}

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  Handler handler;
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_async_t stop_async;
  uv_timer_t sweep_timer;
  std::thread thread;
  uint16_t port = 0;
  std::unordered_set<Connection*> connections;  // server thread only
  char read_buffer[kReadBufferBytes];           // reads are consumed synchronously, so one suffices
  char plain_buffer[kReadBufferBytes];          // TLS: decrypted bytes, consumed synchronously too
  SSL_CTX* tls_context = nullptr;               // owned reference; null = cleartext

  ~Impl() {
    if (tls_context != nullptr) SSL_CTX_free(tls_context);
  }

  std::mutex stop_mu;
  bool stop_sent = false;  // guarded by stop_mu: the stop async was sent
  bool stopped = false;    // guarded by stop_mu: the thread was joined
  // Set before the stop async is sent (BeginStop); 0: close everything at once.
  std::atomic<uint64_t> grace_ms{0};
  // Server thread only: a graceful stop is under way (connections end after their request).
  bool draining = false;
  uv_timer_t grace_timer;
};

namespace {

// One client connection: the shared TCP transport (under TLS when the server has a context) and
// HTTP/1 codec, answering each complete request with the handler, in order.
class Connection final : public TransportCallbacks, public Http1Codec::BodySink {
 public:
  enum class State { kReading, kClosingAfterWrites, kLingering, kClosed };

  explicit Connection(HttpServer::Impl* server)
      : server_(server),
        tcp_(&server->loop, server->read_buffer, kReadBufferBytes, this),
        codec_(Http1Codec::Kind::kRequest, this, server->options.max_header_bytes) {
    if (server->tls_context != nullptr) {
      SSL* ssl = SSL_new(server->tls_context);
      if (ssl != nullptr) {
        tls_ = std::make_unique<TlsTransport>(&tcp_, ssl, TlsTransport::Role::kServer, server->plain_buffer,
                                              kReadBufferBytes, this);
        transport_ = tls_.get();
      }
    }
  }

  TcpTransport& tcp() { return tcp_; }

  // False when the connection cannot start (no TLS session could be made); the caller closes.
  bool Begin() {
    peer_ip_ = tcp_.PeerIp();
    if (server_->tls_context != nullptr && tls_ == nullptr) {
      PORTICO_LOG(kError, "http", "cannot create a TLS session for ", peer_ip_);
      return false;
    }
    transport_->SetNoDelay();
    Touch();
    transport_->StartReading();
    return true;
  }

  // ---- transport events ----
  void OnTransportConnected(int) override {}
  void OnTransportRead(absl::string_view data) override {
    Touch();
    if (state_ != State::kReading) return;  // draining before close: discard
    Feed(data);
  }
  void OnTransportEof() override {
    peer_eof_ = true;
    if (state_ == State::kLingering) return Close();
    CloseAfterWrites();
  }
  void OnTransportReadError(int status) override {
    if (tls_ != nullptr && status == kTlsError) {
      PORTICO_LOG(kInfo, "http", "closed a TLS connection from ", peer_ip_, ": ", tls_->error());
    }
    Close();
  }
  void OnTransportWritten(size_t, int status) override {
    if (state_ == State::kClosed) return;
    if (status < 0) return Close();
    Touch();
    if (state_ == State::kClosingAfterWrites && transport_->pending_write_bytes() == 0) return FinishClosing();
    if (state_ == State::kReading && !transport_->reading() &&
        transport_->pending_write_bytes() <= server_->options.max_pending_write_bytes / 2) {
      transport_->StartReading();
    }
  }
  void OnTransportShutdown(int status) override {
    if (status < 0) Close();
  }
  void OnTransportClosed() override {
    server_->connections.erase(this);
    if (server_->draining && server_->connections.empty()) FinishDrain(server_);
    delete this;
  }

  // A graceful stop began: an idle keep-alive connection closes now, one with a request in
  // progress (or a response still being written) closes after it. A connection that has not
  // served a request yet (just accepted, or in its TLS handshake) was opened for a request on its
  // way: it is answered too, the grace period (or the idle timeout) bounding the wait.
  void Drain() {
    if (state_ != State::kReading) return;
    if (!served_request_) return;
    if (codec_.in_message()) return;  // AnswerRequest closes after the answer (server_->draining)
    if (transport_->pending_write_bytes() == 0) return Close();
    CloseAfterWrites();
  }

  // ---- codec events ----
  bool OnBody(absl::string_view data) override {
    if (request_.body.size() + data.size() > server_->options.max_body_bytes) {
      error_status_ = 413;
      error_body_ = kPayloadTooLargeBody;
      return false;
    }
    request_.body.append(data.data(), data.size());
    return true;
  }

  // Called by the sweep timer.
  void CheckTimeouts(uint64_t now) {
    if (state_ == State::kClosed) return;
    if (state_ == State::kLingering && now >= linger_deadline_) return Close();
    if (now - last_activity_ >= server_->options.idle_timeout_ms) return Close();
  }

  void Close() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    transport_->Close();
  }

 private:
  void Touch() { last_activity_ = uv_now(&server_->loop); }

  // The head is complete: refuse what the server does not take before reading any body.
  bool AcceptHead(const MessageHead& head) {
    if (head.version_major != 1) return Refuse(400, kBadRequestBody);  // no HTTP/0.9 or 2.0 here
    if (head.has_content_length && head.content_length > server_->options.max_body_bytes) {
      return Refuse(413, kPayloadTooLargeBody);
    }
    request_ = HttpRequest();
    request_.method = head.method;
    request_.target = head.url;
    const size_t question = request_.target.find('?');
    if (question == std::string::npos) {
      request_.path = request_.target;
    } else {
      request_.path = request_.target.substr(0, question);
      request_.query = request_.target.substr(question + 1);
    }
    request_.headers = head.headers;
    request_.peer_ip = peer_ip_;
    if (head.has_content_length) {
      // Declared length is a hint only: never pre-allocate more than one read's worth.
      request_.body.reserve(std::min<size_t>(static_cast<size_t>(head.content_length), kReadBufferBytes));
    }
    return true;
  }

  bool Refuse(int status, const char* body) {
    error_status_ = status;
    error_body_ = body;
    return false;
  }

  // Parses `data`, answering each complete request in order.
  void Feed(absl::string_view data) {
    while (state_ == State::kReading) {
      const Http1Codec::Result result = codec_.Execute(data.data(), data.size());
      data.remove_prefix(result.consumed);
      if (result.event == Http1Codec::Event::kNeedMore) break;
      if (result.event == Http1Codec::Event::kHead) {
        if (AcceptHead(codec_.head())) continue;
      } else if (result.event == Http1Codec::Event::kMessageDone) {
        if (!AnswerRequest()) return CloseAfterWrites();
        continue;
      } else {
        if (result.event == Http1Codec::Event::kHeadTooLarge) Refuse(400, kHeaderTooLargeBody);
        PORTICO_LOG(kDebug, "http", "bad request from ", peer_ip_, ": ", codec_.error_reason());
      }
      WriteResponse(HttpResponse::Json(error_status_ != 0 ? error_status_ : 400,
                                       error_status_ != 0 ? error_body_ : kBadRequestBody),
                    /*head=*/false, /*keep_alive=*/false, /*http10=*/false);
      return CloseAfterWrites();
    }
    if (state_ == State::kReading && transport_->reading() &&
        transport_->pending_write_bytes() > server_->options.max_pending_write_bytes) {
      transport_->StopReading();  // resumed by OnTransportWritten once the peer reads
    }
  }

  // Runs the handler for the completed request; false when the connection must close after it.
  bool AnswerRequest() {
    const MessageHead& head = codec_.head();
    const bool http10 = head.version_major == 1 && head.version_minor == 0;
    bool keep_alive = head.keep_alive && !head.upgrade;
    const HttpResponse response = server_->handler(request_);
    served_request_ = true;
    keep_alive = keep_alive && !WantsClose(response) && !server_->draining;
    WriteResponse(response, request_.method == "HEAD", keep_alive, http10);
    request_ = HttpRequest();
    return keep_alive;
  }

  void WriteResponse(const HttpResponse& response, bool head, bool keep_alive, bool http10) {
    if (state_ == State::kClosed) return;
    const std::string bytes = SerializeResponse(response, head, keep_alive, http10);
    if (!transport_->Write(bytes)) Close();
  }

  void CloseAfterWrites() {
    if (state_ == State::kClosed || state_ == State::kLingering) return;
    state_ = State::kClosingAfterWrites;
    if (transport_->pending_write_bytes() == 0) FinishClosing();
  }

  // All responses are handed to the kernel: send FIN, then drain input until EOF or the deadline.
  void FinishClosing() {
    if (peer_eof_) return Close();
    state_ = State::kLingering;
    linger_deadline_ = uv_now(&server_->loop) + kLingerMs;
    if (!transport_->Shutdown()) return Close();
    transport_->StartReading();
  }

  HttpServer::Impl* server_;
  TcpTransport tcp_;
  std::unique_ptr<TlsTransport> tls_;  // over tcp_ when the server speaks TLS
  Transport* transport_ = &tcp_;       // what the connection reads and writes: tls_ or tcp_
  Http1Codec codec_;
  State state_ = State::kReading;
  bool peer_eof_ = false;
  bool served_request_ = false;  // a response was made here (Drain closes it when idle)
  uint64_t last_activity_ = 0;
  uint64_t linger_deadline_ = 0;
  std::string peer_ip_;

  HttpRequest request_;
  int error_status_ = 0;
  const char* error_body_ = kBadRequestBody;
};

// ---- libuv trampolines for the server handles ----
HttpServer::Impl* ServerOf(uv_handle_t* handle) { return static_cast<HttpServer::Impl*>(handle->data); }

void OnNewConnection(uv_stream_t* listener, int status) {
  HttpServer::Impl* server = ServerOf(reinterpret_cast<uv_handle_t*>(listener));
  if (status < 0) return;
  auto* connection = new Connection(server);  // freed by its transport's close callback
  server->connections.insert(connection);
  if (!connection->tcp().Accept(listener) || !connection->Begin()) return connection->Close();
}

void OnSweep(uv_timer_t* timer) {
  HttpServer::Impl* server = ServerOf(reinterpret_cast<uv_handle_t*>(timer));
  const uint64_t now = uv_now(&server->loop);
  // Close() only schedules uv_close; the set changes in the close callback, not here.
  for (Connection* connection : server->connections) connection->CheckTimeouts(now);
}

void CloseTimers(HttpServer::Impl* server) {
  for (uv_handle_t* timer : {reinterpret_cast<uv_handle_t*>(&server->sweep_timer),
                             reinterpret_cast<uv_handle_t*>(&server->grace_timer)}) {
    if (!uv_is_closing(timer)) uv_close(timer, nullptr);
  }
}

// The graceful stop is over (no connection left): the loop ends once the timers are closed.
void FinishDrain(HttpServer::Impl* server) { CloseTimers(server); }

void OnGraceExpired(uv_timer_t* timer) {
  HttpServer::Impl* server = ServerOf(reinterpret_cast<uv_handle_t*>(timer));
  if (!server->connections.empty()) {
    PORTICO_LOG(kWarn, "http", "closing ", server->connections.size(), " connection(s) still open after ",
                server->grace_ms.load(), " ms");
  }
  // Close() only schedules uv_close; the set changes in the close callbacks.
  for (Connection* connection : server->connections) connection->Close();
  if (server->connections.empty()) FinishDrain(server);
}

void OnStop(uv_async_t* async) {
  HttpServer::Impl* server = ServerOf(reinterpret_cast<uv_handle_t*>(async));
  uv_close(reinterpret_cast<uv_handle_t*>(&server->listener), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&server->stop_async), nullptr);
  const uint64_t grace_ms = server->grace_ms.load();
  if (grace_ms == 0 || server->connections.empty()) {
    CloseTimers(server);
    for (Connection* connection : server->connections) connection->Close();
    return;
  }
  server->draining = true;
  uv_timer_start(&server->grace_timer, OnGraceExpired, grace_ms, 0);
  // Drain() may close a connection (freed in its close callback, never here): iterate a copy.
  const std::vector<Connection*> connections(server->connections.begin(), server->connections.end());
  for (Connection* connection : connections) connection->Drain();
}

absl::Status UvError(absl::string_view what, int rc) {
  return absl::UnavailableError(absl::StrCat(what, ": ", uv_strerror(rc)));
}

// Closes whatever handles were initialised and drains the loop (Start() failure path).
void AbandonLoop(HttpServer::Impl* server) {
  uv_walk(&server->loop, [](uv_handle_t* handle, void*) {
    if (!uv_is_closing(handle)) uv_close(handle, nullptr);
  }, nullptr);
  uv_run(&server->loop, UV_RUN_DEFAULT);
  uv_loop_close(&server->loop);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& host,
                                                              uint16_t port, Handler handler,
                                                              HttpServerOptions options) {
  if (!handler) return absl::InvalidArgumentError("http server: no handler");
  std::string address = host;
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  struct sockaddr_storage bind_address;
  std::memset(&bind_address, 0, sizeof(bind_address));
  if (address.find(':') != std::string::npos) {
    if (uv_ip6_addr(address.c_str(), port, reinterpret_cast<sockaddr_in6*>(&bind_address)) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("http server: bad IPv6 address '", host, "'"));
    }
  } else if (uv_ip4_addr(address.c_str(), port, reinterpret_cast<sockaddr_in*>(&bind_address)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("http server: bad IPv4 address '", host, "'"));
  }

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handler = std::move(handler);
  if (options.tls_context != nullptr && SSL_CTX_up_ref(options.tls_context) == 1) {
    impl->tls_context = options.tls_context;
  } else if (options.tls_context != nullptr) {
    return absl::InternalError("http server: SSL_CTX_up_ref failed");
  }
  if (int rc = uv_loop_init(&impl->loop); rc != 0) return UvError("uv_loop_init", rc);
  uv_tcp_init(&impl->loop, &impl->listener);
  impl->listener.data = impl.get();
  int rc = uv_tcp_bind(&impl->listener, reinterpret_cast<const sockaddr*>(&bind_address), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&impl->listener), 511, OnNewConnection);
  if (rc != 0) {
    AbandonLoop(impl.get());
    return UvError(absl::StrCat("http server: listen on ", host, ":", port), rc);
  }
  struct sockaddr_storage bound;
  int bound_length = sizeof(bound);
  uv_tcp_getsockname(&impl->listener, reinterpret_cast<sockaddr*>(&bound), &bound_length);
  impl->port = ntohs(bound.ss_family == AF_INET6
                         ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                         : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);

  uv_async_init(&impl->loop, &impl->stop_async, OnStop);
  impl->stop_async.data = impl.get();
  uv_timer_init(&impl->loop, &impl->sweep_timer);
  impl->sweep_timer.data = impl.get();
  uv_timer_init(&impl->loop, &impl->grace_timer);
  impl->grace_timer.data = impl.get();
  const uint64_t sweep_ms = std::clamp<uint64_t>(options.idle_timeout_ms / 4, 10, 1000);
  uv_timer_start(&impl->sweep_timer, OnSweep, sweep_ms, sweep_ms);

  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { uv_run(&raw->loop, UV_RUN_DEFAULT); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

void HttpServer::BeginStop(uint64_t grace_ms) {
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  if (impl_->stop_sent) return;
  impl_->stop_sent = true;
  impl_->grace_ms.store(grace_ms);
  uv_async_send(&impl_->stop_async);
}

HttpServer::~HttpServer() { Stop(); }

uint16_t HttpServer::port() const { return impl_->port; }

void HttpServer::Stop() {
  if (std::this_thread::get_id() == impl_->thread.get_id()) {
    PORTICO_LOG(kError, "http", "HttpServer::Stop called from its own handler; ignored");
    return;
  }
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  if (!impl_->stop_sent) {
    impl_->stop_sent = true;
    uv_async_send(&impl_->stop_async);
  }
  impl_->thread.join();
  const int rc = uv_loop_close(&impl_->loop);
  if (rc != 0) PORTICO_LOG(kError, "http", "uv_loop_close: ", uv_strerror(rc));
}


}  // namespace portico
