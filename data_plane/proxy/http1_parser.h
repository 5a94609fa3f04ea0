#pragma once
// Thin C++ layer over llhttp: the only file with llhttp trampolines. Collects the message head
// (start line + headers) into an Http1Head and forwards body bytes and message end to a delegate.
// Thread-compatible; one parser per connection, on the owning worker loop.
//
// llhttp is built in its default (loose) mode, whose strict mode would also refuse raw bytes
// >= 0x80 in request targets (nginx and Kong accept those). On top of llhttp this class rejects,
// as malformed input (kError): a header field name that is not an RFC 9110 token; a line folded
// with obs-fold (RFC 9112 §5.2: a proxy may reject it, and it is how framing headers get hidden);
// and chunk data not followed by CRLF (loose llhttp 8.1 skips those two bytes unchecked).
// Framing and Host rules that need the whole head live in request_head_check.h.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace portico::proxy {

struct Http1Head {
  // Request: method and raw request-target. Response: status and reason phrase.
  std::string method;
  std::string url;
  int status = 0;
  std::string reason;
  int version_major = 1;
  int version_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // arrival order, names as sent
  bool chunked = false;           // Transfer-Encoding: chunked
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool keep_alive = false;        // llhttp_should_keep_alive at the end of the head
  bool upgrade = false;
  bool transfer_encoding = false; // a Transfer-Encoding header was present (chunked or not)

  // First header value with this name (case-insensitive), or nullptr.
  const std::string* Find(absl::string_view name) const;
  void Clear();
};

// What a parser needs only while a message head is being collected and used: the head, the header
// strings of earlier messages kept for reuse, and the partial name/value. Held by the parser from
// the first byte of a message; a request parser gives it back (ReleaseStorage) once its
// connection is idle, so an idle connection holds none of it.
struct Http1HeadStorage {
  Http1Head head;
  // Header name/value strings of earlier messages, reused so that a warm storage allocates
  // nothing per message (at most the largest message's headers are kept).
  std::vector<std::pair<std::string, std::string>> spare_headers;
  std::string field;
  std::string value;
  size_t last_head_bytes = 0;  // size of the last head collected (for the pool's size cap)
};

// A bounded free list of T (owned by one worker, single-threaded). Take() hands out a kept object
// or a new one; Give() keeps up to `max_kept` objects (and drops those `keep` refuses).
template <typename T>
class FreeList {
 public:
  explicit FreeList(size_t max_kept) : max_kept_(max_kept) { free_.reserve(max_kept); }
  std::unique_ptr<T> Take() {
    if (free_.empty()) return std::make_unique<T>();
    std::unique_ptr<T> item = std::move(free_.back());
    free_.pop_back();
    return item;
  }
  void Give(std::unique_ptr<T> item) {
    if (item != nullptr && free_.size() < max_kept_) free_.push_back(std::move(item));
  }
  size_t size() const { return free_.size(); }

 private:
  size_t max_kept_;
  std::vector<std::unique_ptr<T>> free_;
};

class Http1ParserDelegate {
 public:
  // What the delegate asks the parser to do after the head.
  enum class HeadAction { kContinue, kSkipBody, kError };

  virtual ~Http1ParserDelegate() = default;
  // The head is complete; `head` stays valid until the next message starts.
  virtual HeadAction OnHead(const Http1Head& head) = 0;
  // A piece of the (de-chunked) body.
  virtual void OnBody(absl::string_view data) = 0;
  // The message ended. The parser stops right after it (Execute returns kMessageDone).
  virtual void OnMessageComplete() = 0;
};

class Http1Parser {
 public:
  enum class Kind { kRequest, kResponse };
  enum class Outcome {
    kNeedMore,       // all bytes consumed, message not finished
    kMessageDone,    // stopped right after a complete message; call Execute again for more
    kHeadTooLarge,   // head exceeded max_head_bytes
    kError,          // malformed input (or the delegate returned kError)
  };
  struct Result {
    Outcome outcome = Outcome::kNeedMore;
    size_t consumed = 0;
  };

  // With a `pool`, the head storage is taken from it when a message starts and can be given back
  // with ReleaseStorage(); without, the parser allocates its own once and keeps it.
  Http1Parser(Kind kind, Http1ParserDelegate* delegate, size_t max_head_bytes,
              FreeList<Http1HeadStorage>* pool = nullptr);
  ~Http1Parser();
  Http1Parser(const Http1Parser&) = delete;
  Http1Parser& operator=(const Http1Parser&) = delete;

  Result Execute(const char* data, size_t size);
  // Signals EOF. Returns kMessageDone when EOF legitimately ends a message (read-until-close
  // response), kNeedMore when no message was in progress, kError otherwise.
  Outcome Finish();
  // True when the body of the current message is delimited by the connection close.
  bool NeedsEof() const;
  // True between the first byte of a message and its end.
  bool in_message() const { return in_message_; }
  // The current (or last) head; an empty head when the parser holds no storage.
  const Http1Head& head() const;
  // Gives the head storage back to the pool (no-op while a message is in progress, without a
  // pool, or without storage). Heads of more than kMaxPooledHeadBytes are freed instead.
  void ReleaseStorage();
  bool holds_storage() const { return storage_ != nullptr; }
  static constexpr size_t kMaxPooledHeadBytes = 8 * 1024;
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

  // The llhttp_t, in place (no allocation of its own per connection) but opaque here, which keeps
  // llhttp.h out of this header; http1_parser.cc checks size and alignment.
  static constexpr size_t kLlhttpBytes = 96;
  alignas(8) unsigned char llhttp_storage_[kLlhttpBytes];
  Http1ParserDelegate* delegate_;
  size_t max_head_bytes_;
  size_t head_bytes_ = 0;
  bool head_too_large_ = false;
  bool in_message_ = false;
  bool message_done_ = false;
  bool failed_ = false;
  bool chunk_end_pending_ = false;   // paused in on_chunk_complete: check the CRLF llhttp skipped
  const char* strict_error_ = nullptr;  // a rule this class enforces on top of llhttp was broken
  const char* exec_begin_ = nullptr; // buffer of the Execute call in progress
  char recent_[2] = {0, 0};          // the last two bytes consumed by earlier Execute calls
  size_t recent_count_ = 0;          // how many of recent_ are valid (0..2), newest in recent_[1]
  // Between a header name and its value's first byte (":" and blanks, or an obs-fold line break
  // when llhttp skips a folded empty value's blanks): where that gap starts in the current buffer
  // (nullptr: before it), and whether an earlier buffer's part of it held a line break.
  bool in_name_value_gap_ = false;
  const char* gap_start_ = nullptr;
  bool gap_has_line_break_ = false;
  FreeList<Http1HeadStorage>* pool_;
  std::unique_ptr<Http1HeadStorage> storage_;  // from the first byte of a message on
};

}  // namespace portico::proxy
