#include "data_plane/proxy/http1_parser.h"

#include "absl/strings/match.h"
#include "llhttp.h"

namespace portico::proxy {
namespace {

// RFC 9110 token: what a header field name may contain.
bool IsToken(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
    if (!ok) return false;
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

struct Http1Parser::Llhttp {
  llhttp_t parser;
};

// Trampolines: recover the Http1Parser from parser->data and forward to one member. Nothing here
// throws; errors travel as llhttp return codes.
struct Http1Parser::Callbacks {
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

Http1Parser::Http1Parser(Kind kind, Http1ParserDelegate* delegate, size_t max_head_bytes)
    : llhttp_(std::make_unique<Llhttp>()), delegate_(delegate), max_head_bytes_(max_head_bytes) {
  llhttp_init(&llhttp_->parser, kind == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE,
              &Callbacks::Settings());
  llhttp_->parser.data = this;
}

Http1Parser::~Http1Parser() = default;

Http1Parser::Result Http1Parser::Execute(const char* data, size_t size) {
  Result result;
  if (failed_) {
    result.outcome = head_too_large_ ? Outcome::kHeadTooLarge : Outcome::kError;
    return result;
  }
  llhttp_t* p = &llhttp_->parser;
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
  const llhttp_errno_t err = llhttp_finish(&llhttp_->parser);
  if (message_done_) {
    message_done_ = false;
    return Outcome::kMessageDone;
  }
  if (err == HPE_OK && !in_message_) return Outcome::kNeedMore;
  failed_ = true;
  return Outcome::kError;
}

bool Http1Parser::NeedsEof() const { return llhttp_message_needs_eof(&llhttp_->parser) != 0; }

const char* Http1Parser::error_reason() const {
  if (head_too_large_) return "head too large";
  const char* reason = llhttp_get_error_reason(&llhttp_->parser);
  return reason != nullptr ? reason : "parse error";
}

bool Http1Parser::CountHead(size_t n) {
  head_bytes_ += n;
  if (head_bytes_ <= max_head_bytes_) return true;
  head_too_large_ = true;
  return false;
}

int Http1Parser::OnMessageBegin() {
  // Keep the previous message's header strings (and their capacity) for this one.
  for (auto& header : head_.headers) spare_headers_.push_back(std::move(header));
  head_.Clear();
  head_bytes_ = 0;
  field_.clear();
  value_.clear();
  in_message_ = true;
  return HPE_OK;
}

int Http1Parser::OnUrl(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  head_.url.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Parser::OnStatus(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  head_.reason.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Parser::OnHeaderField(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  field_.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Parser::OnHeaderValue(absl::string_view data) {
  if (!CountHead(data.size())) return HPE_USER;
  value_.append(data.data(), data.size());
  return HPE_OK;
}

int Http1Parser::OnHeaderValueComplete() {
  if (!CountHead(4)) return HPE_USER;  // ": " and CRLF
  if (!IsToken(field_)) return HPE_USER;  // llhttp's loose mode lets e.g. spaces through
  if (spare_headers_.empty()) {
    head_.headers.emplace_back(field_, value_);
  } else {
    std::pair<std::string, std::string>& spare = spare_headers_.back();
    spare.first.assign(field_);
    spare.second.assign(value_);
    head_.headers.push_back(std::move(spare));
    spare_headers_.pop_back();
  }
  field_.clear();
  value_.clear();
  return HPE_OK;
}

int Http1Parser::OnHeadersComplete() {
  llhttp_t* p = &llhttp_->parser;
  // A header line with an empty value may end without a value callback.
  if (!field_.empty()) OnHeaderValueComplete();
  head_.version_major = p->http_major;
  head_.version_minor = p->http_minor;
  if (p->type == HTTP_REQUEST) {
    head_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  } else {
    head_.status = p->status_code;
  }
  head_.chunked = (p->flags & F_CHUNKED) != 0;
  head_.has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
  head_.content_length = head_.has_content_length ? p->content_length : 0;
  head_.upgrade = p->upgrade != 0;
  // Upgrades (WebSocket, CONNECT tunnels) are not proxied yet: treat the request as a plain one;
  // the Upgrade header is hop-by-hop and gets removed.
  p->upgrade = 0;
  head_.keep_alive = llhttp_should_keep_alive(p) != 0;
  switch (delegate_->OnHead(head_)) {
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
  head_.keep_alive = llhttp_should_keep_alive(&llhttp_->parser) != 0;
  in_message_ = false;
  message_done_ = true;
  delegate_->OnMessageComplete();
  return HPE_PAUSED;
}

}  // namespace portico::proxy
