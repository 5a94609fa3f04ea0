#pragma once
// A RequestContext for plugin tests without a connection: records the local answer and the
// resumptions; the request data (head, target, client_ip, ...) is set by each test.
#include <string>
#include <utility>
#include <vector>

#include "data_plane/pipeline/pipeline.h"

namespace portico::dp::plugins::plugin_test {

class FakeContext : public RequestContext {
 public:
  FakeContext() {
    head = &request_head;
    client_ip = "127.0.0.1";
  }
  void Respond(const LocalResponse& response) override {
    responded = true;
    status = response.status;
    message = std::string(response.message);
    body = std::string(response.body);
    content_type = std::string(response.content_type);
    headers = response.headers;
  }
  void Resume(StepStatus status) override {
    ++resumes;
    resumed_with = status;
  }
  // The body is there when the test says so (body_ready); otherwise the read is pending.
  bool ReadRequestBody() override {
    ++body_reads;
    reading_request_body_ = !body_ready;
    return body_ready;
  }
  using RequestContext::ResetContext;  // a connection's next request (tests of warm storage)

  MessageHead request_head;
  int resumes = 0;
  StepStatus resumed_with = StepStatus::kSuspend;
  bool body_ready = true;
  int body_reads = 0;
  bool responded = false;
  int status = 0;
  std::string message, body, content_type;
  std::vector<std::pair<std::string, std::string>> headers;  // of the local response
};

}  // namespace portico::dp::plugins::plugin_test
