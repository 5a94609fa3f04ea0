#pragma once
// The HTTP/1 codec: the only wrapper around llhttp, shared by the proxy (requests from clients,
// responses from upstreams) and the Admin/status server. It turns bytes into events and never
// calls back into its owner for a head or a message end: Execute() pauses right after a head
// (Event::kHead) and right after a message (Event::kMessageDone) and returns, so whatever the
// owner does with a head (route it, run a pipeline that may wait, answer it) happens outside
// llhttp's callbacks. Only body pieces are delivered while Execute runs (to a BodySink), straight
// from the bytes given, so a body is never copied here.
//
// llhttp is built in its default (loose) mode; its strict mode would also refuse raw bytes
// >= 0x80 in request targets, which nginx and Kong accept. On top of llhttp the codec refuses,
// as malformed input (kError): a header field name that is not an RFC 9110 token; a line folded
// with obs-fold (RFC 9112 §5.2: a proxy may reject it, and it is how framing headers get hidden);
// and chunk data not followed by CRLF (loose llhttp 8.1 skips those two bytes unchecked). The
// framing and Host rules that need the whole head are in http1_checks.h.
//
// Thread-compatible; one codec per connection direction, on the owning loop.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/free_list.h"

namespace portico {

// A parsed message head (request or response). Version-independent: an HTTP/2 codec would fill
// the same fields from its frames.
struct MessageHead {
  // Request: method and raw request-target. Response: status and reason phrase.
  std::string method;
  std::string url;
  int status = 0;
  std::string reason;
  int version_major = 1;
  int version_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // arrival order, names as sent
  bool chunked = false;            // Transfer-Encoding: chunked (the body is de-chunked)
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool keep_alive = false;         // llhttp_should_keep_alive at the end of the head
  bool upgrade = false;
  bool transfer_encoding = false;  // a Transfer-Encoding header was present (chunked or not)

  // First header value with this name (case-insensitive), or nullptr.
  const std::string* Find(absl::string_view name) const;
  // nginx's $cookie_<name>: the value of the first cookie of that name (any case) in the Cookie
  // headers; empty when there is none.
  absl::string_view FindCookie(absl::string_view name) const;
  void Clear();
};

// What a codec needs only while a message head is being collected and used: the head, the
// header strings of earlier messages kept for reuse, and the partial name/value. Held by the codec
// from the first byte of a message; a request codec gives it back (ReleaseStorage) once its
// connection is idle, so an idle connection holds none of it.
struct Http1HeadStorage {
  MessageHead head;
  // Header name/value strings of earlier messages, reused so that a warm storage allocates
  // nothing per message (at most the largest message's headers are kept).
  std::vector<std::pair<std::string, std::string>> spare_headers;
  std::string field;
  std::string value;
  size_t last_head_bytes = 0;  // size of the last head collected (for the pool's size cap)
};

class Http1Codec {
 public:
  enum class Kind { kRequest, kResponse };
  enum class Event {
    kNeedMore,      // every byte given was consumed; the message (if any) is not finished
    kHead,          // stopped right after a message head: head() is complete. Call Execute with
                    // the rest to go on with the body (after SkipBody(), if it has none)
    kMessageDone,   // stopped right after a complete message; call Execute again for the next
    kHeadTooLarge,  // the head exceeded max_head_bytes
    kError,         // malformed input; the codec stays failed
  };
  struct Result {
    Event event = Event::kNeedMore;
    size_t consumed = 0;  // bytes of the input used up to the event
  };
  // Receives the (de-chunked) body pieces during Execute; the view is valid only for the call.
  // Returning false stops the codec: Execute returns kError (the sink knows why).
  class BodySink {
   public:
    virtual ~BodySink() = default;
    virtual bool OnBody(absl::string_view data) = 0;
  };

  // With a `pool`, the head storage is taken from it when a message starts and can be given back
  // with ReleaseStorage(); without, the codec allocates its own once and keeps it.
  Http1Codec(Kind kind, BodySink* sink, size_t max_head_bytes, FreeList<Http1HeadStorage>* pool = nullptr);
  ~Http1Codec();
  Http1Codec(const Http1Codec&) = delete;
  Http1Codec& operator=(const Http1Codec&) = delete;

  Result Execute(const char* data, size_t size);
  // After kHead: the message has no body whatever its head says (a response to HEAD, a 204 or a
  // 304: RFC 9112 §6.3; llhttp knows it only for 1xx and 204). REQUIRES: the last event was kHead.
  void SkipBody();
  // Signals EOF. kMessageDone when EOF legitimately ends a message (a read-until-close response),
  // kNeedMore when no message was in progress, kError otherwise.
  Event Finish();
  // True when the body of the current message is delimited by the connection close.
  bool NeedsEof() const;
  // True between the first byte of a message and its end.
  bool in_message() const { return in_message_; }
  // The current (or last) head; an empty head when the codec holds no storage.
  const MessageHead& head() const;
  // Gives the head storage back to the pool (no-op while a message is in progress, without a
  // pool, or without storage). Heads of more than kMaxPooledHeadBytes are freed instead.
  void ReleaseStorage();
  bool holds_storage() const { return storage_ != nullptr; }
  static constexpr size_t kMaxPooledHeadBytes = 8 * 1024;
  // Why the last kError/kHeadTooLarge happened, for logs.
  const char* error_reason() const;

 private:
  struct Callbacks;
  int OnMessageBegin();
  int OnUrl(absl::string_view data);
  int OnStatus(absl::string_view data);
  int OnHeaderField(absl::string_view data);
  int OnHeaderValue(absl::string_view data);
  int OnHeaderValueComplete();
  int OnHeadersComplete();
  int OnBody(absl::string_view data);
  int OnChunkComplete();
  int OnMessageComplete();
  bool CountHead(size_t n);
  // The byte before `at`, a pointer into the buffer of the current Execute call (from the
  // previous call's bytes when `at` is that buffer's start).
  char ByteBefore(const char* at) const;
  // The two bytes before offset `pos` of the current buffer (llhttp skipped them after chunk data).
  bool CrlfBefore(const char* data, size_t pos) const;
  void RememberConsumed(const char* data, size_t consumed);
  Result Fail(size_t size);

  // The llhttp_t, in place (no allocation of its own per connection) but opaque here, which keeps
  // llhttp.h out of this header; http1_codec.cc checks size and alignment.
  static constexpr size_t kLlhttpBytes = 96;
  alignas(8) unsigned char llhttp_storage_[kLlhttpBytes];
  // Packed: every idle keep-alive client connection holds one codec.
  BodySink* sink_;
  const char* strict_error_ = nullptr;  // a rule this class enforces on top of llhttp was broken
  const char* exec_begin_ = nullptr;    // buffer of the Execute call in progress
  // Between a header name and its value's first byte (":" and blanks, or an obs-fold line break
  // when llhttp skips a folded empty value's blanks): where that gap starts in the current buffer
  // (nullptr: before it), and whether an earlier buffer's part of it held a line break.
  const char* gap_start_ = nullptr;
  uint32_t max_head_bytes_;
  uint32_t head_bytes_ = 0;
  char recent_[2] = {0, 0};          // the last two bytes consumed by earlier Execute calls
  uint8_t recent_count_ = 0;         // how many of recent_ are valid (0..2), newest in recent_[1]
  bool head_too_large_ = false;
  bool in_message_ = false;
  bool head_done_ = false;           // paused in on_headers_complete
  bool message_done_ = false;        // paused in on_message_complete
  bool failed_ = false;
  bool chunk_end_pending_ = false;   // paused in on_chunk_complete: check the CRLF llhttp skipped
  bool in_name_value_gap_ = false;
  bool gap_has_line_break_ = false;
  FreeList<Http1HeadStorage>* pool_;
  std::unique_ptr<Http1HeadStorage> storage_;  // from the first byte of a message on
};

}  // namespace portico
