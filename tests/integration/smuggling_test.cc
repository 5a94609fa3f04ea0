// The smuggling matrix (issue 9): malformed and ambiguous requests sent through a real DP (synced
// from a real CP) to a logging upstream. Each row states what the client gets (status, and
// whether the connection closes) and exactly which bytes the upstream received. The policy for
// every row is written in docs/proxy.md, "Request framing policy".
//
// The upstream answers every request with `Connection: close`, so each request it sees arrives
// on a connection of its own, and it logs every byte until the proxy closes that connection: a
// smuggled second request would show up in the log after the first.
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/common/http_wire.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

// Sends everything it reads on each connection to a log (per connection, in accept order) and
// answers each complete request with a short response and `Connection: close`.
class LoggingUpstream {
 public:
  LoggingUpstream() {
    listen_fd_ = test_support::ListenOnLoopback(0, 64, &port_);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~LoggingUpstream() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    acceptor_.join();
    for (std::thread& t : workers_) t.join();
  }
  uint16_t port() const { return port_; }

  // Waits until every accepted connection saw EOF (bounded), then returns the log since Clear():
  // each connection's bytes, in accept order.
  std::string TakeLog(std::chrono::milliseconds wait = std::chrono::seconds(5)) {
    const auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until && open_.load() > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::lock_guard<std::mutex> lock(mu_);
    std::string all;
    for (const std::string& connection : log_) all += connection;
    log_.clear();
    return all;
  }
  int open_connections() const { return open_.load(); }

 private:
  void AcceptLoop() {
    while (!stop_) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stop_) return;
        continue;
      }
      size_t index;
      {
        std::lock_guard<std::mutex> lock(mu_);
        index = log_.size();
        log_.emplace_back();
      }
      ++open_;
      workers_.emplace_back([this, fd, index] { Serve(fd, index); });
    }
  }

  // Length of the first complete request in `in` (Content-Length or chunked), 0 if incomplete.
  static size_t CompleteRequest(const std::string& in) {
    const size_t head_end = in.find("\r\n\r\n");
    if (head_end == std::string::npos) return 0;
    const std::string head = absl::AsciiStrToLower(in.substr(0, head_end + 2));
    size_t at = head_end + 4;
    if (absl::StrContains(head, "\r\ntransfer-encoding: chunked\r\n")) {
      while (true) {
        const size_t line_end = in.find("\r\n", at);
        if (line_end == std::string::npos) return 0;
        size_t size = 0;
        if (!absl::SimpleHexAtoi(in.substr(at, line_end - at), &size)) return in.size();  // garbage: answer
        at = line_end + 2;
        if (size == 0) return in.size() >= at + 2 ? at + 2 : 0;
        at += size + 2;
        if (at > in.size()) return 0;
      }
    }
    const size_t cl = head.find("\r\ncontent-length: ");
    if (cl == std::string::npos) return at;
    size_t length = 0;
    const size_t value = cl + 18;
    absl::SimpleAtoi(head.substr(value, head.find("\r\n", value) - value), &length);
    return in.size() >= at + length ? at + length : 0;
  }

  void Serve(int fd, size_t index) {
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string pending;
    bool answered = false;
    char buffer[16384];
    while (true) {
      const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;  // EOF, error or 5 s of silence
      {
        std::lock_guard<std::mutex> lock(mu_);
        log_[index].append(buffer, static_cast<size_t>(n));
      }
      pending.append(buffer, static_cast<size_t>(n));
      if (!answered && CompleteRequest(pending) > 0) {
        answered = true;
        const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        test_support::SendAll(fd, response);
        ::shutdown(fd, SHUT_WR);  // keep reading: anything else the proxy sends is logged too
      }
    }
    ::close(fd);
    --open_;
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> open_{0};
  std::thread acceptor_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::vector<std::string> log_;  // guarded by mu_
};

struct ClientOutcome {
  int status = 0;        // 0: no complete response
  bool closed = false;   // the proxy closed the connection after the response
  std::string error;
};

// One request on a fresh connection; reads one response, then whether the proxy closes.
ClientOutcome SendRow(uint16_t port, const std::string& request) {
  ClientOutcome out;
  test_support::RawHttpClient client(port, 10000);
  if (!client.connected() || !client.Send(request)) {
    out.error = "connect/send failed";
    return out;
  }
  const test_support::HttpReply response = client.ReadResponse();
  if (!response.ok) {
    out.closed = response.peer_closed;
    out.error = absl::StrCat("no complete response (", response.error, "): ", client.leftover());
    return out;
  }
  out.status = response.status;
  // Closed: EOF within 300 ms (the proxy closes at once after these responses); open: nothing
  // else arrives meanwhile.
  out.closed = client.ClosedWithin(std::chrono::milliseconds(300));
  if (!client.leftover().empty()) out.error = absl::StrCat("bytes after the response: ", client.leftover());
  return out;
}

class SmugglingMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    const std::string base = absl::StrCat("http://127.0.0.1:", upstream_.port());
    Create("/services", {{"name", "catch"}, {"url", base}});
    Create("/services", {{"name", "public"}, {"url", base + "/pub"}});
    Create("/services", {{"name", "admin"}, {"url", base + "/adm"}});
    Create("/services/catch/routes", {{"name", "catch"}, {"paths", {"/"}}});
    Create("/services/public/routes", {{"name", "public"}, {"paths", {"/public"}}});
    Create("/services/admin/routes", {{"name", "admin"}, {"paths", {"/admin"}}});
    dp_ = &cluster_.StartDp();
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.Logs();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }

  void Create(const std::string& target, const nlohmann::json& body) {
    HttpResult r = cluster_.Admin("POST", target, body);
    ASSERT_EQ(r.status, 201) << target << " " << body.dump() << " -> " << r.body;
  }

  // The head the proxy forwards for a request to the catch-all route (service without a path).
  // `framing`: "" (no body), "cl:<n>" or "chunked".
  std::string Forwarded(const std::string& method, const std::string& path, const std::string& host,
                        const std::string& extra_headers = "", const std::string& framing = "",
                        const std::string& body = "") const {
    std::string out = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1:", upstream_.port(), "\r\n",
                                   extra_headers, "X-Real-IP: 127.0.0.1\r\nX-Forwarded-For: 127.0.0.1\r\n",
                                   "X-Forwarded-Proto: http\r\n");
    if (!host.empty()) absl::StrAppend(&out, "X-Forwarded-Host: ", host, "\r\n");
    absl::StrAppend(&out, "X-Forwarded-Port: ", dp_->proxy_port, "\r\n");
    if (framing == "chunked") absl::StrAppend(&out, "Transfer-Encoding: chunked\r\n");
    if (absl::StartsWith(framing, "cl:")) absl::StrAppend(&out, "Content-Length: ", framing.substr(3), "\r\n");
    return absl::StrCat(out, "\r\n", body);
  }

  LoggingUpstream upstream_;
  Cluster cluster_;
  DataPlane* dp_ = nullptr;
};

struct Row {
  std::string name;
  std::string request;
  int status;            // what the client gets
  bool closes;           // the proxy closes the connection after it
  std::string upstream;  // exactly what the upstream receives ("" = nothing)
};

TEST_F(SmugglingMatrixTest, EveryRowGetsItsAnswerAndTheUpstreamSeesExactlyItsBytes) {
  const std::string smuggled = "GET /POISON HTTP/1.1\r\nHost: internal\r\nX-Real-IP: 10.9.9.9\r\n\r\n";
  const std::vector<Row> rows = {
      // --- baseline
      {"plain GET", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 200, false, Forwarded("GET", "/x", "a")},
      {"sized body", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 200, false,
       Forwarded("POST", "/x", "a", "", "cl:5", "hello")},
      {"chunked body", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200,
       false, Forwarded("POST", "/x", "a", "", "chunked", "5\r\nhello\r\n0\r\n\r\n")},
      // --- Connection naming framing headers
      {"Connection: content-length",
       absl::StrCat("POST /x HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: ", smuggled.size(),
                    "\r\n\r\n", smuggled),
       200, false, Forwarded("POST", "/x", "a", "", absl::StrCat("cl:", smuggled.size()), smuggled)},
      {"Connection: transfer-encoding",
       "POST /x HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
       "3\r\nabc\r\n0\r\n\r\n",
       200, false, Forwarded("POST", "/x", "a", "", "chunked", "3\r\nabc\r\n0\r\n\r\n")},
      {"Connection: host, close", "GET /x HTTP/1.1\r\nHost: a\r\nConnection: host, close\r\n\r\n", 200, true,
       Forwarded("GET", "/x", "a")},
      {"Connection: x-keep removes only x-keep", "GET /x HTTP/1.1\r\nHost: a\r\nConnection: x-keep\r\nX-Keep: 1\r\nX-Other: 2\r\n\r\n",
       200, false, Forwarded("GET", "/x", "a", "X-Other: 2\r\n")},
      // --- Content-Length / Transfer-Encoding combinations
      {"CL then TE", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       400, true, ""},
      {"TE then CL", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
       400, true, ""},
      {"two equal CL", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400, true, ""},
      {"two different CL", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", 400, true,
       ""},
      {"CL list", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx", 400, true, ""},
      {"CL +1", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", 400, true, ""},
      {"CL -1", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nx", 400, true, ""},
      {"CL overflow", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\nx", 400, true, ""},
      {"CL leading zeros", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc", 200, false,
       Forwarded("POST", "/x", "a", "", "cl:3", "abc")},
      {"TE xchunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501, true, ""},
      {"TE identity", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\nabc", 501, true, ""},
      {"TE gzip, chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
       true, ""},
      {"TE chunked, identity", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
       400, true, ""},
      {"TE twice", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       400, true, ""},
      {"TE Chunked with blanks",
       "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n1\r\nz\r\n0\r\n\r\n", 200, false,
       Forwarded("POST", "/x", "a", "", "chunked", "1\r\nz\r\n0\r\n\r\n")},
      // --- obs-fold, bare CR/LF, NUL, bad names
      {"obs-fold", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", 400, true, ""},
      {"obs-fold hides TE", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400, true,
       ""},
      {"bare CR in value", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400, true, ""},
      {"bare LF line ends", "GET /x HTTP/1.1\nHost: a\n\n", 400, true, ""},
      {"NUL in value", std::string("GET /x HTTP/1.1\r\nHost: a\r\nX-A: a") + '\0' + "b\r\n\r\n", 400, true, ""},
      {"NUL in target", std::string("GET /x") + '\0' + "y HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, ""},
      {"space before colon", "GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400, true, ""},
      {"tab in target", "GET /x\ty HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, ""},
      // --- chunk edge cases
      {"chunk data without CRLF", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
       400, true, ""},
      {"chunk size with blank", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
       400, true, ""},
      {"chunk size overflow",
       "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n", 400,
       true, ""},
      {"chunk extension and trailer dropped",
       "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nA;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
       200, false, Forwarded("POST", "/x", "a", "", "chunked", "a\r\n0123456789\r\n0\r\n\r\n")},
      // --- fragments
      {"fragment to another route", "GET /public#/../admin HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, ""},
      {"fragment", "GET /x#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, ""},
      // --- absolute-form targets
      {"absolute-form: authority wins", "GET http://other.example:81/x?q HTTP/1.1\r\nHost: a\r\n\r\n", 200, false,
       Forwarded("GET", "/x?q", "other.example")},
      {"absolute-form without path", "GET http://other.example HTTP/1.1\r\nHost: a\r\n\r\n", 200, false,
       Forwarded("GET", "/", "other.example")},
      {"absolute-form with userinfo", "GET http://u@other.example/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, ""},
      {"absolute-form other scheme", "GET ftp://other.example/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, ""},
      {"absolute-form empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400, true, ""},
      // --- Host rules
      {"no Host on 1.1", "GET /x HTTP/1.1\r\n\r\n", 400, true, ""},
      {"two Host", "GET /x HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, true, ""},
      {"Host with a path", "GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, true, ""},
      {"Host with userinfo", "GET /x HTTP/1.1\r\nHost: user@a\r\n\r\n", 400, true, ""},
      {"Host with space", "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", 400, true, ""},
      {"Host port", "GET /x HTTP/1.1\r\nHost: a.example:8000\r\n\r\n", 200, false, Forwarded("GET", "/x", "a.example")},
      // --- HTTP versions
      {"HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", 200, true, Forwarded("GET", "/x", "")},
      {"HTTP/1.0 keep-alive", "GET /x HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", 200, false,
       Forwarded("GET", "/x", "a")},
      {"HTTP/1.0 with TE", "POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, true, ""},
      {"HTTP/2.0 request line", "GET /x HTTP/2.0\r\nHost: a\r\n\r\n", 505, true, ""},
      {"HTTP/0.9 request line", "GET /x HTTP/0.9\r\nHost: a\r\n\r\n", 505, true, ""},
      {"junk version", "GET /x HTTP/1.x\r\nHost: a\r\n\r\n", 400, true, ""},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    const ClientOutcome client = SendRow(dp_->proxy_port, row.request);
    EXPECT_EQ(client.error, "");
    EXPECT_EQ(client.status, row.status);
    EXPECT_EQ(client.closed, row.closes);
    EXPECT_EQ(upstream_.TakeLog(), row.upstream);
  }
  EXPECT_EQ(upstream_.open_connections(), 0);
}

}  // namespace
}  // namespace portico::testing
