#include "common/net/tcp_transport.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <string>

#include "absl/strings/match.h"

namespace portico {
namespace {

// Owns the bytes of one uv_write until its callback (only what uv_try_write left over).
struct WriteRequest {
  uv_write_t req;
  std::string data;
};

}  // namespace

std::string IpOf(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (address->sa_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(address), text, sizeof(text));
  } else if (address->sa_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(address), text, sizeof(text));
  }
  absl::string_view ip(text);
  if (absl::StartsWith(ip, "::ffff:") && ip.find('.') != absl::string_view::npos) ip.remove_prefix(7);
  return std::string(ip);
}

// libuv trampolines: recover the transport from handle->data / req->data, forward to its owner.
struct TcpTransport::Uv {
  static TcpTransport* Self(uv_handle_t* h) { return static_cast<TcpTransport*>(h->data); }
  static void Alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    TcpTransport* self = Self(h);
    *buf = uv_buf_init(self->read_buffer_, static_cast<unsigned int>(self->read_buffer_size_));
  }
  static void Read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    TcpTransport* self = Self(reinterpret_cast<uv_handle_t*>(s));
    if (nread == 0 || self->closing_) return;
    if (nread > 0) {
      self->callbacks_->OnTransportRead(absl::string_view(buf->base, static_cast<size_t>(nread)));
    } else if (nread == UV_EOF) {
      self->reading_ = false;  // libuv stops reading at EOF
      self->callbacks_->OnTransportEof();
    } else {
      self->callbacks_->OnTransportReadError(static_cast<int>(nread));
    }
  }
  static void Written(uv_write_t* req, int status) {
    auto* write = reinterpret_cast<WriteRequest*>(req);
    TcpTransport* self = Self(reinterpret_cast<uv_handle_t*>(req->handle));
    const size_t bytes = write->data.size();
    delete write;
    self->pending_write_bytes_ -= bytes;
    if (!self->closing_) self->callbacks_->OnTransportWritten(bytes, status);
  }
  static void Connected(uv_connect_t* req, int status) {
    TcpTransport* self = static_cast<TcpTransport*>(req->data);
    self->connect_req_.reset();
    if (!self->closing_) self->callbacks_->OnTransportConnected(status);
  }
  static void ShutdownDone(uv_shutdown_t* req, int status) {
    // Also called (UV_ECANCELED) from uv_close, before the close callback.
    TcpTransport* self = static_cast<TcpTransport*>(req->data);
    self->callbacks_->OnTransportShutdown(status);
  }
  static void Closed(uv_handle_t* h) {
    TcpTransport* self = Self(h);
    self->shutdown_req_.reset();
    self->connect_req_.reset();
    self->callbacks_->OnTransportClosed();  // may free the transport
  }
};

TcpTransport::TcpTransport(uv_loop_t* loop, char* read_buffer, size_t read_buffer_size,
                           TransportCallbacks* callbacks)
    : callbacks_(callbacks), read_buffer_(read_buffer), read_buffer_size_(read_buffer_size) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  initialised_ = true;
}

TcpTransport::~TcpTransport() {
  // The owner frees the transport only after OnTransportClosed (or the loop has ended).
  assert(!initialised_ || closing_ || uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp_)));
}

bool TcpTransport::Open(int fd) {
  if (uv_tcp_open(&tcp_, fd) != 0) {
    ::close(fd);  // not adopted
    return false;
  }
  return true;
}

bool TcpTransport::Accept(uv_stream_t* listener) { return uv_accept(listener, stream()) == 0; }

std::string TcpTransport::PeerIp() const {
  sockaddr_storage peer{};
  int length = sizeof(peer);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &length) != 0) return std::string();
  return IpOf(reinterpret_cast<const sockaddr*>(&peer));
}

int TcpTransport::Connect(const sockaddr* address) {
  connect_req_ = std::make_unique<uv_connect_t>();
  connect_req_->data = this;
  if (const int rc = uv_tcp_connect(connect_req_.get(), &tcp_, address, Uv::Connected); rc != 0) {
    connect_req_.reset();
    return rc;
  }
  return 0;
}

void TcpTransport::StartReading() {
  if (reading_ || closing_) return;
  reading_ = uv_read_start(stream(), Uv::Alloc, Uv::Read) == 0;
}

void TcpTransport::StopReading() {
  if (!reading_) return;
  uv_read_stop(stream());
  reading_ = false;
}

bool TcpTransport::Write(const absl::string_view* parts, size_t count) {
  assert(count <= kMaxWriteParts);
  if (closing_) return false;
  uv_buf_t bufs[kMaxWriteParts];
  size_t buf_count = 0;
  size_t total = 0;
  for (size_t i = 0; i < count && i < kMaxWriteParts; ++i) {
    if (parts[i].empty()) continue;
    bufs[buf_count++] = uv_buf_init(const_cast<char*>(parts[i].data()), static_cast<unsigned int>(parts[i].size()));
    total += parts[i].size();
  }
  if (total == 0) return true;
  // uv_try_write: no request, no write callback, no epoll_ctl when the kernel takes it all. It
  // refuses (UV_EAGAIN) while earlier uv_writes are queued, which keeps the byte order; its
  // errors resurface from uv_write below.
  const int tried = uv_try_write(stream(), bufs, static_cast<unsigned int>(buf_count));
  size_t skip = tried > 0 ? static_cast<size_t>(tried) : 0;
  if (skip >= total) return true;
  auto* write = new WriteRequest;
  write->data.reserve(total - skip);
  for (size_t i = 0; i < buf_count; ++i) {
    const size_t dropped = std::min(skip, bufs[i].len);
    skip -= dropped;
    write->data.append(bufs[i].base + dropped, bufs[i].len - dropped);
  }
  uv_buf_t buf = uv_buf_init(write->data.data(), static_cast<unsigned int>(write->data.size()));
  pending_write_bytes_ += write->data.size();
  if (uv_write(&write->req, stream(), &buf, 1, Uv::Written) != 0) {
    pending_write_bytes_ -= write->data.size();
    delete write;
    return false;
  }
  return true;
}

bool TcpTransport::Shutdown() {
  if (closing_ || shutdown_req_ != nullptr) return false;
  shutdown_req_ = std::make_unique<uv_shutdown_t>();
  shutdown_req_->data = this;
  return uv_shutdown(shutdown_req_.get(), stream(), Uv::ShutdownDone) == 0;
}

void TcpTransport::Close() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), Uv::Closed);
}

void TcpTransport::SetNoDelay() {
  if (nodelay_) return;
  uv_tcp_nodelay(&tcp_, 1);
  nodelay_ = true;
}

bool TcpTransport::PeerSilent() {
  uv_os_fd_t fd = -1;
  if (closing_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return false;
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

ssize_t TcpTransport::TryRead(char* buffer, size_t size) {
  uv_os_fd_t fd = -1;
  if (closing_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return UV_EBADF;
  ssize_t n;
  do {
    n = ::recv(fd, buffer, size, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n > 0) return n;
  if (n == 0) return UV_EOF;
  if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
  return uv_translate_sys_error(errno);
}

}  // namespace portico
