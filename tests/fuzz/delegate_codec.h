#pragma once
// The codec as the fuzz harnesses drive it: a delegate gets each head (and says whether a body
// follows), the body pieces and each message end, the way the proxy's connections react to the
// codec's events (common/http/http1_codec.h).
#include <cstddef>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/http/http1_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace portico::fuzz {

class CodecDelegate {
 public:
  enum class HeadAction { kContinue, kSkipBody, kError };
  virtual ~CodecDelegate() = default;
  virtual HeadAction OnHead(const MessageHead& head) = 0;
  virtual void OnBody(absl::string_view data) = 0;
  virtual void OnMessageComplete() = 0;
};

class DelegatingCodec : public Http1Codec::BodySink {
 public:
  struct Result {
    Http1Codec::Event outcome = Http1Codec::Event::kNeedMore;
    size_t consumed = 0;
  };
  DelegatingCodec(Http1Codec::Kind kind, CodecDelegate* delegate, size_t max_head_bytes)
      : codec_(kind, this, max_head_bytes), delegate_(delegate) {}

  // Runs through heads until a message ends (kMessageDone), more input is needed or an error
  // (a head the delegate refuses is one; the codec then stays failed, as a connection would).
  Result Execute(const char* data, size_t size) {
    Result result;
    if (refused_) {
      result.outcome = Http1Codec::Event::kError;
      return result;
    }
    while (true) {
      const Http1Codec::Result r = codec_.Execute(data + result.consumed, size - result.consumed);
      result.consumed += r.consumed;
      if (r.event == Http1Codec::Event::kHead) {
        const CodecDelegate::HeadAction action = delegate_->OnHead(codec_.head());
        if (action == CodecDelegate::HeadAction::kError) {
          refused_ = true;
          result.outcome = Http1Codec::Event::kError;
          result.consumed = size;
          return result;
        }
        if (action == CodecDelegate::HeadAction::kSkipBody) codec_.SkipBody();
        continue;
      }
      if (r.event == Http1Codec::Event::kMessageDone) delegate_->OnMessageComplete();
      result.outcome = r.event;
      return result;
    }
  }
  Http1Codec::Event Finish() {
    const Http1Codec::Event event = codec_.Finish();
    if (event == Http1Codec::Event::kMessageDone) delegate_->OnMessageComplete();
    return event;
  }
  bool NeedsEof() const { return codec_.NeedsEof(); }
  bool in_message() const { return codec_.in_message(); }
  const char* error_reason() const { return refused_ ? "head refused" : codec_.error_reason(); }

  bool OnBody(absl::string_view data) override {
    delegate_->OnBody(data);
    return true;
  }

 private:
  Http1Codec codec_;
  CodecDelegate* delegate_;
  bool refused_ = false;
};

// Feeds `stream` to `codec` in pieces of 1 + piece_sizes[i % 4] bytes, as reads would deliver
// them, checking Execute's contract ("consumed"): never more bytes than given, all of them when it
// needs more. Calls on_message() after each complete message, and on_error() after a refusal
// (then checks that the codec stays failed: "order"). False when it stopped early.
template <typename OnMessage, typename OnError>
bool FeedInPieces(DelegatingCodec& codec, const uint8_t piece_sizes[4], const char* stream, size_t size,
                  OnMessage on_message, OnError on_error) {
  size_t pos = 0;
  for (size_t piece = 0; pos < size; ++piece) {
    const size_t length = std::min<size_t>(1 + piece_sizes[piece % 4], size - pos);
    size_t offset = 0;
    while (offset < length) {
      const size_t given = length - offset;
      const DelegatingCodec::Result result = codec.Execute(stream + pos + offset, given);
      if (!FUZZ_CHECK(result.consumed <= given, "consumed", absl::StrCat("consumed ", result.consumed, " of ", given))) {
        return false;
      }
      if (result.outcome == Http1Codec::Event::kNeedMore) {
        FUZZ_CHECK(result.consumed == given, "consumed", absl::StrCat("kNeedMore after ", result.consumed, " of ", given));
        break;
      }
      if (result.outcome != Http1Codec::Event::kMessageDone) {
        on_error();
        // A failed codec stays failed and reports nothing more.
        const DelegatingCodec::Result again = codec.Execute(stream, size);
        FUZZ_CHECK(again.outcome == Http1Codec::Event::kError || again.outcome == Http1Codec::Event::kHeadTooLarge,
                   "order", "codec recovered after an error");
        return false;
      }
      on_message();
      offset += result.consumed;
    }
    pos += length;
  }
  return true;
}

}  // namespace portico::fuzz
