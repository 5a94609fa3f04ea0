// The request pipeline: step order, and steps that suspend, resume, get cancelled or answer
// locally, run inside a real ProxyServer (one worker) in front of a real upstream on loopback.
#include "data_plane/pipeline/pipeline.h"

#include <uv.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

class PipelineProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest& request) {
      UpstreamReply reply;
      reply.raw = SimpleResponse(200, absl::StrCat("saw ", request.target, " body ", request.body.size()));
      return reply;
    });
    dp::ProxyOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 1;
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

}  // namespace
}  // namespace portico::dp
