#include "tests/common/http_wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace portico::test_support {
namespace {

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  return address;
}

uint16_t BoundPort(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// "name: value" appended to `headers`; false (nothing appended) without a colon.
bool AddHeaderLine(absl::string_view line, HeaderList* headers) {
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return false;
  headers->emplace_back(std::string(line.substr(0, colon)),
                        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  return true;
}

// "HTTP/1.1 <3 digits>" followed by the end or a space and a reason.
bool ParseStatusLine(absl::string_view line, int* status) {
  if (!absl::StartsWith(line, "HTTP/1.1 ") || line.size() < 12) return false;
  if (line.size() > 12 && line[12] != ' ') return false;
  const absl::string_view digits = line.substr(9, 3);
  if (!std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit)) return false;
  return absl::SimpleAtoi(digits, status);
}

// Why a read came short, for HttpReply::error.
std::string Why(const SocketReader& reader, absl::string_view where) {
  if (reader.timed_out()) return absl::StrCat("timed out ", where);
  if (reader.closed()) return absl::StrCat("connection closed ", where);
  return absl::StrCat("stopped ", where);
}

bool IsChunked(const HttpMessage& message) {
  const std::string* te = FindHeader(message.headers, "transfer-encoding");
  return te != nullptr && absl::EqualsIgnoreCase(*te, "chunked");
}

// The body of a message whose head has been read: chunked, Content-Length or (for responses
// only, `to_eof`) up to EOF. Without any, `to_eof` false: no body.
bool ReadBody(SocketReader& reader, bool to_eof, HttpMessage* message, std::string* error) {
  if (IsChunked(*message)) {
    message->chunked = true;
    if (reader.ReadChunked(&message->body)) return true;
    *error = reader.closed() || reader.timed_out() ? Why(reader, "in the chunked body") : "bad chunked framing";
    return false;
  }
  if (const std::string* length = FindHeader(message->headers, "content-length"); length != nullptr) {
    size_t n = 0;
    if (!absl::SimpleAtoi(*length, &n)) {
      *error = absl::StrCat("bad Content-Length: ", *length);
      return false;
    }
    if (reader.ReadExact(n, &message->body)) return true;
    *error = Why(reader, "in the body");
    return false;
  }
  if (!to_eof || reader.ReadToEof(&message->body)) return true;
  *error = Why(reader, "before the end of a read-until-close body");
  return false;
}

int ConnectLoopback(uint16_t port, int timeout_ms, int* error) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = errno;
    return -1;
  }
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const sockaddr_in address = Loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    *error = errno;
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool ParseHeaderLines(absl::string_view head, std::string* first_line, HeaderList* headers) {
  bool ok = true;
  bool first = true;
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    if (first) {
      *first_line = std::string(line);
      first = false;
    } else if (!AddHeaderLine(line, headers)) {
      ok = false;
    }
  }
  return ok;
}

const std::string* FindHeader(const HeaderList& headers, absl::string_view name) {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, name)) return &v;
  }
  return nullptr;
}

std::string HttpMessage::Header(absl::string_view name) const {
  const std::string* value = FindHeader(headers, name);
  return value != nullptr ? *value : "<absent>";
}

bool HttpMessage::HasHeader(absl::string_view name) const { return FindHeader(headers, name) != nullptr; }

size_t HttpMessage::HeaderCount(absl::string_view name) const {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(),
                                           [&](const auto& h) { return absl::EqualsIgnoreCase(h.first, name); }));
}

// ---- SocketReader ----------------------------------------------------------------------------

bool SocketReader::WaitReadable() {
  if (stop_ == nullptr && !deadline_) return true;  // the socket's own timeout bounds the read
  while (true) {
    if (stop_ != nullptr && stop_->load()) return false;
    int wait_ms = stop_ != nullptr ? 20 : -1;
    if (deadline_) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        timed_out_ = true;
        return false;
      }
      const int left_ms = static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
      wait_ms = wait_ms < 0 ? left_ms : std::min(wait_ms, left_ms);
    }
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, wait_ms);
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) {
      closed_ = true;
      return false;
    }
  }
}

bool SocketReader::Fill() {
  if (!WaitReadable()) return false;
  char chunk[65536];
  while (true) {
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      timed_out_ = true;
    } else {
      closed_ = true;
    }
    return false;
  }
}

bool SocketReader::ReadUntil(absl::string_view delimiter, std::string* out) {
  size_t end;
  while ((end = buffer_.find(delimiter.data(), 0, delimiter.size())) == std::string::npos) {
    if (!Fill()) return false;
  }
  out->assign(buffer_, 0, end);
  buffer_.erase(0, end + delimiter.size());
  return true;
}

bool SocketReader::ReadHead(std::string* head) { return ReadUntil("\r\n\r\n", head); }

bool SocketReader::ReadLine(std::string* line) { return ReadUntil("\r\n", line); }

bool SocketReader::ReadExact(size_t n, std::string* out) {
  while (buffer_.size() < n) {
    if (!Fill()) return false;
  }
  out->append(buffer_.data(), n);
  buffer_.erase(0, n);
  return true;
}

bool SocketReader::ReadChunked(std::string* out, HeaderList* trailers) {
  while (true) {
    std::string size_line;
    if (!ReadLine(&size_line)) return false;
    size_t size = 0;
    const absl::string_view digits = absl::string_view(size_line).substr(0, size_line.find(';'));
    if (!absl::SimpleHexAtoi(digits, &size)) return false;
    if (size == 0) break;
    std::string crlf;
    if (!ReadExact(size, out) || !ReadLine(&crlf) || !crlf.empty()) return false;
  }
  std::string trailer;
  while (true) {
    if (!ReadLine(&trailer)) return false;
    if (trailer.empty()) return true;
    if (trailers != nullptr) AddHeaderLine(trailer, trailers);
  }
}

bool SocketReader::ReadToEof(std::string* out) {
  while (Fill()) {
  }
  out->append(buffer_);
  buffer_.clear();
  return closed_;
}

// ---- reading messages ------------------------------------------------------------------------

HttpReply ReadResponse(SocketReader& reader, bool head_request) {
  HttpReply reply;
  std::string error;
  while (error.empty()) {
    std::string head;
    if (!reader.ReadHead(&head)) {
      error = Why(reader, reader.buffer().empty() ? "before a response" : "in the head");
      break;
    }
    std::string status_line;
    reply.headers.clear();
    if (!ParseHeaderLines(head, &status_line, &reply.headers)) {
      error = absl::StrCat("a header line without a colon in: ", head);
    } else if (!ParseStatusLine(status_line, &reply.status)) {
      error = absl::StrCat("bad status line: ", status_line);
    } else if (reply.status >= 200) {
      break;
    }
    // 1xx: an interim response; the final one follows.
  }
  if (error.empty()) {
    const bool no_body = head_request || reply.status == 204 || reply.status == 304;
    reply.ok = no_body || ReadBody(reader, /*to_eof=*/true, &reply, &error);
  }
  reply.error = std::move(error);
  reply.peer_closed = reader.closed();
  return reply;
}

bool ReadRequest(SocketReader& reader, WireRequest* request) {
  std::string head;
  if (!reader.ReadHead(&head)) return false;
  std::string request_line;
  ParseHeaderLines(head, &request_line, &request->headers);
  const size_t first = request_line.find(' ');
  const size_t last = request_line.rfind(' ');
  if (first != std::string::npos && last != first) {
    request->method = request_line.substr(0, first);
    request->target = request_line.substr(first + 1, last - first - 1);
    request->version = request_line.substr(last + 1);
  }
  std::string error;
  return ReadBody(reader, /*to_eof=*/false, request, &error);
}

// ---- RawHttpClient ---------------------------------------------------------------------------

RawHttpClient::RawHttpClient(uint16_t port, int timeout_ms)
    : fd_(ConnectLoopback(port, timeout_ms, &connect_error_)), reader_(fd_) {}

RawHttpClient::~RawHttpClient() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawHttpClient::Send(absl::string_view data) { return fd_ >= 0 && SendAll(fd_, data); }

void RawHttpClient::ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

void RawHttpClient::Reset() {
  if (fd_ < 0) return;
  const linger abort_on_close{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close));
  ::close(fd_);
  fd_ = -1;
}

HttpReply RawHttpClient::ReadResponse(bool head_request) { return test_support::ReadResponse(reader_, head_request); }

bool RawHttpClient::ReadsEof() {
  if (!reader_.buffer().empty()) return false;
  char c;
  const ssize_t n = ::recv(fd_, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

bool RawHttpClient::WaitCleanEof() {
  if (!reader_.buffer().empty()) return false;
  char chunk[4096];
  return ::recv(fd_, chunk, sizeof(chunk), 0) == 0;
}

bool RawHttpClient::WaitClosed() {
  char chunk[4096];
  while (true) {
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

bool RawHttpClient::ClosedWithin(std::chrono::milliseconds quiet) {
  while (true) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(quiet.count())) <= 0) return false;
    if (!reader_.Fill()) return reader_.closed();
  }
}

bool RawHttpClient::PeerSocketGone() {
  if (!Send("x")) return true;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the RST needs one loopback trip
  return !Send("x");
}

HttpReply RawHttp(uint16_t port, absl::string_view request, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  RawHttpClient client(port, static_cast<int>(timeout.count()));
  HttpReply reply;
  if (!client.connected()) {
    reply.error = absl::StrCat("connect to 127.0.0.1:", port, " failed: ", std::strerror(client.connect_error()));
    return reply;
  }
  if (!client.Send(request)) {
    reply.error = "send failed";
    return reply;
  }
  client.set_deadline(deadline);
  return client.ReadResponse();
}

// ---- listening sockets -----------------------------------------------------------------------

int ListenOnLoopback(uint16_t port, int backlog, uint16_t* bound_port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (port != 0) {
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  }
  const sockaddr_in address = Loopback(port);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 || ::listen(fd, backlog) != 0) {
    const int error = errno;
    ::close(fd);
    errno = error;
    return -1;
  }
  *bound_port = BoundPort(fd);
  return fd;
}

uint16_t ClosedLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in address = Loopback(0);
  ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const uint16_t port = BoundPort(fd);
  ::close(fd);
  return port;
}

}  // namespace portico::test_support
