#include "common/http/http1_codec.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <new>

#include "absl/strings/match.h"
#include "llhttp.h"

namespace portico {
namespace {

// RFC 9110 token characters, as a table (checked for every header name byte).
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> table{};
  for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (char c : absl::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}();

// True when [begin, end) holds a '\n'. The gaps it scans are ": " in practice: a plain loop beats a
// call into memchr there.
bool HasLineFeed(const char* begin, const char* end) {
  for (const char* p = begin; p < end; ++p) {
    if (*p == '\n') return true;
  }
  return false;
}

// RFC 9110 token: what a header field name may contain.
bool IsToken(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!kTokenChars[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

}  // namespace

const std::string* MessageHead::Find(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) return &value;
  }
  return nullptr;
}

absl::string_view MessageHead::FindCookie(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (!absl::EqualsIgnoreCase(key, "cookie")) continue;
    absl::string_view rest = value;
    while (!rest.empty()) {
      const size_t semicolon = rest.find(';');
      absl::string_view pair = rest.substr(0, semicolon);
      rest = semicolon == absl::string_view::npos ? absl::string_view() : rest.substr(semicolon + 1);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      const size_t eq = pair.find('=');
      if (eq != absl::string_view::npos && absl::EqualsIgnoreCase(pair.substr(0, eq), name)) {
        return pair.substr(eq + 1);
      }
    }
  }
  return absl::string_view();
}

void MessageHead::Clear() {
  // In place: the strings and the header vector keep their capacity for the next message.
  method.clear();
  url.clear();
  status = 0;
  reason.clear();
  version_major = 1;
  version_minor = 1;
  headers.clear();
  chunked = false;
  has_content_length = false;
  content_length = 0;
  keep_alive = false;
  upgrade = false;
  transfer_encoding = false;
}

// Trampolines: recover the Http1Codec from parser->data and forward to one member. Nothing here
// throws; errors travel as llhttp return codes.
struct Http1Codec::Callbacks {
  static_assert(sizeof(llhttp_t) <= kLlhttpBytes && alignof(llhttp_t) <= 8, "grow Http1Codec::kLlhttpBytes");
  static llhttp_t* State(const Http1Codec* self) {
    return reinterpret_cast<llhttp_t*>(const_cast<unsigned char*>(self->llhttp_storage_));
  }
  static Http1Codec* Self(llhttp_t* p) { return static_cast<Http1Codec*>(p->data); }
  static int MessageBegin(llhttp_t* p) { return Self(p)->OnMessageBegin(); }
  static int Url(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnUrl({at, n}); }
  static int Status(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnStatus({at, n}); }
  static int HeaderField(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnHeaderField({at, n}); }
  static int HeaderValue(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnHeaderValue({at, n}); }
  static int HeaderValueComplete(llhttp_t* p) { return Self(p)->OnHeaderValueComplete(); }
  static int HeadersComplete(llhttp_t* p) { return Self(p)->OnHeadersComplete(); }
  static int Body(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnBody({at, n}); }
  static int ChunkComplete(llhttp_t* p) { return Self(p)->OnChunkComplete(); }
  static int MessageComplete(llhttp_t* p) { return Self(p)->OnMessageComplete(); }

  static const llhttp_settings_t& Settings() {
    static const llhttp_settings_t settings = [] {
      llhttp_settings_t s;
      llhttp_settings_init(&s);
      s.on_message_begin = MessageBegin;
      s.on_url = Url;
      s.on_status = Status;
      s.on_header_field = HeaderField;
      s.on_header_value = HeaderValue;
      s.on_header_value_complete = HeaderValueComplete;
      s.on_headers_complete = HeadersComplete;
      s.on_body = Body;
      s.on_chunk_complete = ChunkComplete;
      s.on_message_complete = MessageComplete;
      return s;
    }();
    return settings;
  }
};

Http1Codec::Http1Codec(Kind kind, BodySink* sink, size_t max_head_bytes, FreeList<Http1HeadStorage>* pool)
    : sink_(sink),
      max_head_bytes_(static_cast<uint32_t>(std::min<size_t>(max_head_bytes, UINT32_MAX - 65536))),
      pool_(pool) {
  llhttp_t* p = new (llhttp_storage_) llhttp_t;
  llhttp_init(p, kind == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, &Callbacks::Settings());
  p->data = this;
}

Http1Codec::~Http1Codec() = default;

const MessageHead& Http1Codec::head() const {
  static const MessageHead kEmpty;
  return storage_ != nullptr ? storage_->head : kEmpty;
}

void Http1Codec::ReleaseStorage() {
  if (in_message_ || pool_ == nullptr || storage_ == nullptr) return;
  if (storage_->last_head_bytes > kMaxPooledHeadBytes) {
    storage_.reset();  // do not keep a large head's strings around
    return;
  }
  pool_->Give(std::move(storage_));
  storage_.reset();  // Give() may have dropped it (pool full)
}

Http1Codec::Result Http1Codec::Fail(size_t size) {
  failed_ = true;
  exec_begin_ = nullptr;
  Result result;
  result.consumed = size;
  result.event = head_too_large_ ? Event::kHeadTooLarge : Event::kError;
  return result;
}

Http1Codec::Result Http1Codec::Execute(const char* data, size_t size) {
  Result result;
  if (failed_) {
    result.event = head_too_large_ ? Event::kHeadTooLarge : Event::kError;
    return result;
  }
  // llhttp restarts an open span (a body piece) at the pointer it is given; a null pointer would
  // close the span and make the next body piece start at address 0.
  static const char kNothing[1] = {0};
  if (data == nullptr) data = kNothing;
  llhttp_t* p = Callbacks::State(this);
  exec_begin_ = data;
  size_t offset = 0;
  for (;;) {
    const llhttp_errno_t err = llhttp_execute(p, data + offset, size - offset);
    if (err == HPE_OK) {
      result.consumed = size;
      break;
    }
    if (err != HPE_PAUSED) return Fail(size);
    const size_t pos = static_cast<size_t>(llhttp_get_error_pos(p) - data);
    llhttp_resume(p);
    if (chunk_end_pending_) {
      // Paused right after the two bytes llhttp skipped behind a chunk's data: they must be CRLF.
      chunk_end_pending_ = false;
      if (!CrlfBefore(data, pos)) {
        strict_error_ = "chunk data not followed by CRLF";
        return Fail(size);
      }
      offset = pos;
      continue;
    }
    result.consumed = pos;
    if (head_done_) {
      head_done_ = false;
      result.event = Event::kHead;
    } else {
      message_done_ = false;
      result.event = Event::kMessageDone;
    }
    break;
  }
  RememberConsumed(data, result.consumed);
  exec_begin_ = nullptr;
  return result;
}

void Http1Codec::SkipBody() { Callbacks::State(this)->flags |= F_SKIPBODY; }

void Http1Codec::RememberConsumed(const char* data, size_t consumed) {
  if (in_name_value_gap_) {  // the gap goes on in the next buffer
    const char* from = gap_start_ != nullptr ? gap_start_ : data;
    if (HasLineFeed(from, data + consumed)) gap_has_line_break_ = true;
    gap_start_ = nullptr;
  }
  if (consumed >= 2) {
    recent_[0] = data[consumed - 2];
    recent_[1] = data[consumed - 1];
    recent_count_ = 2;
  } else if (consumed == 1) {
    recent_[0] = recent_[1];
    recent_[1] = data[0];
    recent_count_ = recent_count_ == 0 ? 1 : 2;
  }
}

char Http1Codec::ByteBefore(const char* at) const {
  if (exec_begin_ != nullptr && at > exec_begin_) return at[-1];
  return recent_count_ > 0 ? recent_[1] : '\0';
}

bool Http1Codec::CrlfBefore(const char* data, size_t pos) const {
  char bytes[2];
  for (size_t i = 0; i < 2; ++i) {
    const size_t back = 2 - i;  // bytes[i] is the one `back` positions before pos
    if (pos >= back) {
      bytes[i] = data[pos - back];
    } else {
      const size_t from_recent = back - pos;  // 1 or 2 bytes into the previous calls' tail
      if (from_recent > static_cast<size_t>(recent_count_)) return false;
      bytes[i] = recent_[2 - from_recent];
    }
  }
  return bytes[0] == '\r' && bytes[1] == '\n';
}

Http1Codec::Event Http1Codec::Finish() {
  if (failed_) return Event::kError;
  const llhttp_errno_t err = llhttp_finish(Callbacks::State(this));
  if (message_done_) {
    message_done_ = false;
    return Event::kMessageDone;
  }
  if (err == HPE_OK && !in_message_) return Event::kNeedMore;
  failed_ = true;
  return Event::kError;
}

bool Http1Codec::NeedsEof() const { return llhttp_message_needs_eof(Callbacks::State(this)) != 0; }

const char* Http1Codec::error_reason() const {
  if (head_too_large_) return "head too large";
  if (strict_error_ != nullptr) return strict_error_;
  const char* reason = llhttp_get_error_reason(Callbacks::State(this));
  return reason != nullptr ? reason : "parse error";
}

bool Http1Codec::CountHead(size_t n) {
  // n is at most one read (64 KiB): no overflow before the limit is checked.
  head_bytes_ += static_cast<uint32_t>(std::min<size_t>(n, UINT32_MAX - head_bytes_));
  if (head_bytes_ <= max_head_bytes_) return true;
  head_too_large_ = true;
  return false;
}

int Http1Codec::OnMessageBegin() {
  if (storage_ == nullptr) storage_ = pool_ != nullptr ? pool_->Take() : std::make_unique<Http1HeadStorage>();
  Http1HeadStorage& s = *storage_;
  // Keep the previous message's header strings (and their capacity) for this one.
  for (auto& header : s.head.headers) s.spare_headers.push_back(std::move(header));
  s.head.Clear();
  head_bytes_ = 0;
  strict_error_ = nullptr;
  s.field.clear();
  s.value.clear();
  in_message_ = true;
  return HPE_OK;
}

int Http1Codec::OnUrl(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  storage_->head.url.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Codec::OnStatus(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  storage_->head.reason.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Codec::OnHeaderField(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  in_name_value_gap_ = true;
  gap_start_ = data.data() + data.size();
  gap_has_line_break_ = false;
  storage_->field.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Codec::OnHeaderValue(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  // obs-fold: a line break between the name and the value's first byte (llhttp skips the blanks
  // of a folded empty value), or a value piece right after a line break (a folded continuation;
  // a value split over two reads continues after a value byte instead).
  if (data.empty()) return HPE_OK;  // llhttp marks an empty value with an empty piece on the next line
  bool folded = false;
  if (in_name_value_gap_) {
    in_name_value_gap_ = false;
    const char* from = gap_start_ != nullptr ? gap_start_ : exec_begin_;
    folded = gap_has_line_break_ ||
             (from != nullptr && HasLineFeed(from, data.data()));
  } else {
    folded = ByteBefore(data.data()) == '\n';
  }
  if (folded) {
    strict_error_ = "obs-fold (a header line continued on the next line)";
    return HPE_USER;
  }
  storage_->value.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Codec::OnHeaderValueComplete() {
  in_name_value_gap_ = false;
  if (!CountHead(4)) return HPE_USER;  // ": " and CRLF
  Http1HeadStorage& s = *storage_;
  if (!IsToken(s.field)) {  // llhttp's loose mode lets e.g. spaces through
    strict_error_ = "header field name is not a token";
    return HPE_USER;
  }
  if (s.spare_headers.empty()) {
    s.head.headers.emplace_back(s.field, s.value);
  } else {
    std::pair<std::string, std::string>& spare = s.spare_headers.back();
    spare.first.assign(s.field);
    spare.second.assign(s.value);
    s.head.headers.push_back(std::move(spare));
    s.spare_headers.pop_back();
  }
  s.field.clear();
  s.value.clear();
  return HPE_OK;
}

int Http1Codec::OnHeadersComplete() {
  llhttp_t* p = Callbacks::State(this);
  MessageHead& head = storage_->head;
  storage_->last_head_bytes = head_bytes_;
  // A header line with an empty value may end without a value callback.
  if (!storage_->field.empty() && OnHeaderValueComplete() != HPE_OK) return -1;
  head.version_major = p->http_major;
  head.version_minor = p->http_minor;
  if (p->type == HTTP_REQUEST) {
    head.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  } else {
    head.status = p->status_code;
  }
  head.chunked = (p->flags & F_CHUNKED) != 0;
  head.has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
  head.content_length = head.has_content_length ? p->content_length : 0;
  head.upgrade = p->upgrade != 0;
  head.transfer_encoding = (p->flags & F_TRANSFER_ENCODING) != 0;
  // Upgrades (WebSocket, CONNECT tunnels) are not supported yet: the message is parsed as a plain
  // one (the proxy removes the hop-by-hop Upgrade header).
  p->upgrade = 0;
  head.keep_alive = llhttp_should_keep_alive(p) != 0;
  head_done_ = true;
  return HPE_PAUSED;  // Execute returns kHead; the owner looks at the head outside this callback
}

int Http1Codec::OnBody(absl::string_view data) {
  if (sink_ != nullptr && !sink_->OnBody(data)) {
    strict_error_ = "body refused";
    return HPE_USER;
  }
  return HPE_OK;
}

int Http1Codec::OnChunkComplete() {
  chunk_end_pending_ = true;
  return HPE_PAUSED;  // Execute checks the CRLF before the pause position, then resumes
}

int Http1Codec::OnMessageComplete() {
  storage_->head.keep_alive = llhttp_should_keep_alive(Callbacks::State(this)) != 0;
  in_message_ = false;
  message_done_ = true;
  return HPE_PAUSED;  // Execute returns kMessageDone
}

}  // namespace portico
