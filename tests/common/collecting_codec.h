#pragma once
// Test helper: an Http1Codec that collects what it parses (heads, body, message count) and runs
// until a message is done, more input is needed or an error, as tests want to drive it.
#include <cstddef>
#include <string>
#include <vector>

#include "common/http/http1_codec.h"

namespace portico::test_support {

class CollectingCodec : public Http1Codec::BodySink {
 public:
  struct Result {
    Http1Codec::Event outcome = Http1Codec::Event::kNeedMore;
    size_t consumed = 0;
  };
  explicit CollectingCodec(Http1Codec::Kind kind, size_t max_head_bytes = 64 * 1024)
      : codec(kind, this, max_head_bytes) {}

  // Executes through heads (collected; the body skipped when skip_bodies) until kMessageDone,
  // kNeedMore or an error.
  Result Execute(const char* data, size_t size) {
    Result result;
    while (true) {
      const Http1Codec::Result r = codec.Execute(data + result.consumed, size - result.consumed);
      result.consumed += r.consumed;
      if (r.event == Http1Codec::Event::kHead) {
        heads.push_back(codec.head());
        if (skip_bodies) codec.SkipBody();
        continue;
      }
      if (r.event == Http1Codec::Event::kMessageDone) ++completed;
      result.outcome = r.event;
      return result;
    }
  }
  Result Execute(const std::string& data) { return Execute(data.data(), data.size()); }

  bool OnBody(absl::string_view data) override {
    body.append(data.data(), data.size());
    return true;
  }

  Http1Codec codec;
  bool skip_bodies = false;
  std::vector<MessageHead> heads;
  std::string body;
  int completed = 0;
};

}  // namespace portico::test_support
