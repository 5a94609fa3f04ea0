// libuv + llhttp HTTP/1.1 server. All libuv and llhttp callbacks are static trampolines at the
// bottom of the anonymous namespace; each recovers its Connection from `data` and forwards to one
// member function. Everything except Start()/Stop() runs on the server thread.
//
// Connection lifecycle:
//   kReading --(response with close | parse error | limit | peer EOF)--> kClosingAfterWrites
//   kClosingAfterWrites --(all writes done)--> kLingering (FIN sent, input drained and discarded
//       for up to kLingerMs so the peer sees the response instead of a reset), or straight to
//       kClosed when the peer already sent EOF
//   any --(read/write error | idle timeout | Stop)--> kClosed; uv_close's callback deletes it.
#include "common/http/http_server.h"

#include <llhttp.h>
#include <uv.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"

namespace portico {
namespace {

constexpr uint64_t kLingerMs = 2000;
constexpr size_t kReadBufferBytes = 64 * 1024;
constexpr char kBadRequestBody[] = R"({"message":"Bad request"})";
constexpr char kHeaderTooLargeBody[] = R"({"message":"Request header or cookie too large"})";
constexpr char kPayloadTooLargeBody[] = R"({"message":"Payload too large"})";

class Connection;

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

// RFC 9110 tchar.
bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
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
  llhttp_settings_t parser_settings;
  std::thread thread;
  uint16_t port = 0;
  std::unordered_set<Connection*> connections;  // server thread only
  char read_buffer[kReadBufferBytes];           // reads are consumed synchronously, so one suffices

  std::mutex stop_mu;
  bool stopped = false;  // guarded by stop_mu
};

namespace {

struct WriteRequest {
  uv_write_t req;
  std::string data;
  Connection* connection;
};

class Connection {
 public:
  enum class State { kReading, kClosingAfterWrites, kLingering, kClosed };

  explicit Connection(HttpServer::Impl* server) : server_(server) {
    tcp_.data = this;
    llhttp_init(&parser_, HTTP_REQUEST, &server->parser_settings);
    parser_.data = this;
  }

  uv_tcp_t* tcp() { return &tcp_; }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  HttpServer::Impl* server() { return server_; }

  void Begin() {
    struct sockaddr_storage peer;
    int length = sizeof(peer);
    if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &length) == 0) {
      char name[INET6_ADDRSTRLEN] = {0};
      if (peer.ss_family == AF_INET) {
        uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&peer), name, sizeof(name));
      } else if (peer.ss_family == AF_INET6) {
        uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&peer), name, sizeof(name));
      }
      peer_ip_ = name;
    }
    uv_tcp_nodelay(&tcp_, 1);
    Touch();
    StartReading();
  }

  // ---- libuv events ----
  void OnRead(ssize_t nread, const char* data) {
    if (nread == 0) return;
    if (nread < 0) {
      if (nread != UV_EOF) return Close();
      peer_eof_ = true;
      uv_read_stop(stream());
      reading_ = false;
      if (state_ == State::kLingering) return Close();
      return CloseAfterWrites();
    }
    Touch();
    if (state_ != State::kReading) return;  // draining before close: discard
    Feed(data, static_cast<size_t>(nread));
  }

  void OnWriteDone(int status) {
    --pending_writes_;
    if (state_ == State::kClosed) return;
    if (status < 0) return Close();
    Touch();
    if (state_ == State::kClosingAfterWrites && pending_writes_ == 0) return FinishClosing();
    if (state_ == State::kReading && !reading_ &&
        uv_stream_get_write_queue_size(stream()) <= server_->options.max_pending_write_bytes / 2) {
      StartReading();
    }
  }

  void OnShutdown(int status) {
    if (status < 0) Close();
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
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* handle) {
      auto* self = static_cast<Connection*>(handle->data);
      self->server_->connections.erase(self);
      delete self;
    });
  }

  // ---- llhttp events ----
  int OnMessageBegin() {
    request_ = HttpRequest();
    header_field_.clear();
    header_value_.clear();
    head_bytes_ = 0;
    return 0;
  }
  int OnUrl(const char* at, size_t length) {
    request_.target.append(at, length);
    return CountHead(length);
  }
  int OnHeaderField(const char* at, size_t length) {
    header_field_.append(at, length);
    return CountHead(length);
  }
  int OnHeaderValue(const char* at, size_t length) {
    header_value_.append(at, length);
    return CountHead(length);
  }
  int OnHeaderFieldComplete() {
    // llhttp (non-strict) lets "Name : v" through; RFC 9112 §5.1 requires a 400.
    if (header_field_.empty() || !std::all_of(header_field_.begin(), header_field_.end(), IsTokenChar)) {
      return Fail(400, kBadRequestBody);
    }
    return 0;
  }
  int OnHeaderValueComplete() {
    request_.headers.emplace_back(std::move(header_field_), std::move(header_value_));
    header_field_.clear();
    header_value_.clear();
    return CountHead(4);  // ": " and CRLF
  }
  int OnHeadersComplete() {
    if (parser_.http_major != 1) return Fail(400, kBadRequestBody);  // no HTTP/0.9
    const size_t question = request_.target.find('?');
    if (question == std::string::npos) {
      request_.path = request_.target;
    } else {
      request_.path = request_.target.substr(0, question);
      request_.query = request_.target.substr(question + 1);
    }
    if ((parser_.flags & F_CONTENT_LENGTH) != 0) {
      if (parser_.content_length > server_->options.max_body_bytes) {
        return Fail(413, kPayloadTooLargeBody);
      }
      // Declared length is a hint only: never pre-allocate more than one read's worth.
      request_.body.reserve(std::min<size_t>(static_cast<size_t>(parser_.content_length), kReadBufferBytes));
    }
    return 0;
  }
  int OnBody(const char* at, size_t length) {
    if (request_.body.size() + length > server_->options.max_body_bytes) {
      return Fail(413, kPayloadTooLargeBody);
    }
    request_.body.append(at, length);
    return 0;
  }
  int OnMessageComplete() {
    if (parser_.http_major != 1) return Fail(400, kBadRequestBody);  // HTTP/0.9 skips headers_complete
    return HPE_PAUSED;  // handled in Feed(), at a message boundary
  }  // handled in Feed(), at a message boundary

 private:
  void Touch() { last_activity_ = uv_now(&server_->loop); }

  void StartReading() {
    if (reading_) return;
    const int rc = uv_read_start(
        stream(),
        [](uv_handle_t* handle, size_t, uv_buf_t* buf) {
          auto* self = static_cast<Connection*>(handle->data);
          *buf = uv_buf_init(self->server_->read_buffer, kReadBufferBytes);
        },
        [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
          static_cast<Connection*>(stream->data)->OnRead(nread, buf->base);
        });
    if (rc < 0) return Close();
    reading_ = true;
  }

  int CountHead(size_t length) {
    head_bytes_ += length;
    if (head_bytes_ > server_->options.max_header_bytes) return Fail(400, kHeaderTooLargeBody);
    return 0;
  }

  int Fail(int status, const char* body) {
    error_status_ = status;
    error_body_ = body;
    return -1;
  }

  // Parses `data`, answering each complete request in order.
  void Feed(const char* data, size_t length) {
    while (length > 0 && state_ == State::kReading) {
      const llhttp_errno_t err = llhttp_execute(&parser_, data, length);
      if (err == HPE_OK) return;
      if (err == HPE_PAUSED) {
        const char* stop = llhttp_get_error_pos(&parser_);
        length -= static_cast<size_t>(stop - data);
        data = stop;
        if (!AnswerRequest()) return CloseAfterWrites();
        llhttp_resume(&parser_);
        continue;
      }
      // Upgrade/CONNECT is not supported by these servers, and any error ends the connection.
      if (err != HPE_PAUSED_UPGRADE) {
        PORTICO_LOG(kDebug, "http", "bad request from ", peer_ip_, ": ", llhttp_errno_name(err),
                    " ", llhttp_get_error_reason(&parser_));
      }
      WriteResponse(HttpResponse::Json(error_status_ != 0 ? error_status_ : 400,
                                       error_status_ != 0 ? error_body_ : kBadRequestBody),
                    /*head=*/false, /*keep_alive=*/false, /*http10=*/false);
      return CloseAfterWrites();
    }
    if (state_ == State::kReading && reading_ &&
        uv_stream_get_write_queue_size(stream()) > server_->options.max_pending_write_bytes) {
      uv_read_stop(stream());  // resumed by OnWriteDone once the peer reads
      reading_ = false;
    }
  }

  // Runs the handler for the completed request; false when the connection must close after it.
  bool AnswerRequest() {
    request_.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(&parser_)));
    request_.peer_ip = peer_ip_;
    const bool http10 = parser_.http_major == 1 && parser_.http_minor == 0;
    bool keep_alive = llhttp_should_keep_alive(&parser_) != 0 && llhttp_get_upgrade(&parser_) == 0;
    const HttpResponse response = server_->handler(request_);
    keep_alive = keep_alive && !WantsClose(response);
    WriteResponse(response, request_.method == "HEAD", keep_alive, http10);
    request_ = HttpRequest();
    return keep_alive;
  }

  void WriteResponse(const HttpResponse& response, bool head, bool keep_alive, bool http10) {
    if (state_ == State::kClosed) return;
    auto* write = new WriteRequest;
    write->data = SerializeResponse(response, head, keep_alive, http10);
    write->connection = this;
    uv_buf_t buffer = uv_buf_init(write->data.data(), static_cast<unsigned int>(write->data.size()));
    const int rc = uv_write(&write->req, stream(), &buffer, 1, [](uv_write_t* req, int status) {
      auto* done = reinterpret_cast<WriteRequest*>(req);  // req is the first member
      Connection* connection = done->connection;
      delete done;
      connection->OnWriteDone(status);
    });
    if (rc < 0) {
      delete write;
      return Close();
    }
    ++pending_writes_;
  }

  void CloseAfterWrites() {
    if (state_ == State::kClosed || state_ == State::kLingering) return;
    state_ = State::kClosingAfterWrites;
    if (pending_writes_ == 0) FinishClosing();
  }

  // All responses are handed to the kernel: send FIN, then drain input until EOF or the deadline.
  void FinishClosing() {
    if (peer_eof_) return Close();
    state_ = State::kLingering;
    linger_deadline_ = uv_now(&server_->loop) + kLingerMs;
    shutdown_req_.data = this;
    if (uv_shutdown(&shutdown_req_, stream(), [](uv_shutdown_t* req, int status) {
          static_cast<Connection*>(req->data)->OnShutdown(status);
        }) < 0) {
      return Close();
    }
    StartReading();
  }

  HttpServer::Impl* server_;
  uv_tcp_t tcp_;
  llhttp_t parser_;
  uv_shutdown_t shutdown_req_;
  State state_ = State::kReading;
  bool reading_ = false;
  bool peer_eof_ = false;
  size_t pending_writes_ = 0;
  uint64_t last_activity_ = 0;
  uint64_t linger_deadline_ = 0;
  std::string peer_ip_;

  HttpRequest request_;
  std::string header_field_;
  std::string header_value_;
  size_t head_bytes_ = 0;
  int error_status_ = 0;
  const char* error_body_ = kBadRequestBody;
};

// ---- llhttp trampolines ----
Connection* Self(llhttp_t* parser) { return static_cast<Connection*>(parser->data); }
int OnMessageBegin(llhttp_t* p) { return Self(p)->OnMessageBegin(); }
int OnUrl(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnUrl(at, n); }
int OnHeaderField(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnHeaderField(at, n); }
int OnHeaderValue(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnHeaderValue(at, n); }
int OnHeaderFieldComplete(llhttp_t* p) { return Self(p)->OnHeaderFieldComplete(); }
int OnHeaderValueComplete(llhttp_t* p) { return Self(p)->OnHeaderValueComplete(); }
int OnHeadersComplete(llhttp_t* p) { return Self(p)->OnHeadersComplete(); }
int OnBody(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnBody(at, n); }
int OnMessageComplete(llhttp_t* p) { return Self(p)->OnMessageComplete(); }

// ---- libuv trampolines for the server handles ----
HttpServer::Impl* ServerOf(uv_handle_t* handle) { return static_cast<HttpServer::Impl*>(handle->data); }

void OnNewConnection(uv_stream_t* listener, int status) {
  HttpServer::Impl* server = ServerOf(reinterpret_cast<uv_handle_t*>(listener));
  if (status < 0) return;
  auto* connection = new Connection(server);
  if (uv_tcp_init(&server->loop, connection->tcp()) != 0) {
    delete connection;
    return;
  }
  server->connections.insert(connection);
  if (uv_accept(listener, connection->stream()) != 0) return connection->Close();
  connection->Begin();
}

void OnSweep(uv_timer_t* timer) {
  HttpServer::Impl* server = ServerOf(reinterpret_cast<uv_handle_t*>(timer));
  const uint64_t now = uv_now(&server->loop);
  // Close() only schedules uv_close; the set changes in the close callback, not here.
  for (Connection* connection : server->connections) connection->CheckTimeouts(now);
}

void OnStop(uv_async_t* async) {
  HttpServer::Impl* server = ServerOf(reinterpret_cast<uv_handle_t*>(async));
  uv_close(reinterpret_cast<uv_handle_t*>(&server->listener), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&server->sweep_timer), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&server->stop_async), nullptr);
  for (Connection* connection : server->connections) connection->Close();
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
  llhttp_settings_init(&impl->parser_settings);
  impl->parser_settings.on_message_begin = OnMessageBegin;
  impl->parser_settings.on_url = OnUrl;
  impl->parser_settings.on_header_field = OnHeaderField;
  impl->parser_settings.on_header_value = OnHeaderValue;
  impl->parser_settings.on_header_field_complete = OnHeaderFieldComplete;
  impl->parser_settings.on_header_value_complete = OnHeaderValueComplete;
  impl->parser_settings.on_headers_complete = OnHeadersComplete;
  impl->parser_settings.on_body = OnBody;
  impl->parser_settings.on_message_complete = OnMessageComplete;

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
  const uint64_t sweep_ms = std::clamp<uint64_t>(options.idle_timeout_ms / 4, 10, 1000);
  uv_timer_start(&impl->sweep_timer, OnSweep, sweep_ms, sweep_ms);

  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { uv_run(&raw->loop, UV_RUN_DEFAULT); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

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
  uv_async_send(&impl_->stop_async);
  impl_->thread.join();
  const int rc = uv_loop_close(&impl_->loop);
  if (rc != 0) PORTICO_LOG(kError, "http", "uv_loop_close: ", uv_strerror(rc));
}


}  // namespace portico
