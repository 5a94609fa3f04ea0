#include "h2_test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace portico::dp::testing {
namespace {

// Names are sent as given (nghttp2 lowercases the names it copies), so they are kept in `kept`
// until the client is destroyed.
nghttp2_nv Nv(std::deque<std::string>& kept, const std::string& name, const std::string& value) {
  kept.push_back(name);
  nghttp2_nv nv;
  nv.name = reinterpret_cast<uint8_t*>(kept.back().data());
  nv.namelen = name.size();
  nv.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
  nv.valuelen = value.size();
  nv.flags = NGHTTP2_NV_FLAG_NO_COPY_NAME;
  return nv;
}

}  // namespace

std::string H2Stream::Header(const std::string& name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return "<absent>";
}

std::string H2Stream::Trailer(const std::string& name) const {
  for (const auto& [n, v] : trailers) {
    if (n == name) return v;
  }
  return "<absent>";
}

struct H2TestClient::Callbacks {
  static H2TestClient* Of(void* p) { return static_cast<H2TestClient*>(p); }
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    H2TestClient* self = Of(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    H2Stream& s = self->streams_[frame->hd.stream_id];
    std::string n(reinterpret_cast<const char*>(name), namelen), v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      s.status = std::atoi(v.c_str());
      return 0;
    }
    if (frame->headers.cat == NGHTTP2_HCAT_HEADERS && s.status != 0 && frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
      s.trailers.emplace_back(std::move(n), std::move(v));
    } else {
      s.headers.emplace_back(std::move(n), std::move(v));
    }
    return 0;
  }
  static int OnData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len, void* user) {
    Of(user)->streams_[id].body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    H2TestClient* self = Of(user);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      self->goaway_ = true;
      self->goaway_error_ = frame->goaway.error_code;
      self->goaway_last_stream_ids_.push_back(frame->goaway.last_stream_id);
    } else if (frame->hd.type == NGHTTP2_RST_STREAM) {
      self->streams_[frame->hd.stream_id].reset = true;
    }
    return 0;
  }
  static int OnClose(nghttp2_session*, int32_t id, uint32_t error, void* user) {
    H2Stream& s = Of(user)->streams_[id];
    s.closed = true;
    s.close_error = error;
    return 0;
  }
  static ssize_t ReadBody(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source*, void* user) {
    H2TestClient* self = Of(user);
    const std::string& body = self->bodies_[id];
    size_t& sent = self->body_sent_[id];
    const size_t n = std::min(length, body.size() - sent);
    std::memcpy(buf, body.data() + sent, n);
    sent += n;
    if (sent == body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
};

H2TestClient::H2TestClient(H2ClientOptions options) : options_(options) {}

H2TestClient::~H2TestClient() {
  if (session_ != nullptr) nghttp2_session_del(session_);
  if (fd_ >= 0) close(fd_);
}

int64_t H2TestClient::NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool H2TestClient::CreateSession(bool upgrade) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(cb, Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, Callbacks::OnData);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, Callbacks::OnClose);
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  if (options_.manual_window) nghttp2_option_set_no_auto_window_update(option, 1);
  if (options_.skip_outbound_checks) nghttp2_option_set_no_http_messaging(option, 1);
  if (options_.peer_max_concurrent_streams > 0) {
    nghttp2_option_set_peer_max_concurrent_streams(option, options_.peer_max_concurrent_streams);
  }
  const int rv = nghttp2_session_client_new2(&session_, cb, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) return false;
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(options_.initial_window)},
                                       {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  if (upgrade) return true;
  return nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2) == 0;
}

static int ConnectLoopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

bool H2TestClient::Connect(uint16_t port) {
  fd_ = ConnectLoopback(port);
  return fd_ >= 0 && CreateSession(false);
}

bool H2TestClient::ConnectUpgrade(uint16_t port, const std::string& method, const std::string& path,
                                  const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  fd_ = ConnectLoopback(port);
  if (fd_ < 0 || !CreateSession(true)) return false;
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(options_.initial_window)}};
  uint8_t payload[64];
  const ssize_t n = nghttp2_pack_settings_payload(payload, sizeof(payload), settings, 1);
  if (n < 0) return false;
  const std::string encoded = absl::WebSafeBase64Escape(std::string(reinterpret_cast<char*>(payload), n));
  std::string head = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: example.com\r\n",
                                  "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: ", encoded,
                                  "\r\n");
  for (const auto& [name, value] : extra_headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  head += "\r\n";
  if (send(fd_, head.data(), head.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(head.size())) return false;
  // Read byte by byte up to the end of the 101 head: what follows is HTTP/2.
  std::string answer;
  const int64_t until = NowMs() + 5000;
  while (!absl::EndsWith(answer, "\r\n\r\n") && NowMs() < until) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char c;
    if (recv(fd_, &c, 1, 0) != 1) return false;
    answer.push_back(c);
  }
  if (!absl::StartsWith(answer, "HTTP/1.1 101")) return false;
  if (nghttp2_session_upgrade2(session_, payload, n, method == "HEAD", nullptr) != 0) return false;
  return nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 1) == 0;
}

int32_t H2TestClient::Submit(const std::string& method, const std::string& path,
                             const std::vector<std::pair<std::string, std::string>>& headers, const std::string* body,
                             const std::string& authority) {
  std::vector<std::pair<std::string, std::string>> all = {
      {":method", method}, {":scheme", "http"}, {":authority", authority}, {":path", path}};
  all.insert(all.end(), headers.begin(), headers.end());
  std::vector<nghttp2_nv> nva;
  for (const auto& [n, v] : all) nva.push_back(Nv(kept_names_, n, v));
  nghttp2_data_provider provider;
  provider.source.ptr = nullptr;
  provider.read_callback = Callbacks::ReadBody;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), body ? &provider : nullptr, nullptr);
  if (id > 0 && body != nullptr) {
    bodies_[id] = *body;
    body_sent_[id] = 0;
  }
  if (id > 0) streams_[id];
  return id;
}

int32_t H2TestClient::SubmitOpen(const std::string& method, const std::string& path,
                                 const std::vector<std::pair<std::string, std::string>>& headers) {
  std::vector<std::pair<std::string, std::string>> all = {
      {":method", method}, {":scheme", "http"}, {":authority", "example.com"}, {":path", path}};
  all.insert(all.end(), headers.begin(), headers.end());
  std::vector<nghttp2_nv> nva;
  for (const auto& [n, v] : all) nva.push_back(Nv(kept_names_, n, v));
  const int32_t id = nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, -1, nullptr, nva.data(), nva.size(), nullptr);
  if (id > 0) streams_[id];
  return id;
}

void H2TestClient::ResetStream(int32_t id, uint32_t code) {
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, code);
}

void H2TestClient::Consume(int32_t id, size_t bytes) { nghttp2_session_consume(session_, id, bytes); }

bool H2TestClient::Flush() {
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) return false;
    if (n == 0) return true;
    size_t off = 0;
    while (off < static_cast<size_t>(n)) {
      const ssize_t w = send(fd_, data + off, n - off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          pollfd p{fd_, POLLOUT, 0};
          poll(&p, 1, 100);
          continue;
        }
        connection_closed_ = true;
        return false;
      }
      off += static_cast<size_t>(w);
    }
  }
}

bool H2TestClient::WriteRaw(const std::string& bytes) {
  if (!Flush()) return false;
  return send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

bool H2TestClient::Step(int wait_ms) {
  if (connection_closed_) return false;
  Flush();
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, wait_ms) <= 0) return !connection_closed_;
  char buffer[65536];
  const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
  if (n <= 0) {
    connection_closed_ = true;
    return false;
  }
  if (nghttp2_session_mem_recv(session_, reinterpret_cast<uint8_t*>(buffer), n) < 0) {
    connection_closed_ = true;
    return false;
  }
  return true;
}

}  // namespace portico::dp::testing
