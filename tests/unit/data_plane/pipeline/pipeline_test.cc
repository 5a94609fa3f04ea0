// The request pipeline: step order, and steps that suspend, resume, get cancelled or answer
// locally, run inside a real ProxyServer (one worker) in front of a real upstream on loopback.
#include "data_plane/pipeline/pipeline.h"

#include <uv.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "data_plane/proxy/proxy_server.h"
#include "data_plane/proxy/runtime_config.h"
#include "gtest/gtest.h"
#include "tests/unit/data_plane/proxy/proxy_test_util.h"

namespace portico::dp {
namespace {

using dp::testing::ClientResponse;
using dp::testing::MakeRoute;
using dp::testing::MakeService;
using dp::testing::RawClient;
using dp::testing::ReceivedRequest;
using dp::testing::SimpleResponse;
using dp::testing::TestUpstream;
using dp::testing::UpstreamReply;

// Records the order it runs in.
class OrderStep final : public RequestStep {
 public:
  OrderStep(std::vector<int>* order, int id) : order_(order), id_(id) {}
  StepStatus OnRequest(RequestContext&) const override {
    order_->push_back(id_);
    return StepStatus::kContinue;
  }

 private:
  std::vector<int>* order_;
  int id_;
};

TEST(PipelineTest, StepsRunByPhaseThenInTheOrderAdded) {
  std::vector<int> order;
  Pipeline pipeline;
  pipeline.Add(Phase::kUpstream, std::make_shared<OrderStep>(&order, 5));
  pipeline.Add(Phase::kAccess, std::make_shared<OrderStep>(&order, 3));
  pipeline.Add(Phase::kRoute, std::make_shared<OrderStep>(&order, 1));
  pipeline.Add(Phase::kAccess, std::make_shared<OrderStep>(&order, 4));
  pipeline.Add(Phase::kRewrite, std::make_shared<OrderStep>(&order, 2));
  class Context final : public RequestContext {
   public:
    void Respond(const LocalResponse&) override {}
    void Resume(StepStatus) override {}
    bool ReadRequestBody() override { return true; }
  } context;
  for (const RequestStep* step : pipeline.request_steps()) step->OnRequest(context);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4, 5}));
}

// Suspends every request for `delay_ms` on a libuv timer of the worker's loop, then resumes it
// with kContinue (or answers 401 first, with `answer`). Counts what happens to it.
class TimerStep final : public RequestStep {
 public:
  struct Counters {
    std::atomic<int> suspended{0};
    std::atomic<int> resumed{0};
    std::atomic<int> cancelled{0};
  };
  TimerStep(Counters* counters, uint64_t delay_ms, bool answer)
      : counters_(counters), delay_ms_(delay_ms), answer_(answer) {}

  StepStatus OnRequest(RequestContext& request) const override {
    auto* pending = new Pending{this, &request, {}};
    uv_timer_init(request.loop, &pending->timer);
    pending->timer.data = pending;
    uv_timer_start(&pending->timer, &TimerStep::Fire, delay_ms_, 0);
    request.suspended_data = pending;
    ++counters_->suspended;
    return StepStatus::kSuspend;
  }

  void OnCancel(RequestContext& request) const override {
    auto* pending = static_cast<Pending*>(request.suspended_data);
    ++counters_->cancelled;
    uv_timer_stop(&pending->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&pending->timer), &TimerStep::Free);
  }

 private:
  struct Pending {
    const TimerStep* step;
    RequestContext* request;
    uv_timer_t timer;
  };
  static void Free(uv_handle_t* handle) { delete static_cast<Pending*>(handle->data); }
  static void Fire(uv_timer_t* timer) {
    auto* pending = static_cast<Pending*>(timer->data);
    const TimerStep* step = pending->step;
    RequestContext* request = pending->request;
    uv_close(reinterpret_cast<uv_handle_t*>(&pending->timer), &TimerStep::Free);
    ++step->counters_->resumed;
    if (step->answer_) {
      LocalResponse response;
      response.status = 401;
      response.message = "denied after a wait";
      request->Respond(response);
      request->Resume(StepStatus::kStop);
    } else {
      request->Resume(StepStatus::kContinue);
    }
  }

  Counters* counters_;
  uint64_t delay_ms_;
  bool answer_;
};

// Answers 403 at once.
class DenyStep final : public RequestStep {
 public:
  StepStatus OnRequest(RequestContext& request) const override {
    LocalResponse response;
    response.status = 403;
    response.message = "denied";
    response.headers.emplace_back("X-Denied-By", "deny-step");
    request.Respond(response);
    return StepStatus::kStop;
  }
};

// Needs the whole request body: replaces it with "<size>:<BODY UPPERCASED>" (unchanged when too
// large to hold). Counts its runs, and the bodies it saw whole or as too large.
class BodyStep final : public RequestStep {
 public:
  struct Counters {
    std::atomic<int> runs{0};
    std::atomic<int> whole{0};
    std::atomic<int> too_large{0};
    std::atomic<int> cancelled{0};
  };
  explicit BodyStep(Counters* counters) : counters_(counters) {}
  StepStatus OnRequest(RequestContext& request) const override {
    ++counters_->runs;
    if (!request.ReadRequestBody()) return StepStatus::kSuspend;
    if (request.request_body_too_large) {
      ++counters_->too_large;
      return StepStatus::kContinue;
    }
    ++counters_->whole;
    if (request.request_body.empty()) return StepStatus::kContinue;  // a request without a body
    request.upstream_body = absl::StrCat(request.request_body.size(), ":");
    for (char c : request.request_body) request.upstream_body.push_back(absl::ascii_toupper(c));
    request.upstream_body_set = true;
    return StepStatus::kContinue;
  }
  void OnCancel(RequestContext&) const override { ++counters_->cancelled; }

 private:
  Counters* counters_;
};

// Asks for the whole upstream response body when the upstream sent `X-Rewrite: yes`.
class HoldResponseStep final : public ResponseHeadStep {
 public:
  void OnResponseHead(RequestContext& request, int) const override {
    if (request.response_head != nullptr && request.response_head->Find("x-rewrite") != nullptr) {
      request.buffer_response_body = true;
    }
  }
};

// Wraps the held body: "[<status> <body>]"; counts its runs.
class WrapBodyStep final : public BufferedResponseBodyStep {
 public:
  explicit WrapBodyStep(std::atomic<int>* runs) : runs_(runs) {}
  void OnBufferedResponseBody(RequestContext& request, int status) const override {
    ++*runs_;
    request.response_body = absl::StrCat("[", status, " ", request.response_body, "]");
  }

 private:
  std::atomic<int>* runs_;
};

class PipelineProxyTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(dp::ProxyOptions().client_timeout_ms); }
  void Start(int64_t client_timeout_ms) {
    upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest& request) {
      UpstreamReply reply;
      if (request.target == "/rewrite") {  // chunked, for a step that holds the response
        reply.raw = "HTTP/1.1 201 Created\r\nX-Rewrite: yes\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
      } else if (request.target == "/hang") {
        reply.hang = true;
      } else if (request.target == "/cut") {  // the head and part of the body, then the connection ends
        reply.raw = "HTTP/1.1 200 X\r\nContent-Length: 100\r\n\r\npartial";
        reply.close_after = true;
      } else if (request.target == "/rewrite-big") {
        reply.raw = SimpleResponse(200, std::string(RequestContext::kMaxBufferedResponseBody + 100, 'b'),
                                   "X-Rewrite: yes\r\n");
      } else {
        reply.raw = SimpleResponse(200, absl::StrCat("saw ", request.target, " body ", request.body.size()));
      }
      return reply;
    });
    dp::ProxyOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 1;
    options.client_timeout_ms = client_timeout_ms;
    absl::StatusOr<std::unique_ptr<dp::ProxyServer>> started = dp::ProxyServer::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    proxy_ = std::move(*started);
  }

  // Service 1 at the upstream, route /r, plus `extensions`; `with_route` false publishes none.
  void Publish(const dp::PipelineExtensions& extensions, uint64_t version = 1, bool with_route = true) {
    auto set = std::make_shared<ConfigSet>();
    set->services.push_back(MakeService(1, "127.0.0.1", upstream_->port()));
    if (with_route) set->routes.push_back(MakeRoute(2, {"/r"}, dp::testing::Uuid(1)));
    ConfigVersion v;
    v.epoch = std::string(16, 'e');
    v.version = version;
    absl::StatusOr<std::shared_ptr<const dp::RuntimeConfig>> compiled =
        dp::RuntimeConfig::Compile(set, v, extensions);
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    proxy_->Publish(*compiled);
  }

  std::unique_ptr<TestUpstream> upstream_;  // declared first: outlives the proxy
  std::unique_ptr<dp::ProxyServer> proxy_;
};

TEST_F(PipelineProxyTest, SuspendedStepResumesOnTheWorkerLoopWithItsConfigPinned) {
  TimerStep::Counters counters;
  dp::PipelineExtensions extensions;
  extensions.request_steps.emplace_back(Phase::kAccess, std::make_shared<TimerStep>(&counters, 300, false));
  Publish(extensions);
  RawClient client(proxy_->port());
  // A body sent while the step waits is held back, then streamed once it resumes.
  ASSERT_TRUE(client.Send("POST /r/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"));
  for (int i = 0; i < 200 && counters.suspended.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(counters.suspended.load(), 1);
  // A new config without the route arrives while the request waits: the request keeps its own.
  Publish(dp::PipelineExtensions(), 2, /*with_route=*/false);
  ASSERT_TRUE(client.Send("hello"));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "saw /x body 5");
  EXPECT_EQ(counters.resumed.load(), 1);
  EXPECT_EQ(counters.cancelled.load(), 0);
  // The next request on the same connection sees the new config (no route: 404).
  ASSERT_TRUE(client.Send("GET /r/x HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_EQ(client.ReadResponse().status, 404);
}

TEST_F(PipelineProxyTest, ClientThatLeavesCancelsTheSuspendedStep) {
  TimerStep::Counters counters;
  dp::PipelineExtensions extensions;
  extensions.request_steps.emplace_back(Phase::kAccess, std::make_shared<TimerStep>(&counters, 10000, false));
  Publish(extensions);
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("GET /r/x HTTP/1.1\r\nHost: a\r\n\r\n"));
    for (int i = 0; i < 200 && counters.suspended.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_EQ(counters.suspended.load(), 1);
  }  // the client closes its socket
  for (int i = 0; i < 400 && counters.cancelled.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(counters.cancelled.load(), 1);
  EXPECT_EQ(counters.resumed.load(), 0);
  EXPECT_EQ(upstream_->accepted(), 0);
  proxy_->Stop();  // no timer left behind on the loop (the loop would not end, or would leak)
}

TEST_F(PipelineProxyTest, StepAnswersLocallyAndTheConnectionIsKept) {
  dp::PipelineExtensions extensions;
  extensions.request_steps.emplace_back(Phase::kAccess, std::make_shared<DenyStep>());
  Publish(extensions);
  RawClient client(proxy_->port());
  for (int i = 0; i < 2; ++i) {
    // The body of a refused request is read and discarded; the connection stays usable.
    ASSERT_TRUE(client.Send("POST /r/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_EQ(response.status, 403);
    EXPECT_EQ(response.body, R"({"message":"denied"})");
    EXPECT_EQ(response.Header("X-Denied-By"), "deny-step");
  }
  EXPECT_EQ(upstream_->accepted(), 0);
}

TEST_F(PipelineProxyTest, SuspendedStepAnswersLocallyWhenItResumes) {
  TimerStep::Counters counters;
  dp::PipelineExtensions extensions;
  extensions.request_steps.emplace_back(Phase::kAccess, std::make_shared<TimerStep>(&counters, 50, true));
  Publish(extensions);
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send("POST /r/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 401);
  EXPECT_EQ(response.body, R"({"message":"denied after a wait"})");
  ASSERT_TRUE(client.Send("GET /r/y HTTP/1.1\r\nHost: a\r\n\r\n"));  // same connection
  EXPECT_EQ(client.ReadResponse().status, 401);
  EXPECT_EQ(counters.resumed.load(), 2);
  EXPECT_EQ(upstream_->accepted(), 0);
}


dp::PipelineExtensions WithBodyStep(BodyStep::Counters* counters) {
  dp::PipelineExtensions extensions;
  extensions.request_steps.emplace_back(Phase::kAccess, std::make_shared<BodyStep>(counters));
  return extensions;
}

TEST_F(PipelineProxyTest, StepThatNeedsTheBodyRunsAgainWithItAndItsReplacementGoesUpstream) {
  BodyStep::Counters counters;
  Publish(WithBodyStep(&counters));
  RawClient client(proxy_->port());
  // The head first: the step waits (100 Continue answered), then the body arrives in two pieces.
  ASSERT_TRUE(client.Send("POST /r/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n"));
  EXPECT_FALSE(client.ClosedWithin(std::chrono::milliseconds(200)));
  EXPECT_EQ(client.leftover(), "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(counters.runs.load(), 1);
  ASSERT_TRUE(client.Send("hello"));
  ASSERT_TRUE(client.Send(" world"));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok) << response.error;
  EXPECT_EQ(response.body, "saw /x body 14");
  EXPECT_EQ(counters.runs.load(), 2);
  EXPECT_EQ(counters.whole.load(), 1);
  const std::vector<ReceivedRequest> received = upstream_->requests();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].body, "11:HELLO WORLD");
  EXPECT_EQ(received[0].Header("Content-Length"), "14");
  EXPECT_EQ(received[0].HeaderCount("Expect"), 0u);
  // The connection goes on: a request without a body is not held (no Content-Length invented).
  ASSERT_TRUE(client.Send("GET /r/y HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_EQ(client.ReadResponse().body, "saw /y body 0");
  EXPECT_EQ(counters.runs.load(), 3);
  ASSERT_EQ(upstream_->requests().size(), 2u);
  EXPECT_FALSE(upstream_->requests()[1].HasHeader("Content-Length"));
}

TEST_F(PipelineProxyTest, ChunkedBodyReadWholeGoesUpstreamWithAContentLength) {
  BodyStep::Counters counters;
  Publish(WithBodyStep(&counters));
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send("PUT /r/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok) << response.error;
  EXPECT_EQ(response.body, "saw /c body 9");
  const std::vector<ReceivedRequest> received = upstream_->requests();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_FALSE(received[0].chunked);
  EXPECT_EQ(received[0].body, "7:ABCDEFG");
  EXPECT_FALSE(received[0].HasHeader("Transfer-Encoding"));
}

TEST_F(PipelineProxyTest, BodyTooLargeToHoldStreamsUnchanged) {
  BodyStep::Counters counters;
  Publish(WithBodyStep(&counters));
  const size_t size = RequestContext::kMaxBufferedRequestBody + 70000;
  const std::string body(size, 'q');
  {  // chunked: found too large while it is read; what was read goes first, the rest follows
    RawClient client(proxy_->port());
    std::string request = "POST /r/big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (size_t at = 0; at < size; at += 65536) {
      const size_t n = std::min<size_t>(65536, size - at);
      absl::StrAppend(&request, absl::Hex(n), "\r\n", body.substr(at, n), "\r\n");
    }
    request += "0\r\n\r\n";
    ASSERT_TRUE(client.Send(request));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << response.error;
    EXPECT_EQ(response.body, absl::StrCat("saw /big body ", size));
  }
  {  // Content-Length over the limit: known at once, nothing is held
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(absl::StrCat("POST /r/big2 HTTP/1.1\r\nHost: a\r\nContent-Length: ", size, "\r\n\r\n")));
    ASSERT_TRUE(client.Send(body));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << response.error;
    EXPECT_EQ(response.body, absl::StrCat("saw /big2 body ", size));
  }
  EXPECT_EQ(counters.too_large.load(), 2);
  EXPECT_EQ(counters.whole.load(), 0);
  const std::vector<ReceivedRequest> received = upstream_->requests();
  ASSERT_EQ(received.size(), 2u);
  EXPECT_EQ(received[0].body, body);
  EXPECT_TRUE(received[0].chunked);
  EXPECT_EQ(received[1].body, body);
}

TEST_F(PipelineProxyTest, ClientThatLeavesWhileItsBodyIsAwaitedCancelsTheStep) {
  BodyStep::Counters counters;
  Publish(WithBodyStep(&counters));
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("POST /r/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"));
    for (int i = 0; i < 200 && counters.runs.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (int i = 0; i < 400 && counters.cancelled.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(counters.cancelled.load(), 1);
  EXPECT_EQ(counters.whole.load(), 0);
  EXPECT_EQ(upstream_->accepted(), 0);
}

// A client timeout of 300 ms.
class PipelineProxyShortTimeoutTest : public PipelineProxyTest {
 protected:
  void SetUp() override { Start(/*client_timeout_ms=*/300); }
};

TEST_F(PipelineProxyShortTimeoutTest, ClientThatStopsSendingItsBodyIsClosedAfterTheClientTimeout) {
  BodyStep::Counters counters;
  Publish(WithBodyStep(&counters));
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send("POST /r/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"));
  EXPECT_TRUE(client.WaitClosed());  // within the client's 5 s read timeout
  for (int i = 0; i < 400 && counters.cancelled.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(counters.cancelled.load(), 1);
  EXPECT_EQ(upstream_->accepted(), 0);
}

TEST_F(PipelineProxyTest, HeldResponseIsRewrittenAndSentWithItsNewLength) {
  std::atomic<int> rewrites{0};
  dp::PipelineExtensions extensions;
  extensions.response_head_steps.push_back(std::make_shared<HoldResponseStep>());
  extensions.buffered_body_steps.push_back(std::make_shared<WrapBodyStep>(&rewrites));
  Publish(extensions);
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send("GET /r/rewrite HTTP/1.1\r\nHost: a\r\n\r\n"));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok) << response.error;
  EXPECT_EQ(response.status, 201);
  EXPECT_EQ(response.body, "[201 hello world]");
  EXPECT_FALSE(response.chunked);
  EXPECT_EQ(response.Header("Content-Length"), "17");
  EXPECT_EQ(response.Header("X-Rewrite"), "yes");
  // Not asked for: streamed as it came.
  ASSERT_TRUE(client.Send("GET /r/plain HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_EQ(client.ReadResponse().body, "saw /plain body 0");
  // A response to HEAD has no body to hold.
  ASSERT_TRUE(client.Send("HEAD /r/rewrite HTTP/1.1\r\nHost: a\r\n\r\n"));
  ClientResponse head = client.ReadResponse(/*head_request=*/true);
  ASSERT_TRUE(head.ok) << head.error;
  EXPECT_EQ(head.status, 201);
  EXPECT_EQ(rewrites.load(), 1);
  // Too long to hold: the client gets it unchanged, as it came.
  ASSERT_TRUE(client.Send("GET /r/rewrite-big HTTP/1.1\r\nHost: a\r\n\r\n"));
  ClientResponse big = client.ReadResponse();
  ASSERT_TRUE(big.ok) << big.error;
  EXPECT_EQ(big.body.size(), RequestContext::kMaxBufferedResponseBody + 100);
  EXPECT_EQ(big.body.find_first_not_of('b'), std::string::npos);
  EXPECT_EQ(rewrites.load(), 1);
}

// Records what the exchange measured for the log steps (runs on the worker thread).
class RecordingLogStep final : public LogStep {
 public:
  struct Record {
    int status = 0;
    int upstream_status = 0;
    uint64_t request_size = 0;
    uint64_t body_received = 0;
    uint64_t response_bytes = 0;
    bool ordered = false;  // received <= upstream started <= upstream head <= finished, as they apply
    bool upstream_timed = false;
    bool local = false;
    RequestLatencies latencies;
  };
  void OnLog(const RequestContext& request, int status) const override {
    Record r;
    r.status = status;
    r.upstream_status = request.upstream_status;
    r.local = request.response_is_local;
    r.request_size = RequestSizeBytes(request);
    r.body_received = request.request_body_received;
    r.response_bytes = request.response_bytes;
    r.upstream_timed = request.upstream_started_ns != 0 && request.upstream_head_ns != 0;
    r.ordered = request.received_ns != 0 && request.finished_ns >= request.received_ns &&
                (!r.upstream_timed || (request.upstream_started_ns >= request.received_ns &&
                                       request.upstream_head_ns >= request.upstream_started_ns &&
                                       request.finished_ns >= request.upstream_head_ns));
    r.latencies = ComputeLatencies(request);
    std::lock_guard<std::mutex> lock(mutex_);
    records_.push_back(r);
  }
  // Waits (bounded) until `count` records are in.
  std::vector<Record> WaitFor(size_t count) const {
    std::vector<Record> got;
    for (int i = 0; i < 400 && (got = records()).size() < count; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return got;
  }
  std::vector<Record> records() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return records_;
  }

 private:
  mutable std::mutex mutex_;
  mutable std::vector<Record> records_;
};

// The bytes of a response as the client got it (status line rebuilt from the reason given).
uint64_t WireSize(const ClientResponse& response, absl::string_view reason) {
  uint64_t size = absl::StrCat("HTTP/1.1 ", response.status, " ", reason, "\r\n").size() + 2 + response.body.size();
  for (const auto& [name, value] : response.headers) size += name.size() + 2 + value.size() + 2;
  return size;
}

TEST_F(PipelineProxyTest, LogStepsSeeTimingsSizesAndTheUpstreamStatus) {
  auto recorder = std::make_shared<RecordingLogStep>();
  dp::PipelineExtensions extensions;
  extensions.log_steps.push_back(recorder);
  Publish(extensions);
  RawClient client(proxy_->port());
  const std::string head = "POST /r/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
  ASSERT_TRUE(client.Send(head + "hello"));
  ClientResponse proxied = client.ReadResponse();
  ASSERT_TRUE(proxied.ok);
  ASSERT_EQ(proxied.status, 200);
  ASSERT_TRUE(client.Send("GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n"));
  ClientResponse local = client.ReadResponse();
  ASSERT_TRUE(local.ok);
  ASSERT_EQ(local.status, 404);
  std::vector<RecordingLogStep::Record> records;
  for (int i = 0; i < 200 && (records = recorder->records()).size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(records.size(), 2u);
  const RecordingLogStep::Record& up = records[0];
  EXPECT_EQ(up.status, 200);
  EXPECT_EQ(up.upstream_status, 200);
  EXPECT_EQ(up.body_received, 5u);
  EXPECT_EQ(up.request_size, head.size() + 5);
  EXPECT_EQ(up.response_bytes, WireSize(proxied, "X"));  // the test upstream's reason phrase
  EXPECT_TRUE(up.upstream_timed);
  EXPECT_TRUE(up.ordered);
  EXPECT_GT(up.latencies.request_ms, 0.0);
  EXPECT_GT(up.latencies.proxy_ms, 0.0);
  EXPECT_LE(up.latencies.proxy_ms, up.latencies.request_ms);
  EXPECT_DOUBLE_EQ(up.latencies.kong_ms, up.latencies.request_ms - up.latencies.proxy_ms);
  const RecordingLogStep::Record& no_route = records[1];
  EXPECT_EQ(no_route.status, 404);
  EXPECT_EQ(no_route.upstream_status, 0);
  EXPECT_EQ(no_route.body_received, 0u);
  EXPECT_EQ(no_route.response_bytes, WireSize(local, "Not Found"));
  EXPECT_FALSE(no_route.upstream_timed);
  EXPECT_TRUE(no_route.ordered);
  EXPECT_EQ(no_route.latencies.proxy_ms, 0.0);
}

// However the exchange ends, the log steps run once: the client leaving before any response
// (499), an upstream cut after its head went out (the status sent), the client leaving during a
// local response's discarded body (the local status, marked local).
TEST_F(PipelineProxyTest, LogStepsRunOnceWhenTheExchangeEndsEarly) {
  auto recorder = std::make_shared<RecordingLogStep>();
  dp::PipelineExtensions extensions;
  extensions.log_steps.push_back(recorder);
  Publish(extensions);
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("GET /r/hang HTTP/1.1\r\nHost: a\r\n\r\n"));
    for (int i = 0; i < 400 && upstream_->accepted() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_EQ(upstream_->accepted(), 1);
    client.Reset();  // the client leaves before the answer (a FIN alone is a half-close)
  }
  std::vector<RecordingLogStep::Record> records = recorder->WaitFor(1);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].status, 499);
  EXPECT_EQ(records[0].upstream_status, 0);
  EXPECT_FALSE(records[0].local);
  EXPECT_TRUE(records[0].ordered);
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("GET /r/cut HTTP/1.1\r\nHost: a\r\n\r\n"));
    ClientResponse cut = client.ReadResponse();
    EXPECT_FALSE(cut.ok);  // the proxy closes: the body stops short
  }
  records = recorder->WaitFor(2);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].status, 200);
  EXPECT_EQ(records[1].upstream_status, 200);
  EXPECT_FALSE(records[1].local);
  // Nothing is logged twice, whatever else the connection does afterwards.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(recorder->records().size(), 2u);
}

TEST_F(PipelineProxyTest, ALocalAnswerIsLoggedWhenTheClientLeavesDuringItsBody) {
  auto recorder = std::make_shared<RecordingLogStep>();
  dp::PipelineExtensions extensions;
  extensions.request_steps.emplace_back(Phase::kAccess, std::make_shared<DenyStep>());
  extensions.log_steps.push_back(recorder);
  Publish(extensions);
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("POST /r/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\npartial"));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_EQ(response.status, 403);
  }  // the rest of the body never comes
  std::vector<RecordingLogStep::Record> records = recorder->WaitFor(1);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].status, 403);
  EXPECT_TRUE(records[0].local);
  EXPECT_EQ(records[0].upstream_status, 0);
  EXPECT_EQ(records[0].body_received, 7u);
}

TEST_F(PipelineProxyTest, ALocalAnswerThatClosesBeforeTheRequestEndsIsLoggedOnce) {
  auto recorder = std::make_shared<RecordingLogStep>();
  dp::PipelineExtensions extensions;
  extensions.log_steps.push_back(recorder);
  Publish(extensions);
  // The 404 goes out while the request is still being read, and the proxy closes the connection
  // (the client closes its side once it has read the answer).
  ClientResponse local;
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    local = client.ReadResponse();
  }
  ASSERT_TRUE(local.ok);
  ASSERT_EQ(local.status, 404);
  std::vector<RecordingLogStep::Record> records;
  for (int i = 0; i < 200 && (records = recorder->records()).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  records = recorder->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].status, 404);
  EXPECT_EQ(records[0].response_bytes, WireSize(local, "Not Found"));
  EXPECT_TRUE(records[0].ordered);
}

// A body the proxy cannot parse ends the exchange with the proxy's own 400: logged as that 400
// (a local response), not as a client that went away.
TEST_F(PipelineProxyTest, AMalformedBodyIsLoggedWithTheProxys400) {
  auto recorder = std::make_shared<RecordingLogStep>();
  dp::PipelineExtensions extensions;
  extensions.log_steps.push_back(recorder);
  Publish(extensions);
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send("POST /r/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 400);
  std::vector<RecordingLogStep::Record> records = recorder->WaitFor(1);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].status, 400);
  EXPECT_TRUE(records[0].local);
}

}  // namespace
}  // namespace portico::dp
