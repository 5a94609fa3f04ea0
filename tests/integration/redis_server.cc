#include "tests/integration/redis_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace portico::testing {
namespace {

std::string FindRedisServer() {
  if (const char* path = std::getenv("PORTICO_REDIS_SERVER")) return path;
  for (const char* path : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "";
}

}  // namespace

RedisServer::RedisServer() : port_(PickFreePort()) {}

RedisServer::~RedisServer() { Kill(); }

bool RedisServer::Start() {
  const std::string binary = FindRedisServer();
  if (binary.empty()) {
    error_ = "redis-server not found: install Debian's redis-server (deploy/install-deps.sh) or set "
             "PORTICO_REDIS_SERVER";
    return false;
  }
  process_ = std::make_unique<Process>(
      "redis-server",
      std::vector<std::string>{binary, "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", dir_.path(), "--daemonize", "no"},
      dir_.path() + "/redis.log");
  if (WaitFor([this] { return absl::StartsWith(Command("PING"), "+PONG"); }, std::chrono::seconds(10))) {
    return true;
  }
  error_ = absl::StrCat("redis-server did not answer on port ", port_, ": ", process_->Log());
  Kill();
  return false;
}

void RedisServer::Kill() {
  if (process_ == nullptr) return;
  process_->Stop(9);
  process_.reset();
}

std::string RedisServer::Command(const std::string& inline_command) const {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port_);
  std::string reply;
  const std::string line = inline_command + "\r\n";
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size())) {
    // One reply: read until a pause (a simple reply fits one segment on loopback).
    pollfd p{fd, POLLIN, 0};
    char buf[4096];
    int wait_ms = 2000;
    while (poll(&p, 1, wait_ms) > 0) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
      wait_ms = 20;
    }
  }
  close(fd);
  return reply;
}

}  // namespace portico::testing
