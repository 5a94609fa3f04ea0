#include "proxy_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace portico::proxy::testing {
namespace {

std::string FindHeader(const std::vector<std::pair<std::string, std::string>>& headers, const std::string& name) {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, name)) return v;
  }
  return "<absent>";
}

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

void ParseHeaderLines(absl::string_view head, std::string* first_line,
                      std::vector<std::pair<std::string, std::string>>* headers) {
  bool first = true;
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    if (first) {
      *first_line = std::string(line);
      first = false;
      continue;
    }
    if (line.empty()) continue;
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    headers->emplace_back(std::string(line.substr(0, colon)),
                          std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
}

// Reads from a blocking-with-poll socket; `more` appends to `buffer`, false on EOF/stop/timeout.
class Reader {
 public:
  Reader(int fd, std::string* buffer, std::function<bool()> more) : fd_(fd), buffer_(buffer), more_(std::move(more)) {}
  bool ReadHead(std::string* head) {
    size_t end;
    while ((end = buffer_->find("\r\n\r\n")) == std::string::npos) {
      if (!more_()) return false;
    }
    *head = buffer_->substr(0, end);
    buffer_->erase(0, end + 4);
    return true;
  }
  bool ReadExact(size_t n, std::string* out) {
    while (buffer_->size() < n) {
      if (!more_()) return false;
    }
    out->append(buffer_->data(), n);
    buffer_->erase(0, n);
    return true;
  }
  bool ReadLine(std::string* line) {
    size_t end;
    while ((end = buffer_->find("\r\n")) == std::string::npos) {
      if (!more_()) return false;
    }
    *line = buffer_->substr(0, end);
    buffer_->erase(0, end + 2);
    return true;
  }
  bool ReadChunked(std::string* out) {
    while (true) {
      std::string size_line;
      if (!ReadLine(&size_line)) return false;
      const size_t semicolon = size_line.find(';');
      unsigned long size = std::strtoul(size_line.substr(0, semicolon).c_str(), nullptr, 16);
      if (size == 0) {
        std::string trailer;
        do {
          if (!ReadLine(&trailer)) return false;
        } while (!trailer.empty());
        return true;
      }
      if (!ReadExact(size, out)) return false;
      std::string crlf;
      if (!ReadLine(&crlf) || !crlf.empty()) return false;
    }
  }
  void ReadToEnd(std::string* out) {
    while (more_()) {
    }
    out->append(*buffer_);
    buffer_->clear();
  }

 private:
  int fd_;
  std::string* buffer_;
  std::function<bool()> more_;
};

}  // namespace

std::string ReceivedRequest::Header(const std::string& name) const { return FindHeader(headers, name); }

size_t ReceivedRequest::HeaderCount(const std::string& name) const {
  size_t n = 0;
  for (const auto& [k, v] : headers) n += absl::EqualsIgnoreCase(k, name) ? 1 : 0;
  return n;
}

std::string ClientResponse::Header(const std::string& name) const { return FindHeader(headers, name); }
bool ClientResponse::HasHeader(const std::string& name) const { return Header(name) != "<absent>"; }

std::string SimpleResponse(int status, const std::string& body, const std::string& extra_headers) {
  return absl::StrCat("HTTP/1.1 ", status, " X\r\nContent-Length: ", body.size(), "\r\n", extra_headers, "\r\n",
                      body);
}

// ---- TestUpstream ----------------------------------------------------------------------------

TestUpstream::TestUpstream(UpstreamHandler handler) : handler_(std::move(handler)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listen_fd_, 128) != 0) {
    std::perror("test upstream bind/listen");
    std::abort();
  }
  socklen_t length = sizeof(address);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
  port_ = ntohs(address.sin_port);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

TestUpstream::~TestUpstream() { Stop(); }

void TestUpstream::Stop() {
  if (stop_.exchange(true)) return;
  accept_thread_.join();
  ::close(listen_fd_);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : connection_fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(connection_threads_);
  }
  for (std::thread& t : threads) t.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (int fd : connection_fds_) ::close(fd);
  connection_fds_.clear();
}

std::vector<ReceivedRequest> TestUpstream::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

void TestUpstream::AcceptLoop() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int index = accepted_.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    connection_fds_.push_back(fd);
    connection_threads_.emplace_back([this, fd, index] { Serve(fd, index); });
  }
}

void TestUpstream::Serve(int fd, int index) {
  std::string buffer;
  auto more = [&]() -> bool {
    while (!stop_.load()) {
      pollfd p{fd, POLLIN, 0};
      const int ready = ::poll(&p, 1, 20);
      if (ready == 0) continue;
      if (ready < 0) return false;
      char chunk[65536];
      const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<size_t>(n));
      return true;
    }
    return false;
  };
  Reader reader(fd, &buffer, more);
  auto sleep_ms = [&](int ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!stop_.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  while (!stop_.load()) {
    std::string head;
    if (!reader.ReadHead(&head)) break;
    ReceivedRequest request;
    request.connection_index = index;
    std::string request_line;
    ParseHeaderLines(head, &request_line, &request.headers);
    std::vector<std::string> parts = absl::StrSplit(request_line, ' ');
    if (parts.size() == 3) {
      request.method = parts[0];
      request.target = parts[1];
      request.version = parts[2];
    }
    bool ok = true;
    if (absl::EqualsIgnoreCase(request.Header("transfer-encoding"), "chunked")) {
      request.chunked = true;
      ok = reader.ReadChunked(&request.body);
    } else if (std::string cl = request.Header("content-length"); cl != "<absent>") {
      size_t n = 0;
      ok = absl::SimpleAtoi(cl, &n) && reader.ReadExact(n, &request.body);
    }
    if (!ok) break;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(request);
    }
    UpstreamReply reply = handler_(request);
    if (reply.hang) {
      while (more()) {
      }
      break;
    }
    if (reply.delay_ms > 0) sleep_ms(reply.delay_ms);
    if (!SendAll(fd, reply.raw.data(), reply.raw.size())) break;
    bool failed = false;
    for (const std::string& piece : reply.pieces) {
      sleep_ms(reply.piece_delay_ms);
      if (!SendAll(fd, piece.data(), piece.size())) {
        failed = true;
        break;
      }
    }
    if (failed) break;
    if (reply.close_after) break;
  }
  ::shutdown(fd, SHUT_RDWR);
}

// ---- RawClient -------------------------------------------------------------------------------

RawClient::RawClient(uint16_t port, int timeout_ms) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

RawClient::~RawClient() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawClient::Send(const std::string& data) { return fd_ >= 0 && SendAll(fd_, data.data(), data.size()); }

void RawClient::ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

bool RawClient::Fill() {
  char chunk[65536];
  const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
  if (n <= 0) return false;
  buffer_.append(chunk, static_cast<size_t>(n));
  return true;
}

ClientResponse RawClient::ReadResponse(bool head_request) {
  ClientResponse response;
  Reader reader(fd_, &buffer_, [this] { return Fill(); });
  while (true) {
    std::string head;
    if (!reader.ReadHead(&head)) return response;
    std::string status_line;
    response.headers.clear();
    ParseHeaderLines(head, &status_line, &response.headers);
    std::vector<std::string> parts = absl::StrSplit(status_line, absl::MaxSplits(' ', 2));
    if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &response.status)) return response;
    if (response.status >= 100 && response.status < 200) continue;  // interim
    break;
  }
  if (head_request || response.status == 204 || response.status == 304) {
    response.ok = true;
    return response;
  }
  if (absl::EqualsIgnoreCase(response.Header("transfer-encoding"), "chunked")) {
    response.chunked = true;
    response.ok = reader.ReadChunked(&response.body);
  } else if (std::string cl = response.Header("content-length"); cl != "<absent>") {
    size_t n = 0;
    response.ok = absl::SimpleAtoi(cl, &n) && reader.ReadExact(n, &response.body);
  } else {
    reader.ReadToEnd(&response.body);
    response.ok = true;
  }
  return response;
}

bool RawClient::WaitClosed() {
  char chunk[4096];
  while (true) {
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

bool RawClient::WaitCleanEof() {
  if (!buffer_.empty()) return false;
  char chunk[4096];
  return ::recv(fd_, chunk, sizeof(chunk), 0) == 0;
}

bool RawClient::PeerSocketGone() {
  if (!Send("x")) return true;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the RST needs one loopback trip
  return !Send("x");
}

// ---- config builders -------------------------------------------------------------------------

std::string Uuid(int n) { return absl::StrFormat("00000000-0000-4000-8000-%012d", n); }

config::v1::Service MakeService(int n, const std::string& host, uint16_t port, const std::string& path) {
  config::v1::Service service;
  service.set_id(Uuid(n));
  service.set_name(absl::StrCat("service-", n));
  service.set_protocol("http");
  service.set_host(host);
  service.set_port(port);
  if (!path.empty()) service.set_path(path);
  service.set_retries(0);
  service.set_connect_timeout(5000);
  service.set_write_timeout(5000);
  service.set_read_timeout(5000);
  service.set_enabled(true);
  return service;
}

config::v1::Route MakeRoute(int n, const std::vector<std::string>& paths, const std::string& service_id,
                            bool strip_path) {
  config::v1::Route route;
  route.set_id(Uuid(n));
  route.set_name(absl::StrCat("route-", n));
  route.add_protocols("http");
  route.add_protocols("https");
  for (const std::string& path : paths) route.mutable_paths()->add_values(path);
  if (!service_id.empty()) route.set_service_id(service_id);
  route.set_strip_path(strip_path);
  route.set_path_handling("v0");
  return route;
}

}  // namespace portico::proxy::testing
