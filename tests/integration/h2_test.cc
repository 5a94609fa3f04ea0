// HTTP/2 downstream, black box (issue 14): the real portico-cp and portico-dp, an HTTP/1.1 upstream
// that records every request it receives, and real clients started as processes: curl (h2c by
// prior knowledge, `Upgrade: h2c`, h2 over TLS through ALPN), h2load, and h2_client.py (raw frames
// and hpack from python3-h2, run with /usr/bin/python3) for what a conforming client never sends.
// Every client is bounded in time and stopped by PID. The policies these tests hold the DP to are
// in docs/protocols.md, "HTTP/2: tests".
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/http_wire.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// RFC 9113 §7 error codes.
constexpr int kNoError = 0x0;
constexpr int kProtocolError = 0x1;
constexpr int kFrameSizeError = 0x6;
constexpr int kRefusedStream = 0x7;
constexpr int kCompressionError = 0x9;

// An HTTP/1.1 keep-alive upstream that records every complete request it reads. It answers 200
// with `X-Upstream-Mixed: Mixed-Value` (a mixed-case name, to see HTTP/2 lower it) and, as body,
// the request's body for a request that has one, else "hello from upstream\n" (20 bytes; none
// for HEAD, with its Content-Length). Requests to /h2/slow... are answered after `slow_ms`.
class RecordingUpstream {
 public:
  RecordingUpstream() {
    listen_fd_ = test_support::ListenOnLoopback(0, 1024, &port_);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~RecordingUpstream() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    acceptor_.join();
    for (Worker& w : workers_) w.thread.join();
  }
  uint16_t port() const { return port_; }
  void set_slow_ms(int ms) { slow_ms_ = ms; }

  std::vector<test_support::WireRequest> Requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // Complete requests whose target starts with `prefix`.
  size_t CountFor(const std::string& prefix) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const auto& r : requests_) n += absl::StartsWith(r.target, prefix) ? 1 : 0;
    return n;
  }
  // The last complete request whose target starts with `prefix` (method empty if none).
  test_support::WireRequest Last(const std::string& prefix) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = requests_.rbegin(); it != requests_.rend(); ++it) {
      if (absl::StartsWith(it->target, prefix)) return *it;
    }
    return {};
  }

 private:
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  void AcceptLoop() {
    while (!stop_) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stop_) return;
        continue;
      }
      // Reap finished connection threads, so that connection churn does not pile them up.
      for (auto it = workers_.begin(); it != workers_.end();) {
        if (it->done) {
          it->thread.join();
          it = workers_.erase(it);
        } else {
          ++it;
        }
      }
      Worker& w = workers_.emplace_back();
      w.thread = std::thread([this, fd, &w] {
        Serve(fd);
        w.done = true;
      });
    }
  }

  void Serve(int fd) {
    test_support::SocketReader reader(fd, &stop_);
    while (!stop_) {
      test_support::WireRequest request;
      if (!test_support::ReadRequest(reader, &request)) break;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(request);
      }
      if (absl::StartsWith(request.target, "/h2/slow")) {
        for (int waited = 0; waited < slow_ms_ && !stop_; waited += 10) std::this_thread::sleep_for(10ms);
      }
      const bool has_body = !request.body.empty() || request.chunked || request.HasHeader("content-length");
      const std::string body = has_body ? request.body : "hello from upstream\n";
      std::string response = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n",
                                          "X-Upstream-Mixed: Mixed-Value\r\nContent-Length: ", body.size(), "\r\n\r\n");
      if (request.method != "HEAD") response += body;
      if (!test_support::SendAll(fd, response)) break;
    }
    ::close(fd);
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> slow_ms_{1000};
  std::thread acceptor_;
  std::list<Worker> workers_;  // touched by the acceptor thread only (and the destructor after it)
  std::mutex mu_;
  std::vector<test_support::WireRequest> requests_;  // guarded by mu_
};

struct ToolResult {
  int exit_code = -1;  // -1: killed (timed out) or signalled
  std::string output;  // stdout and stderr
};

// Runs `command` with /bin/sh (exec'd, so the process is the tool itself), `input_file` (if any) on
// its stdin; killed by PID after `timeout`.
ToolResult RunTool(const TempDir& tmp, const std::string& command, const std::string& input_file = "",
                   std::chrono::milliseconds timeout = 30s) {
  static int counter = 0;
  const std::string name = absl::StrCat("tool-", ++counter);
  Process p(name, {"/bin/sh", "-c", absl::StrCat("exec ", command, " < ", input_file.empty() ? "/dev/null" : input_file)},
            tmp.File(name + ".out"));
  const int status = p.Stop(0, timeout);  // signal 0: wait only (SIGKILL after the timeout)
  ToolResult result;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  result.output = p.Log();
  return result;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct CurlResult {
  int exit_code = -1;
  int status = 0;
  std::string version;  // curl's %{http_version}: "2", "1.1"
  std::string body;
  std::string headers;  // the response head(s) as curl dumped them (-D)
  std::string output;   // what curl printed (errors)
};

// The response headers of the last response in a curl -D dump, as (name, value) pairs, names as sent.
std::vector<std::pair<std::string, std::string>> LastHeaders(const std::string& dump) {
  std::vector<std::pair<std::string, std::string>> headers;
  for (absl::string_view line : absl::StrSplit(dump, "\r\n")) {
    if (absl::StartsWith(line, "HTTP/")) {
      headers.clear();
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    headers.emplace_back(std::string(line.substr(0, colon)),
                         std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  return headers;
}

const std::string* FindHeader(const std::vector<std::pair<std::string, std::string>>& headers, const std::string& name) {
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, name)) return &v;
  }
  return nullptr;
}

// 1 MiB of random bytes in a file; returns its contents.
std::string WriteRandomFile(const std::string& path, size_t size) {
  std::mt19937 rng(14);
  std::string data(size, '\0');
  for (char& c : data) c = static_cast<char>(rng() & 0xff);
  std::ofstream(path, std::ios::binary) << data;
  return data;
}

class H2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    DataPlaneOptions options;
    options.workers = 1;  // one loop: the rapid-reset client and the good one share it
    dp_ = &cluster_.StartDp(options);
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
    const std::string url = absl::StrCat("http://127.0.0.1:", upstream_.port());
    HttpResult service = cluster_.Admin("POST", "/services", {{"name", "up"}, {"url", url}});
    ASSERT_EQ(service.status, 201) << service.body;
    HttpResult route = cluster_.Admin("POST", "/services/up/routes", {{"name", "h2"}, {"paths", {"/h2"}},
                                                                      {"strip_path", false}});
    ASSERT_EQ(route.status, 201) << route.body;
    ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }

  // curl with `args` to `url`; the body and the response head go to files that are read back.
  CurlResult Curl(const std::string& args, const std::string& url, const std::string& input_file = "") {
    static int counter = 0;
    const std::string body_file = cluster_.tmp().File(absl::StrCat("curl-", ++counter, ".body"));
    const std::string head_file = body_file + ".head";
    const ToolResult tool =
        RunTool(cluster_.tmp(),
                absl::StrCat("curl -sS --max-time 20 -o ", body_file, " -D ", head_file,
                             " -w '%{http_code} %{http_version}' ", args, " '", url, "'"),
                input_file);
    CurlResult r;
    r.exit_code = tool.exit_code;
    r.output = tool.output;
    const size_t space = tool.output.rfind(' ');
    if (space != std::string::npos) {
      const size_t start = tool.output.find_last_of("\n", space);
      (void)absl::SimpleAtoi(tool.output.substr(start == std::string::npos ? 0 : start + 1,
                                                space - (start == std::string::npos ? 0 : start + 1)),
                             &r.status);
      r.version = tool.output.substr(space + 1);
    }
    r.body = ReadFile(body_file);
    r.headers = ReadFile(head_file);
    return r;
  }
  std::string CleartextUrl(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", dp_->proxy_port, path);
  }
  std::string TlsUrl(const std::string& path) const {
    return absl::StrCat("https://127.0.0.1:", dp_->proxy_ssl_port, path);
  }

  // h2_client.py PORT SCENARIO ARGS...: its JSON report (null, and a test failure, if none).
  json H2Client(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) {
    static int counter = 0;
    std::vector<std::string> argv{"/usr/bin/python3", PORTICO_H2_CLIENT_PY, std::to_string(dp_->proxy_port)};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string name = absl::StrCat("h2_client-", ++counter);
    Process p(name, argv, cluster_.tmp().File(name + ".log"));
    const int status = p.Stop(0, timeout);
    const std::string log = p.Log();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << absl::StrJoin(args, " ") << ": " << log;
    const size_t start = log.rfind("\n{");
    json report = json::parse(log.substr(start == std::string::npos ? 0 : start + 1), nullptr, false);
    EXPECT_TRUE(report.is_object()) << absl::StrJoin(args, " ") << ": " << log;
    if (!report.is_object()) return nullptr;
    EXPECT_FALSE(report.contains("error")) << absl::StrJoin(args, " ") << ": " << log;
    return report;
  }

  // The DP still runs and serves a GET on a new HTTP/2 connection.
  void ExpectStillServing() {
    EXPECT_TRUE(dp_->process->Running()) << "the DP exited";
    const json again = H2Client({"get", "/h2/after"});
    ASSERT_TRUE(again.is_object());
    const json* response = FindEvent(again, "response", 1);
    ASSERT_NE(response, nullptr) << again.dump();
    EXPECT_EQ((*response)["status"], 200) << again.dump();
  }

  static const json* FindEvent(const json& report, const std::string& type, int stream = -1) {
    if (!report.is_object() || !report.contains("events")) return nullptr;
    for (const json& e : report["events"]) {
      if (e["type"] == type && (stream < 0 || (e.contains("stream") && e["stream"] == stream))) return &e;
    }
    return nullptr;
  }

  // GET, POST (small and 1 MiB, echoed byte for byte), a body of unknown length (sent chunked to the
  // HTTP/1.1 upstream) and HEAD, over one HTTP/2 flavour of curl.
  void CheckCurlExchanges(const std::string& curl_args, bool tls, bool expect_h2_for_bodies) {
    const auto url = [&](const std::string& path) { return tls ? TlsUrl(path) : CleartextUrl(path); };
    const std::string tmp_file = cluster_.tmp().File("big.bin");
    RecordingUpstream& upstream = upstream_;
    const CurlResult get = Curl(curl_args, url("/h2/get?q=1"));
    ASSERT_EQ(get.exit_code, 0) << get.output;
    EXPECT_EQ(get.status, 200) << get.output;
    EXPECT_EQ(get.version, "2") << get.output << get.headers;
    EXPECT_EQ(get.body, "hello from upstream\n");
    const auto get_headers = LastHeaders(get.headers);
    const std::string* mixed = FindHeader(get_headers, "x-upstream-mixed");
    ASSERT_NE(mixed, nullptr) << get.headers;
    EXPECT_EQ(*mixed, "Mixed-Value");
    for (const auto& [name, value] : get_headers) {
      EXPECT_EQ(name, absl::AsciiStrToLower(name)) << "an HTTP/2 response header name with uppercase: " << get.headers;
    }
    const test_support::WireRequest seen = upstream.Last("/h2/get");
    EXPECT_EQ(seen.method, "GET");
    EXPECT_EQ(seen.target, "/h2/get?q=1");
    EXPECT_EQ(seen.version, "HTTP/1.1");
    EXPECT_FALSE(seen.HasHeader("content-length")) << "a GET without a body got framing";
    EXPECT_FALSE(seen.HasHeader("transfer-encoding")) << "a GET without a body got framing";

    const std::string small = Curl(curl_args + " --data-binary hello-h2", url("/h2/small")).body;
    EXPECT_EQ(small, "hello-h2");
    EXPECT_EQ(upstream.Last("/h2/small").method, "POST");

    const std::string big = WriteRandomFile(tmp_file, 1 << 20);
    const CurlResult post = Curl(absl::StrCat(curl_args, " --data-binary @", tmp_file, " -H 'Content-Type: application/octet-stream'"),
                                    url("/h2/post"));
    ASSERT_EQ(post.exit_code, 0) << post.output;
    EXPECT_EQ(post.status, 200) << post.output;
    if (expect_h2_for_bodies) {
      EXPECT_EQ(post.version, "2") << post.output;
    }
    EXPECT_EQ(post.body.size(), big.size());
    EXPECT_TRUE(post.body == big) << "the 1 MiB echo differs";
    const test_support::WireRequest posted = upstream.Last("/h2/post");
    EXPECT_EQ(posted.body.size(), big.size());
    EXPECT_TRUE(posted.body == big) << "the upstream got another body";

    // A body of unknown length (curl -T - from stdin: no content-length over HTTP/2) reaches the
    // HTTP/1.1 upstream chunked.
    const CurlResult put = Curl(curl_args + " -T -", url("/h2/put"), tmp_file);
    ASSERT_EQ(put.exit_code, 0) << put.output;
    EXPECT_EQ(put.status, 200) << put.output;
    EXPECT_TRUE(put.body == big) << "the streamed upload's echo differs (" << put.body.size() << " bytes)";
    const test_support::WireRequest streamed = upstream.Last("/h2/put");
    EXPECT_EQ(streamed.method, "PUT");
    if (expect_h2_for_bodies) {
      EXPECT_TRUE(streamed.chunked) << "no Transfer-Encoding: chunked for a body without content-length";
    }
    EXPECT_TRUE(streamed.body == big);

    const CurlResult head = Curl(curl_args + " -I", url("/h2/head"));
    ASSERT_EQ(head.exit_code, 0) << head.output;
    EXPECT_EQ(head.status, 200) << head.output;
    EXPECT_EQ(head.body, head.headers) << "curl -I writes the head as its output; anything after it is a body";
    const std::string* length = FindHeader(LastHeaders(head.headers), "content-length");
    ASSERT_NE(length, nullptr) << head.headers;
    EXPECT_EQ(*length, "20");
    EXPECT_EQ(upstream.Last("/h2/head").method, "HEAD");
  }

  RecordingUpstream upstream_;
  Cluster cluster_;
  DataPlane* dp_ = nullptr;
};

TEST_F(H2Test, CurlPriorKnowledgeGetPostHead) {
  CheckCurlExchanges("--http2-prior-knowledge", /*tls=*/false, /*expect_h2_for_bodies=*/true);
  EXPECT_EQ(upstream_.Last("/h2/get").Header("x-forwarded-proto"), "http");
}

TEST_F(H2Test, CurlOverTlsNegotiatesH2ThroughAlpn) {
  CheckCurlExchanges("-k --http2", /*tls=*/true, /*expect_h2_for_bodies=*/true);
  EXPECT_EQ(upstream_.Last("/h2/get").Header("x-forwarded-proto"), "https");
  // The negotiation itself: curl -v says which protocol ALPN picked.
  const ToolResult verbose = RunTool(cluster_.tmp(), absl::StrCat("curl -sk -v --http2 --max-time 10 -o /dev/null ",
                                                                  TlsUrl("/h2/alpn")));
  EXPECT_TRUE(absl::StrContains(verbose.output, "ALPN: server accepted h2")) << verbose.output;
}

TEST_F(H2Test, CurlUpgradeH2cOnTheCleartextListener) {
  // curl --http2 on http:// sends Upgrade: h2c with HTTP2-Settings; a GET is upgraded. A request
  // with a body may be answered over HTTP/1.1 instead (RFC 9113 leaves that to the server): its
  // echo is checked either way.
  CheckCurlExchanges("--http2", /*tls=*/false, /*expect_h2_for_bodies=*/false);
  // The upgrade's hop-by-hop headers stay on the client's hop.
  const test_support::WireRequest seen = upstream_.Last("/h2/get");
  ASSERT_EQ(seen.method, "GET");
  EXPECT_FALSE(seen.HasHeader("upgrade")) << seen.Header("upgrade");
  EXPECT_FALSE(seen.HasHeader("http2-settings")) << seen.Header("http2-settings");
  const std::string connection = absl::AsciiStrToLower(seen.Header("connection"));
  EXPECT_FALSE(absl::StrContains(connection, "upgrade")) << connection;
  EXPECT_FALSE(absl::StrContains(connection, "http2-settings")) << connection;
}

TEST_F(H2Test, Http2OffLeavesBothListenersOnHttp1) {
  DataPlaneOptions options;
  options.workers = 1;
  options.extra_args = {"--http2", "off"};
  options.log_name = "dp-http2-off.log";
  DataPlane& off = cluster_.StartDp(options);
  ASSERT_TRUE(off.started) << cluster_.Logs();
  ASSERT_TRUE(cluster_.WaitDpSynced(off)) << cluster_.DpStatus(off).dump();
  // ALPN offers h2 and http/1.1: the DP picks http/1.1.
  const CurlResult tls = Curl("-k --http2", absl::StrCat("https://127.0.0.1:", off.proxy_ssl_port, "/h2/off"));
  EXPECT_EQ(tls.status, 200) << tls.output;
  EXPECT_EQ(tls.version, "1.1") << tls.output;
  // Upgrade: h2c is ignored: the request is answered over HTTP/1.1.
  const CurlResult upgrade = Curl("--http2", absl::StrCat("http://127.0.0.1:", off.proxy_port, "/h2/off"));
  EXPECT_EQ(upgrade.status, 200) << upgrade.output;
  EXPECT_EQ(upgrade.version, "1.1") << upgrade.output;
  EXPECT_EQ(upstream_.CountFor("/h2/off"), 2u);
  for (const test_support::WireRequest& r : upstream_.Requests()) {
    EXPECT_FALSE(r.HasHeader("upgrade")) << r.target;
    EXPECT_FALSE(r.HasHeader("http2-settings")) << r.target;
  }
  // The connection preface is not HTTP/1.1: no response, and nothing forwarded.
  const CurlResult prior = Curl("--http2-prior-knowledge", absl::StrCat("http://127.0.0.1:", off.proxy_port, "/h2/off"));
  EXPECT_NE(prior.status, 200) << prior.output;
  EXPECT_EQ(upstream_.CountFor("/h2/off"), 2u);
}

TEST_F(H2Test, HopByHopHeadersDoNotReachTheUpstream) {
  // `te: trailers` is the one connection-specific field HTTP/2 allows; TE is hop-by-hop in HTTP/1.1.
  const json report = H2Client({"header", "/h2/te", "te", "trailers"});
  const json* response = FindEvent(report, "response", 1);
  ASSERT_NE(response, nullptr) << report.dump();
  EXPECT_EQ((*response)["status"], 200) << report.dump();
  const test_support::WireRequest seen = upstream_.Last("/h2/te");
  ASSERT_EQ(seen.method, "GET");
  EXPECT_FALSE(seen.HasHeader("te")) << seen.Header("te");
  EXPECT_EQ(seen.Header("host"), absl::StrCat("127.0.0.1:", upstream_.port()));
  EXPECT_EQ(seen.Header("x-forwarded-host"), "h2.test");  // from :authority
}

TEST_F(H2Test, H2loadManyStreamsAllSucceed) {
  const ToolResult h2load = RunTool(
      cluster_.tmp(), absl::StrCat("h2load -c4 -m10 -n2000 ", CleartextUrl("/h2/load")), "", 60s);
  ASSERT_EQ(h2load.exit_code, 0) << h2load.output;
  EXPECT_TRUE(absl::StrContains(h2load.output,
                                "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout"))
      << h2load.output;
  EXPECT_TRUE(absl::StrContains(h2load.output, "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx")) << h2load.output;
  EXPECT_EQ(upstream_.CountFor("/h2/load"), 2000u);
}

// Malformed input: what a client sends, and what RFC 9113 says the server answers.
struct MalformedCase {
  const char* name;
  std::vector<std::string> args;  // h2_client.py scenario and arguments
  // stream_error: a malformed request (§8.1.1): RST_STREAM(PROTOCOL_ERROR) on stream 1, no answer,
  // the connection stays (docs/protocols.md, "Limits and defences"). Otherwise a connection error:
  // GOAWAY with exactly `goaway_error`, then the close.
  bool stream_error;
  int goaway_error;
};

void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

class H2MalformedTest : public H2Test, public ::testing::WithParamInterface<MalformedCase> {};

TEST_P(H2MalformedTest, RefusedAsRfc9113SaysAndTheDpKeepsServing) {
  const MalformedCase& c = GetParam();
  const json report = H2Client(c.args);
  ASSERT_TRUE(report.is_object());
  const json* goaway = FindEvent(report, "goaway");
  const json* rst = FindEvent(report, "rst", 1);
  const json* response = FindEvent(report, "response", 1);
  if (c.stream_error) {
    ASSERT_NE(rst, nullptr) << report.dump();
    EXPECT_EQ((*rst)["error"], kProtocolError) << report.dump();
    EXPECT_EQ(response, nullptr) << report.dump();
    EXPECT_EQ(goaway, nullptr) << "a stream error, not a connection error: " << report.dump();
  } else {
    ASSERT_NE(goaway, nullptr) << report.dump();
    EXPECT_EQ((*goaway)["error"], c.goaway_error) << report.dump();
    EXPECT_TRUE(report["closed"].get<bool>()) << "the connection stayed open after GOAWAY: " << report.dump();
    EXPECT_EQ(response, nullptr) << report.dump();
  }
  // Nothing reached the upstream: neither the malformed request nor a piece of it.
  EXPECT_EQ(upstream_.CountFor("/h2/bad"), 0u);
  ExpectStillServing();
}

INSTANTIATE_TEST_SUITE_P(
    Rfc9113, H2MalformedTest,
    ::testing::Values(
        MalformedCase{"UppercaseHeaderName", {"header", "/h2/bad", "X-Upper", "v"}, true, 0},
        MalformedCase{"ConnectionHeader", {"header", "/h2/bad", "connection", "keep-alive"}, true, 0},
        MalformedCase{"KeepAliveHeader", {"header", "/h2/bad", "keep-alive", "timeout=5"}, true, 0},
        MalformedCase{"TransferEncodingHeader", {"header", "/h2/bad", "transfer-encoding", "chunked"}, true, 0},
        MalformedCase{"UpgradeHeader", {"header", "/h2/bad", "upgrade", "websocket"}, true, 0},
        MalformedCase{"TeOtherThanTrailers", {"header", "/h2/bad", "te", "gzip"}, true, 0},
        MalformedCase{"PseudoHeaderAfterRegular", {"pseudo_after_regular", "/h2/bad"}, true, 0},
        MalformedCase{"MissingPath", {"missing_path"}, true, 0},
        MalformedCase{"ContentLengthAboveData", {"content_length", "/h2/bad", "10", "5"}, true, 0},
        MalformedCase{"ContentLengthBelowData", {"content_length", "/h2/bad", "5", "10"}, true, 0},
        MalformedCase{"BadHpackBlock", {"bad_hpack"}, false, kCompressionError},
        MalformedCase{"FrameAboveMaxFrameSize", {"oversized_frame", "/h2/bad"}, false, kFrameSizeError},
        MalformedCase{"DataOnStreamZero", {"data_on_stream0"}, false, kProtocolError}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) { return std::string(info.param.name); });

TEST_F(H2Test, RapidResetIsCutOffWhileOthersKeepBeingServed) {
  // CVE-2023-44487: 20,000 streams, each opened and cancelled at once, on one connection, while a
  // well-behaved client on another connection (same worker) sends one GET after another.
  const json report = H2Client({"rapid_reset", "/h2/rr", "20000", "/h2/good"}, 90s);
  ASSERT_TRUE(report.is_object());
  const json* goaway = FindEvent(report, "goaway");
  ASSERT_NE(goaway, nullptr) << "the attacker was never told to go away: " << report.dump();
  EXPECT_NE((*goaway)["error"], kNoError) << report.dump();
  EXPECT_TRUE(report["closed"].get<bool>()) << report.dump();
  EXPECT_GT(report["good_ok"].get<int>(), 0) << report.dump();
  EXPECT_EQ(report["good_failed"].get<int>(), 0) << report.dump();
  // The attacker's requests that got through before the cut are far fewer than it sent.
  EXPECT_LT(upstream_.CountFor("/h2/rr"), 20000u);
  ExpectStillServing();
}

TEST_F(H2Test, StreamsAboveAnAcknowledgedConcurrencyLimitEndTheConnection) {
  // After the client acknowledged SETTINGS_MAX_CONCURRENT_STREAMS, nghttp2 1.52 treats a HEADERS
  // that exceeds it as a connection error (GOAWAY PROTOCOL_ERROR), where RFC 9113 §5.1.2 asks for
  // a stream error; docs/protocols.md says so. (Before the acknowledgement the extra streams get
  // RST_STREAM REFUSED_STREAM: Http2Test.StreamsAboveTheConcurrencyLimitAreRefused.)
  upstream_.set_slow_ms(1500);
  const json report = H2Client({"concurrent", "/h2/slow", "5"});
  ASSERT_TRUE(report.is_object());
  ASSERT_TRUE(report["max"].is_number()) << report.dump();
  EXPECT_EQ(report["max"].get<int>(), 128) << report.dump();
  const json* goaway = FindEvent(report, "goaway");
  ASSERT_NE(goaway, nullptr) << report.dump();
  EXPECT_EQ((*goaway)["error"], kProtocolError) << report.dump();
  // Never more than the limit reached the upstream, and the DP serves the next client.
  EXPECT_LE(upstream_.CountFor("/h2/slow"), 128u);
  ExpectStillServing();
}

TEST_F(H2Test, HeaderListAboveTheLimitIsAnswered431) {
  // About 100 KB of header fields (HEADERS + a few CONTINUATION frames): above the header list
  // limit (max_header_bytes, 64 KiB, counted as SETTINGS_MAX_HEADER_LIST_SIZE is): 431, the
  // request never starts, the connection stays usable.
  const json report = H2Client({"big_headers", "/h2/bad", "100000"});
  ASSERT_TRUE(report.is_object());
  EXPECT_GT(report["block_bytes"].get<int>(), 16384) << "not spread over CONTINUATION frames: " << report.dump();
  const json* response = FindEvent(report, "response", 1);
  ASSERT_NE(response, nullptr) << report.dump();
  EXPECT_EQ((*response)["status"], 431) << report.dump();
  EXPECT_EQ(FindEvent(report, "goaway"), nullptr) << report.dump();
  EXPECT_EQ(upstream_.CountFor("/h2/bad"), 0u);
  ExpectStillServing();
}

TEST_F(H2Test, ContinuationFloodGetsGoaway) {
  // CVE-2024-28182: a header block cut into many small CONTINUATION frames (40 KB in 500-byte
  // frames) is a connection error, whatever the header list's size.
  const json report = H2Client({"big_headers", "/h2/bad", "40000", "500"});
  ASSERT_TRUE(report.is_object());
  EXPECT_GT(report["frames"].get<int>(), 20) << report.dump();
  const json* goaway = FindEvent(report, "goaway");
  ASSERT_NE(goaway, nullptr) << report.dump();
  EXPECT_NE((*goaway)["error"], kNoError) << report.dump();
  EXPECT_TRUE(report["closed"].get<bool>()) << report.dump();
  EXPECT_EQ(upstream_.CountFor("/h2/bad"), 0u);
  ExpectStillServing();
}

TEST_F(H2Test, DrainSendsGoawayToOpenConnections) {
  const std::string ready = cluster_.tmp().File("drain.ready");
  std::vector<std::string> argv{"/usr/bin/python3", PORTICO_H2_CLIENT_PY, std::to_string(dp_->proxy_port), "drain",
                                "/h2/drain", ready};
  Process client("h2_client-drain", argv, cluster_.tmp().File("h2_client-drain.log"));
  ASSERT_TRUE(WaitFor([&] { return access(ready.c_str(), F_OK) == 0; }, 15s)) << client.Log();
  dp_->process->Signal(SIGTERM);
  const int status = client.Stop(0, 40s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << client.Log();
  const std::string log = client.Log();
  const size_t start = log.rfind("\n{");
  const json report = json::parse(log.substr(start == std::string::npos ? 0 : start + 1), nullptr, false);
  ASSERT_TRUE(report.is_object()) << log;
  const json* response = FindEvent(report, "response", 1);
  ASSERT_NE(response, nullptr) << report.dump();
  EXPECT_EQ((*response)["status"], 200);
  const json* goaway = FindEvent(report, "goaway");
  ASSERT_NE(goaway, nullptr) << "no GOAWAY on drain: " << report.dump();
  EXPECT_EQ((*goaway)["error"], kNoError) << report.dump();
  EXPECT_GE((*goaway)["last_stream"].get<int>(), 1) << "stream 1 was processed: " << report.dump();
  // Two steps (RFC 9113 §6.8): a notice with the largest stream id, then the final GOAWAY.
  std::vector<json> goaways;
  for (const json& e : report["events"]) {
    if (e["type"] == "goaway") goaways.push_back(e);
  }
  ASSERT_EQ(goaways.size(), 2u) << report.dump();
  EXPECT_EQ(goaways[0]["last_stream"], 2147483647) << report.dump();
  EXPECT_EQ(goaways[1]["last_stream"], 1) << report.dump();
  EXPECT_EQ(goaways[1]["error"], kNoError) << report.dump();
  EXPECT_TRUE(report["closed"].get<bool>()) << report.dump();
  const int dp_status = dp_->process->Stop(SIGTERM, 30s);
  EXPECT_TRUE(WIFEXITED(dp_status) && WEXITSTATUS(dp_status) == 0) << "the DP did not exit cleanly: " << dp_status;
}

}  // namespace
}  // namespace portico::testing
