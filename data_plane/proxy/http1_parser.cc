#include "data_plane/proxy/http1_parser.h"

#include <array>
#include <new>

#include "absl/strings/match.h"
#include "llhttp.h"

namespace portico::proxy {
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

// RFC 9110 token: what a header field name may contain.
bool IsToken(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!kTokenChars[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

}  // namespace

const std::string* Http1Head::Find(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) return &value;
  }
  return nullptr;
}

void Http1Head::Clear() {
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
}

// Trampolines: recover the Http1Parser from parser->data and forward to one member. Nothing here
// throws; errors travel as llhttp return codes.
struct Http1Parser::Callbacks {
  static_assert(sizeof(llhttp_t) <= kLlhttpBytes && alignof(llhttp_t) <= 8, "grow Http1Parser::kLlhttpBytes");
  static llhttp_t* State(const Http1Parser* self) {
    return reinterpret_cast<llhttp_t*>(const_cast<unsigned char*>(self->llhttp_storage_));
  }
  static Http1Parser* Self(llhttp_t* p) { return static_cast<Http1Parser*>(p->data); }
  static int MessageBegin(llhttp_t* p) { return Self(p)->OnMessageBegin(); }
  static int Url(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnUrl({at, n}); }
  static int Status(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnStatus({at, n}); }
  static int HeaderField(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnHeaderField({at, n}); }
  static int HeaderValue(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnHeaderValue({at, n}); }
  static int HeaderValueComplete(llhttp_t* p) { return Self(p)->OnHeaderValueComplete(); }
  static int HeadersComplete(llhttp_t* p) { return Self(p)->OnHeadersComplete(); }
  static int Body(llhttp_t* p, const char* at, size_t n) { return Self(p)->OnBody({at, n}); }
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
      s.on_message_complete = MessageComplete;
      return s;
    }();
    return settings;
  }
};

Http1Parser::Http1Parser(Kind kind, Http1ParserDelegate* delegate, size_t max_head_bytes,
                         FreeList<Http1HeadStorage>* pool)
    : delegate_(delegate), max_head_bytes_(max_head_bytes), pool_(pool) {
  llhttp_t* p = new (llhttp_storage_) llhttp_t;
  llhttp_init(p, kind == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, &Callbacks::Settings());
  p->data = this;
}

Http1Parser::~Http1Parser() = default;

const Http1Head& Http1Parser::head() const {
  static const Http1Head kEmpty;
  return storage_ != nullptr ? storage_->head : kEmpty;
}

void Http1Parser::ReleaseStorage() {
  if (in_message_ || pool_ == nullptr || storage_ == nullptr) return;
  if (storage_->last_head_bytes > kMaxPooledHeadBytes) {
    storage_.reset();  // do not keep a large head's strings around
    return;
  }
  pool_->Give(std::move(storage_));
  storage_.reset();  // Give() may have dropped it (pool full)
}

Http1Parser::Result Http1Parser::Execute(const char* data, size_t size) {
  Result result;
  if (failed_) {
    result.outcome = head_too_large_ ? Outcome::kHeadTooLarge : Outcome::kError;
    return result;
  }
  llhttp_t* p = Callbacks::State(this);
  const llhttp_errno_t err = llhttp_execute(p, data, size);
  if (err == HPE_OK) {
    result.consumed = size;
    return result;
  }
  if (err == HPE_PAUSED && message_done_) {
    result.consumed = static_cast<size_t>(llhttp_get_error_pos(p) - data);
    message_done_ = false;
    llhttp_resume(p);
    result.outcome = Outcome::kMessageDone;
    return result;
  }
  failed_ = true;
  result.consumed = size;
  result.outcome = head_too_large_ ? Outcome::kHeadTooLarge : Outcome::kError;
  return result;
}

Http1Parser::Outcome Http1Parser::Finish() {
  if (failed_) return Outcome::kError;
  const llhttp_errno_t err = llhttp_finish(Callbacks::State(this));
  if (message_done_) {
    message_done_ = false;
    return Outcome::kMessageDone;
  }
  if (err == HPE_OK && !in_message_) return Outcome::kNeedMore;
  failed_ = true;
  return Outcome::kError;
}

bool Http1Parser::NeedsEof() const { return llhttp_message_needs_eof(Callbacks::State(this)) != 0; }

const char* Http1Parser::error_reason() const {
  if (head_too_large_) return "head too large";
  const char* reason = llhttp_get_error_reason(Callbacks::State(this));
  return reason != nullptr ? reason : "parse error";
}

bool Http1Parser::CountHead(size_t n) {
  head_bytes_ += n;
  if (head_bytes_ <= max_head_bytes_) return true;
  head_too_large_ = true;
  return false;
}

int Http1Parser::OnMessageBegin() {
  if (storage_ == nullptr) storage_ = pool_ != nullptr ? pool_->Take() : std::make_unique<Http1HeadStorage>();
  Http1HeadStorage& s = *storage_;
  // Keep the previous message's header strings (and their capacity) for this one.
  for (auto& header : s.head.headers) s.spare_headers.push_back(std::move(header));
  s.head.Clear();
  head_bytes_ = 0;
  s.field.clear();
  s.value.clear();
  in_message_ = true;
  return HPE_OK;
}

int Http1Parser::OnUrl(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  storage_->head.url.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Parser::OnStatus(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  storage_->head.reason.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Parser::OnHeaderField(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  storage_->field.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Parser::OnHeaderValue(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  storage_->value.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Parser::OnHeaderValueComplete() {
  if (!CountHead(4)) return HPE_USER;  // ": " and CRLF
  Http1HeadStorage& s = *storage_;
  if (!IsToken(s.field)) return HPE_USER;  // llhttp's loose mode lets e.g. spaces through
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

int Http1Parser::OnHeadersComplete() {
  llhttp_t* p = Callbacks::State(this);
  Http1Head& head = storage_->head;
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
  // Upgrades (WebSocket, CONNECT tunnels) are not proxied yet: treat the request as a plain one;
  // the Upgrade header is hop-by-hop and gets removed.
  p->upgrade = 0;
  head.keep_alive = llhttp_should_keep_alive(p) != 0;
  switch (delegate_->OnHead(head)) {
    case Http1ParserDelegate::HeadAction::kContinue:
      return 0;
    case Http1ParserDelegate::HeadAction::kSkipBody:
      return 1;
    case Http1ParserDelegate::HeadAction::kError:
      return -1;
  }
  return -1;
}

int Http1Parser::OnBody(absl::string_view data) {
  delegate_->OnBody(data);
  return HPE_OK;
}

int Http1Parser::OnMessageComplete() {
  storage_->head.keep_alive = llhttp_should_keep_alive(Callbacks::State(this)) != 0;
  in_message_ = false;
  message_done_ = true;
  delegate_->OnMessageComplete();
  return HPE_PAUSED;
}

}  // namespace portico::proxy
