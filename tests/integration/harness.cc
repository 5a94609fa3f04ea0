#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>
#include <random>
#include <mutex>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/common/http_wire.h"

namespace portico::testing {

namespace {

// True if 127.0.0.1:port can be bound right now.
bool PortIsFree(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace

// Ports come from 20000-32767, below the kernel's ephemeral range (32768-60999 by default), so
// an outgoing connection (a load loop, the DP's upstream or CP connections) can never take a port
// between the moment it is picked and the moment the child process binds it. Random start per
// process and no port handed out twice in one process keep parallel tests apart.
uint16_t PickFreePort() {
  static std::mutex mu;
  static std::set<uint16_t> handed_out;
  static std::mt19937 rng(static_cast<uint32_t>(getpid()) * 2654435761u ^
                          static_cast<uint32_t>(time(nullptr)));
  constexpr uint16_t kLow = 20000, kCount = 12768;
  std::lock_guard<std::mutex> lock(mu);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const uint16_t port = static_cast<uint16_t>(kLow + rng() % kCount);
    if (handed_out.count(port) != 0 || !PortIsFree(port)) continue;
    handed_out.insert(port);
    return port;
  }
  return 0;
}

extern "C" char** environ;

Process::Process(std::string name, std::vector<std::string> argv, std::string log_file,
                 std::map<std::string, std::string> extra_env)
    : name_(std::move(name)), log_file_(std::move(log_file)) {
  // Everything the child needs is built before fork(): the test process has other threads, so
  // the child may only make async-signal-safe calls (no malloc) before execve.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    const std::string key = entry.substr(0, entry.find('='));
    if (extra_env.count(key) == 0) env_strings.push_back(std::move(entry));
  }
  for (const auto& [k, v] : extra_env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = getpid();

  pid_ = fork();
  if (pid_ == 0) {
    // Die with the test binary, even if it crashes or ctest kills it on a timeout. (Linux ties
    // this to the forking thread: create Process objects from a thread that outlives them.)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int fd = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
}

Process::~Process() {
  if (pid_ > 0 && !reaped_) Stop(SIGKILL, std::chrono::seconds(5));
}

bool Process::Running() {
  if (pid_ <= 0 || reaped_) return false;
  pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

void Process::Signal(int sig) {
  if (Running()) kill(pid_, sig);
}

int Process::Stop(int sig, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  if (reaped_) return status_;
  kill(pid_, sig);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, &status_, WNOHANG) == pid_) {
      reaped_ = true;
      return status_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status_, 0);
  reaped_ = true;
  return status_;
}

std::string Process::Log() const {
  std::ifstream in(log_file_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

HttpResult RawHttp(uint16_t port, const std::string& request, std::chrono::milliseconds timeout) {
  test_support::HttpReply reply = test_support::RawHttp(port, request, timeout);
  HttpResult result;
  result.ok = reply.ok;
  result.error = std::move(reply.error);
  result.status = reply.status;
  for (auto& [name, value] : reply.headers) result.headers[absl::AsciiStrToLower(name)] = std::move(value);
  result.body = std::move(reply.body);
  if (result.ok) {
    // Closed if the server says so or the socket read EOF while the response was read.
    auto conn = result.headers.find("connection");
    result.closed =
        reply.peer_closed || (conn != result.headers.end() && absl::AsciiStrToLower(conn->second) == "close");
  }
  return result;
}

HttpResult Http(uint16_t port, const std::string& method, const std::string& target,
                const std::string& body, const std::string& content_type,
                const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string req = absl::StrCat(method, " ", target, " HTTP/1.1\r\n");
  bool has_host = false;
  for (const auto& [k, v] : headers) {
    if (absl::AsciiStrToLower(k) == "host") has_host = true;
    absl::StrAppend(&req, k, ": ", v, "\r\n");
  }
  if (!has_host) absl::StrAppend(&req, "Host: 127.0.0.1:", port, "\r\n");
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    if (!content_type.empty()) absl::StrAppend(&req, "Content-Type: ", content_type, "\r\n");
    absl::StrAppend(&req, "Content-Length: ", body.size(), "\r\n");
  }
  absl::StrAppend(&req, "Connection: close\r\n\r\n", body);
  return RawHttp(port, req);
}

bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return predicate();
}

EchoUpstream::EchoUpstream(std::string name, uint16_t port) : name_(std::move(name)) {
  listen_fd_ = test_support::ListenOnLoopback(port, 128, &port_);
  if (listen_fd_ < 0) std::fprintf(stderr, "echo upstream: bind 127.0.0.1:%u: %s\n", port, strerror(errno));
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

EchoUpstream::EchoUpstream(std::string name, uint16_t port, const std::string& ip) : name_(std::move(name)) {
  const bool v6 = ip.find(':') != std::string::npos;
  listen_fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage address{};
  socklen_t length = v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (v6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&address);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    inet_pton(AF_INET6, ip.c_str(), &a6->sin6_addr);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&address);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &a4->sin_addr);
  }
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&address), length) != 0 ||
      ::listen(listen_fd_, 128) != 0) {
    std::fprintf(stderr, "echo upstream: bind %s:%u: %s\n", ip.c_str(), port, strerror(errno));
  }
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
  port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                   : reinterpret_cast<sockaddr_in*>(&address)->sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

EchoUpstream::~EchoUpstream() {
  stopping_ = true;
  shutdown(listen_fd_, SHUT_RDWR);
  close(listen_fd_);
  acceptor_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : conn_fds_) shutdown(fd, SHUT_RDWR);
  }
  for (Worker& w : workers_) w.thread.join();
}

void EchoUpstream::AcceptLoop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    int id = ++accepted_;
    std::lock_guard<std::mutex> lock(mu_);
    conn_fds_.push_back(fd);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (it->done) {
        it->thread.join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    Worker& worker = workers_.emplace_back();
    worker.thread = std::thread([this, fd, id, &worker] {
      Serve(fd, id);
      worker.done = true;
    });
  }
}

void EchoUpstream::Serve(int fd, int connection_id) {
  test_support::SocketReader reader(fd);  // blocking; the destructor shuts the socket down
  while (!stopping_) {
    test_support::WireRequest request;
    if (!test_support::ReadRequest(reader, &request)) break;
    nlohmann::json headers = nlohmann::json::object();
    bool close_after = false;
    for (const auto& [raw_name, value] : request.headers) {
      const std::string name = absl::AsciiStrToLower(raw_name);
      if (headers.contains(name)) {
        headers[name] = headers[name].get<std::string>() + ", " + value;
      } else {
        headers[name] = value;
      }
      if (name == "connection" && absl::AsciiStrToLower(value) == "close") close_after = true;
    }
    nlohmann::json j;
    j["method"] = request.method;
    j["target"] = request.target;
    j["headers"] = headers;
    j["body_len"] = request.body.size();
    if (request.body.size() <= 4096) j["body"] = request.body;
    j["connection_id"] = connection_id;
    std::string body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string resp = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
                                    "X-Upstream: ", name_, "\r\nContent-Length: ", body.size(),
                                    "\r\n\r\n", body);
    if (const int delay = delay_ms_.load(); delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    ++served_;
    if (!test_support::SendAll(fd, resp) || close_after) break;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    conn_fds_.erase(std::find(conn_fds_.begin(), conn_fds_.end(), fd));
  }
  close(fd);
}

}  // namespace portico::testing
