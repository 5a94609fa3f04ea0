#pragma once
// A loopback HTTP/1.1 collector for tests of senders (http-log, OTLP): one request per
// connection, answered with `status` (settable) and `Connection: close`; keeps each request's
// head and body (Content-Length framing). Stop() closes the listener: connections are refused
// from then on. Header-only, like the other helpers here.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace portico::test_support {

class HttpCollector {
 public:
  HttpCollector() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 64);
    thread_ = std::thread([this] { Loop(); });
  }
  ~HttpCollector() { Stop(); }
  HttpCollector(const HttpCollector&) = delete;
  HttpCollector& operator=(const HttpCollector&) = delete;

  void Stop() {
    if (stop_.exchange(true)) return;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  void set_status(int status) { status_ = status; }
  std::vector<std::string> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  std::vector<std::string> heads() {
    std::lock_guard<std::mutex> lock(mu_);
    return heads_;
  }
  size_t requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_.size();
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd listening{fd_, POLLIN, 0};
      if (::poll(&listening, 1, 20) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string data;
      char buf[65536];
      size_t body_at = std::string::npos;
      size_t length = 0;
      while (true) {
        pollfd readable{c, POLLIN, 0};
        if (::poll(&readable, 1, 2000) <= 0) break;
        const ssize_t n = ::read(c, buf, sizeof(buf));
        if (n <= 0) break;
        data.append(buf, static_cast<size_t>(n));
        if (body_at == std::string::npos && (body_at = data.find("\r\n\r\n")) != std::string::npos) {
          body_at += 4;
          const size_t cl = data.find("Content-Length: ");
          if (cl != std::string::npos) {
            (void)absl::SimpleAtoi(data.substr(cl + 16, data.find("\r\n", cl) - cl - 16), &length);
          }
        }
        if (body_at != std::string::npos && data.size() >= body_at + length) break;
      }
      if (body_at != std::string::npos) {
        std::lock_guard<std::mutex> lock(mu_);
        heads_.push_back(data.substr(0, body_at));
        bodies_.push_back(data.substr(body_at, length));
      }
      const std::string answer =
          absl::StrCat("HTTP/1.1 ", status_.load(), " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      (void)!::write(c, answer.data(), answer.size());
      ::close(c);
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> status_{200};
  std::mutex mu_;
  std::vector<std::string> heads_;
  std::vector<std::string> bodies_;
  std::thread thread_;
};

}  // namespace portico::test_support
