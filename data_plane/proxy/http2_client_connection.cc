#include "data_plane/proxy/http2_client_connection.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/http/known_headers.h"
#include "data_plane/pipeline/local_responses.h"
#include "data_plane/proxy/http1_messages.h"
#include "data_plane/proxy/worker.h"

namespace portico::dp {
namespace {

constexpr absl::string_view kOwnVia = "1.1 portico/" PORTICO_VERSION;

nghttp2_nv MakeNv(absl::string_view name, absl::string_view value) {
  nghttp2_nv nv;
  nv.name = reinterpret_cast<uint8_t*>(const_cast<char*>(name.data()));
  nv.namelen = name.size();
  nv.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
  nv.valuelen = value.size();
  nv.flags = NGHTTP2_NV_FLAG_NONE;  // nghttp2 copies both on submit
  return nv;
}

}  // namespace

int GrpcStatusForHttpStatus(int status) {
  switch (status) {
    case 400: return 13;  // INTERNAL
    case 401: return 16;  // UNAUTHENTICATED
    case 403: return 7;   // PERMISSION_DENIED
    case 404: return 12;  // UNIMPLEMENTED
    case 408:
    case 504: return 4;   // DEADLINE_EXCEEDED
    case 429:
    case 502:
    case 503: return 14;  // UNAVAILABLE
    default: return 2;    // UNKNOWN
  }
}

std::string PercentEncodeGrpcMessage(absl::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// ---- nghttp2 callbacks -------------------------------------------------------------------------

struct Http2ClientSession::Callbacks {
  static Http2ClientSession* Of(void* user_data) { return static_cast<Http2ClientSession*>(user_data); }
  static Http2Stream* StreamOf(nghttp2_session* session, int32_t id) {
    return static_cast<Http2Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  static int OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    Http2ClientSession* self = Of(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    Http2Stream* stream = self->NewStream(frame->hd.stream_id);
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, stream);
    return 0;
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name_bytes,
                      size_t name_length, const uint8_t* value_bytes, size_t value_length, uint8_t,
                      void* user_data) {
    Http2ClientSession* self = Of(user_data);
    Http2Stream* stream = StreamOf(session, frame->hd.stream_id);
    if (stream == nullptr || frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // request trailers: not forwarded
    const absl::string_view name(reinterpret_cast<const char*>(name_bytes), name_length);
    const absl::string_view value(reinterpret_cast<const char*>(value_bytes), value_length);
    // RFC 9113 §8.2.1: a name with an uppercase letter makes the request malformed (nghttp2 1.52
    // passes such names through).
    for (char c : name) {
      if (c >= 'A' && c <= 'Z') return RefuseMalformed(session, frame->hd.stream_id);
    }
    // The header list limit counts as SETTINGS_MAX_HEADER_LIST_SIZE does (RFC 9113 §6.5.2).
    stream->head_bytes_ += name_length + value_length + 32;
    if (stream->head_bytes_ > self->worker_.options().max_header_bytes) {
      stream->head_too_large_ = true;
      return 0;  // keep decoding (HPACK state) but stop storing
    }
    if (stream->head_too_large_) return 0;
    MessageHead& head = stream->head_;
    if (!name.empty() && name[0] == ':') {
      // nghttp2 has checked that pseudo-headers come first, once each, and are the known ones.
      if (name == ":method") {
        head.method.assign(value.data(), value.size());
      } else if (name == ":path") {
        head.url.assign(value.data(), value.size());
      } else if (name == ":authority") {
        stream->authority_.assign(value.data(), value.size());
      } else if (name == ":scheme") {
        stream->scheme_.assign(value.data(), value.size());
      }
      return 0;
    }
    if (name == "host") {
      if (stream->saw_host_) {
        stream->head_bad_ = true;  // two Host fields: refused as on HTTP/1.1
        return 0;
      }
      stream->saw_host_ = true;
    }
    if (name == "cookie") {
      // RFC 9113 §8.2.3: cookie crumbs are joined with "; " for HTTP/1.1.
      for (auto& [n, v] : head.headers) {
        if (n == "cookie") {
          absl::StrAppend(&v, "; ", value);
          return 0;
        }
      }
    }
    if (name == "content-type" && IsGrpcContentType(value)) stream->grpc_ = true;
    if (name == "content-length") {
      uint64_t length = 0;
      if (!absl::SimpleAtoi(value, &length)) {
        stream->head_bad_ = true;
        return 0;
      }
      head.has_content_length = true;
      head.content_length = length;
    }
    head.headers.emplace_back(std::string(name), std::string(value));
    return 0;
  }

  // A field nghttp2 finds invalid (RFC 9113 §8.2.1 characters), or one of ours: the stream is
  // malformed (RST_STREAM PROTOCOL_ERROR), never forwarded with the field dropped.
  static int RefuseMalformed(nghttp2_session* session, int32_t stream_id) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_PROTOCOL_ERROR);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  static int OnInvalidHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t*, size_t,
                             const uint8_t*, size_t, uint8_t, void*) {
    return RefuseMalformed(session, frame->hd.stream_id);
  }

  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    Http2ClientSession* self = Of(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        Http2Stream* stream = StreamOf(session, frame->hd.stream_id);
        if (stream == nullptr) return 0;
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) stream->request_ended_ = true;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
          self->BeginRequest(stream);
        } else if (stream->exchange_running_) {
          stream->DeliverRequestBody();  // trailers ended the request
        }
        return 0;
      }
      case NGHTTP2_DATA: {
        if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
        Http2Stream* stream = StreamOf(session, frame->hd.stream_id);
        if (stream == nullptr) return 0;
        stream->request_ended_ = true;
        if (stream->exchange_running_) stream->DeliverRequestBody();
        return 0;
      }
      default:
        return 0;
    }
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data, size_t length,
                         void*) {
    Http2Stream* stream = StreamOf(session, stream_id);
    if (stream == nullptr || !stream->exchange_running_) {
      // A stream already answered (or refused): its body is dropped, and acknowledged.
      nghttp2_session_consume(session, stream_id, length);
      return 0;
    }
    stream->request_body_.append(reinterpret_cast<const char*>(data), length);
    stream->unacked_request_bytes_ += length;
    stream->DeliverRequestBody();
    return 0;
  }

  static int OnStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code, void* user_data) {
    Http2ClientSession* self = Of(user_data);
    Http2Stream* stream = StreamOf(session, stream_id);
    if (stream == nullptr) return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
    stream->closed_ = true;
    if (stream->unacked_request_bytes_ > 0) {
      // The stream is gone: give the bytes it held back to the connection window.
      nghttp2_session_consume_connection(session, stream->unacked_request_bytes_);
      stream->unacked_request_bytes_ = 0;
    }
    stream->request_body_.clear();
    if (error_code != NGHTTP2_NO_ERROR && !stream->reset_by_us_ && !stream->response_ended_ &&
        !self->SpendResetToken()) {
      // Reset before its response ended, by the client or for its error, too often.
      nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
    }
    if (stream->exchange_running_ &&
        (error_code != NGHTTP2_NO_ERROR || !stream->response_ended_ || !stream->request_end_delivered_)) {
      // Reset by the client, or by us (a protocol error, Abort): the exchange ends here.
      stream->exchange_running_ = false;
      stream->exchange_->Cancel();
    }
    self->MaybeReap(stream);
    return 0;
  }

  static ssize_t ReadResponseBody(nghttp2_session* session, int32_t stream_id, uint8_t* buffer, size_t length,
                                  uint32_t* flags, nghttp2_data_source* source, void* user_data) {
    Http2ClientSession* self = Of(user_data);
    auto* stream = static_cast<Http2Stream*>(source->ptr);
    const size_t before = stream->response_body_.size() - stream->response_sent_;
    const size_t n = std::min(before, length);
    if (n > 0) {
      std::memcpy(buffer, stream->response_body_.data() + stream->response_sent_, n);
      stream->response_sent_ += n;
      if (stream->response_sent_ == stream->response_body_.size()) {
        stream->response_body_.clear();  // keeps its capacity
        stream->response_sent_ = 0;
      }
      if (before >= kLowWaterBytes && before - n < kLowWaterBytes && !stream->notify_drained_) {
        stream->notify_drained_ = true;
        self->drained_.push_back(stream);
      }
    }
    if (stream->response_body_.size() == stream->response_sent_) {
      if (!stream->response_ended_) {
        if (n > 0) return static_cast<ssize_t>(n);
        stream->response_deferred_ = true;
        return NGHTTP2_ERR_DEFERRED;
      }
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!stream->trailers_.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nva;
        nva.reserve(stream->trailers_.size());
        for (const auto& [name, value] : stream->trailers_) nva.push_back(MakeNv(name, value));
        nghttp2_submit_trailer(session, stream_id, nva.data(), nva.size());
      }
      stream->StopUnfinishedRequest();  // queued after the trailers: they go first
    }
    return static_cast<ssize_t>(n);
  }
};

// ---- the session ---------------------------------------------------------------------------------

Http2ClientSession::Http2ClientSession(Worker& worker, Transport& transport, Host& host, absl::string_view client_ip,
                                       uint64_t connection_serial, bool over_tls, absl::string_view sni)
    : worker_(worker),
      transport_(transport),
      host_(host),
      client_ip_(client_ip),
      serial_(connection_serial),
      over_tls_(over_tls),
      sni_(sni) {}

Http2ClientSession::~Http2ClientSession() {
  Abort();
  if (session_ != nullptr) nghttp2_session_del(session_);
  retired_.clear();  // after the session: nghttp2 holds pointers to them until then
}

bool Http2ClientSession::Start(absl::string_view initial) {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_invalid_header_callback(callbacks, Callbacks::OnInvalidHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, Callbacks::OnStreamClose);
  nghttp2_option* option = nullptr;
  if (nghttp2_option_new(&option) != 0) {
    nghttp2_session_callbacks_del(callbacks);
    return false;
  }
  // Request bytes are acknowledged only once the exchange took them (flow control bounds what
  // the proxy buffers per stream and per connection).
  nghttp2_option_set_no_auto_window_update(option, 1);
  nghttp2_option_set_stream_reset_rate_limit(option, kResetBurst, kResetRefillPerSecond);
  nghttp2_option_set_max_deflate_dynamic_table_size(option, 4096);
  const int rv = nghttp2_session_server_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) return false;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kHttp2MaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindowBytes)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(worker_.options().max_header_bytes)},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 4096},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, sizeof(settings) / sizeof(settings[0])) != 0 ||
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindowBytes) != 0) {
    return false;
  }
  host_.Http2Deadline(Host::Deadline::kRestart);
  transport_.SetNoDelay();
  if (!initial.empty()) {
    OnRead(initial);
  } else {
    Flush();
  }
  return !failed_;
}

bool Http2ClientSession::StartUpgraded(absl::string_view settings, const MessageHead& head) {
  std::string payload;
  if (!absl::WebSafeBase64Unescape(settings, &payload)) return false;
  if (!Start({})) return false;
  Http2Stream* stream = NewStream(1);
  if (nghttp2_session_upgrade2(session_, reinterpret_cast<const uint8_t*>(payload.data()), payload.size(),
                               head.method == "HEAD", stream) != 0) {
    MaybeReap(stream);
    return false;
  }
  // The HTTP/1.1 request, as stream 1 (half-closed: its body was empty).
  MessageHead& h2 = stream->head_;
  h2.method = head.method;
  h2.url = head.url;
  for (const auto& [name, value] : head.headers) {
    const KnownHeader kind = ClassifyHeader(name);
    if (kind == KnownHeader::kConnection || kind == KnownHeader::kUpgrade ||
        absl::EqualsIgnoreCase(name, "http2-settings")) {
      continue;
    }
    if (kind == KnownHeader::kHost) {
      stream->authority_ = value;
      continue;
    }
    h2.headers.emplace_back(absl::AsciiStrToLower(name), value);
    if (kind == KnownHeader::kOther && absl::EqualsIgnoreCase(name, "content-type") && IsGrpcContentType(value)) {
      stream->grpc_ = true;
    }
  }
  stream->scheme_ = "http";
  stream->request_ended_ = true;
  nghttp2_session_set_stream_user_data(session_, 1, stream);
  BeginRequest(stream, /*counted=*/true);  // counted as the HTTP/1.1 request it came as
  Flush();
  return !failed_;
}

Http2Stream* Http2ClientSession::NewStream(int32_t id) {
  std::unique_ptr<Http2Stream> stream;
  if (!spare_streams_.empty()) {
    stream = std::move(spare_streams_.back());
    spare_streams_.pop_back();
    stream->Reuse(id);
  } else {
    stream = std::make_unique<Http2Stream>(*this, id);
  }
  ++open_streams_;
  if (open_streams_ == 1) host_.Http2Deadline(Host::Deadline::kOff);
  stream->live_index_ = live_.size();
  live_.push_back(stream.get());
  return stream.release();  // owned through live_, then reap_ (see MaybeReap)
}

void Http2ClientSession::BeginRequest(Http2Stream* stream, bool counted) {
  if (!counted) worker_.CountRequest();
  ++requests_;
  MessageHead& head = stream->head_;
  head.version_major = 2;
  head.version_minor = 0;
  head.keep_alive = true;
  if (stream->head_too_large_) {
    dp::LocalResponse response;
    response.status = 431;
    response.message = dp::kMsgHeaderTooLarge;
    SubmitLocal(stream, response, {});
    return;
  }
  // RFC 9113 §8.3.1: :authority stands for Host; a request without either has no host.
  if (!stream->authority_.empty()) {
    head.headers.erase(std::remove_if(head.headers.begin(), head.headers.end(),
                                      [](const auto& h) { return h.first == "host"; }),
                       head.headers.end());
    head.headers.emplace(head.headers.begin(), "host", stream->authority_);
  }
  RequestHeadCheck check;
  const bool connect = head.method == "CONNECT";
  if (connect || stream->head_bad_ || head.url.empty() || !ParseRequestTarget(head.url, &check.target) ||
      !check.target.authority.empty()) {
    dp::LocalResponse response;
    response.status = 400;
    response.message = dp::kMsgBadRequest;
    SubmitLocal(stream, response, {});
    return;
  }
  if (const std::string* host = head.Find("host"); host != nullptr) {
    if (!IsValidHostValue(*host)) {
      dp::LocalResponse response;
      response.status = 400;
      response.message = dp::kMsgBadRequest;
      SubmitLocal(stream, response, {});
      return;
    }
    check.host = *host;
    check.has_host = true;
  }
  // A body without content-length goes to an HTTP/1.1 upstream chunked.
  head.chunked = !stream->request_ended_ && !head.has_content_length;
  if (stream->request_ended_ && !head.has_content_length) head.content_length = 0;
  stream->exchange_ = worker_.exchange_pool().Take();
  stream->exchange_running_ = true;
  stream->exchange_->Begin(worker_, *stream, worker_.CurrentConfig(), head, check, client_ip_, serial_, requests_,
                           over_tls_, sni_);
  if (stream->exchange_running_) stream->DeliverRequestBody();
}

void Http2ClientSession::SubmitLocal(Http2Stream* stream, const dp::LocalResponse& response,
                                     absl::Span<const std::pair<std::string, std::string>> extra_headers) {
  if (stream->response_submitted_ || stream->closed_) return;
  stream->response_submitted_ = true;
  stream->response_ended_ = true;
  std::vector<std::pair<std::string, std::string>> fields;
  std::string status = absl::StrCat(response.status);
  std::string body;
  if (stream->grpc_) {
    // Kong answers gRPC requests with a gRPC status, never an HTML or JSON body.
    status = "200";
    fields.emplace_back("content-type", "application/grpc");
    fields.emplace_back("grpc-status", absl::StrCat(response.grpc_status >= 0 ? response.grpc_status
                                                                               : GrpcStatusForHttpStatus(response.status)));
    const absl::string_view message = !response.message.empty() ? response.message
                                                                 : HttpReasonPhrase(response.status);
    fields.emplace_back("grpc-message", PercentEncodeGrpcMessage(message));
  } else {
    std::string content_type;
    body = LocalResponseBody(response, &content_type);
    if (!content_type.empty()) fields.emplace_back("content-type", std::move(content_type));
    fields.emplace_back("content-length", absl::StrCat(body.size()));
  }
  fields.emplace_back("server", kServerToken);
  for (const auto& [name, value] : response.headers) fields.emplace_back(absl::AsciiStrToLower(name), value);
  for (const auto& [name, value] : extra_headers) fields.emplace_back(absl::AsciiStrToLower(name), value);
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size() + 1);
  nva.push_back(MakeNv(":status", status));
  for (const auto& [name, value] : fields) {
    if (IsConnectionSpecific(ClassifyHeader(name))) continue;  // a plugin's Connection: close
    nva.push_back(MakeNv(name, value));
  }
  const bool has_body = !body.empty() && stream->head_.method != "HEAD";
  if (has_body) {
    stream->response_body_ = std::move(body);
    stream->response_sent_ = 0;
  }
  nghttp2_data_provider provider;
  provider.source.ptr = stream;
  provider.read_callback = Callbacks::ReadResponseBody;
  stream->response_has_body_ = has_body;
  if (nghttp2_submit_response(session_, stream->id_, nva.data(), nva.size(), has_body ? &provider : nullptr) != 0) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream->id_, NGHTTP2_INTERNAL_ERROR);
  }
  if (!has_body) stream->StopUnfinishedRequest();  // else once the body went (ReadResponseBody)
  Flush();
}

void Http2ClientSession::OnRead(absl::string_view data) {
  if (failed_ || session_ == nullptr) return;
  Reap();
  in_flush_ = true;
  const ssize_t consumed =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  in_flush_ = false;
  if (consumed < 0) {
    PORTICO_LOG(kDebug, "proxy", "HTTP/2 error from ", client_ip_, ": ", nghttp2_strerror(static_cast<int>(consumed)));
    // nghttp2 has queued a GOAWAY for protocol errors: try to send it, then close.
    if (consumed != NGHTTP2_ERR_NOMEM) {
      nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
      Flush();
    }
    Fail();
    return;
  }
  Flush();
  UpdateReading();
}

void Http2ClientSession::OnWritten() {
  if (failed_) return;
  Reap();
  if (transport_.pending_write_bytes() < kLowWaterBytes) {
    // The connection's queue counts in every stream's backlog: each exchange the queue paused
    // may go on (the upstream is resumed only where it was paused).
    for (Http2Stream* stream : live_) {
      if (stream->exchange_running_ && !stream->notify_drained_ && stream->ResponseBacklog() < kLowWaterBytes) {
        stream->notify_drained_ = true;
        drained_.push_back(stream);
      }
    }
    Flush();  // sends what the queue held back, then notifies
  }
  UpdateReading();
  UpdateIdle();
}

bool Http2ClientSession::SpendResetToken() {
  const uint64_t now = uv_now(worker_.loop());
  reset_tokens_ = std::min<double>(
      kResetBurst, reset_tokens_ + static_cast<double>(now - reset_tokens_at_ms_) * kResetRefillPerSecond / 1000.0);
  reset_tokens_at_ms_ = now;
  if (reset_tokens_ < 1) return false;
  reset_tokens_ -= 1;
  return true;
}

void Http2ClientSession::UpdateIdle() {
  // The whole connection waits on the client (no stream open, or frames queued that it does not
  // read): the deadline restarts with each progress.
  if (open_streams_ == 0 || transport_.pending_write_bytes() > 0) {
    host_.Http2Deadline(Host::Deadline::kRestart);
    return;
  }
  // Streams the client holds (response bytes behind a window it keeps closed, a body a plugin
  // waits for): each is timed from when it started waiting, whatever the other streams do, so
  // the deadline runs from the first of them (OnIdleDeadline resets those held long enough).
  const uint64_t now = uv_now(worker_.loop());
  bool held = false;
  for (Http2Stream* stream : live_) {
    const bool waits = stream->response_body_.size() > stream->response_sent_ ||
                       (stream->waits_for_body_ && stream->exchange_running_ && !stream->request_ended_);
    if (!waits) {
      stream->blocked_since_ms_ = 0;
      continue;
    }
    if (stream->blocked_since_ms_ == 0) stream->blocked_since_ms_ = now;
    held = true;
  }
  host_.Http2Deadline(held ? Host::Deadline::kKeep : Host::Deadline::kOff);
}

void Http2ClientSession::OnEof() {
  // A client that half-closes an HTTP/2 connection is done with it.
  Fail();
}

void Http2ClientSession::OnIdleDeadline() {
  if (failed_) return;
  if (open_streams_ == 0 && transport_.pending_write_bytes() == 0) {
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
    Flush();
    Fail();  // idle
    return;
  }
  if (transport_.pending_write_bytes() > 0) {
    Fail();  // a client that stopped reading its responses
    return;
  }
  const uint64_t now = uv_now(worker_.loop());
  const uint64_t timeout = static_cast<uint64_t>(worker_.options().client_timeout_ms);
  std::vector<Http2Stream*> held;
  for (Http2Stream* stream : live_) {
    // (The sweep fires up to kDeadlineSweepMs late: a stream that started waiting within that
    // slack of the deadline counts as having waited it out.)
    if (stream->blocked_since_ms_ != 0 && now - stream->blocked_since_ms_ + kDeadlineSweepMs >= timeout) {
      held.push_back(stream);
    }
  }
  for (Http2Stream* stream : held) {
    stream->reset_by_us_ = true;  // the client's doing, but it already cost it the timeout
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream->id_, NGHTTP2_CANCEL);
  }
  if (Flush()) UpdateIdle();  // streams still waiting keep the deadline running
}

void Http2ClientSession::GoAway() {
  if (failed_ || session_ == nullptr || going_away_) return;
  going_away_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  Flush();
}

void Http2ClientSession::GoAwayNotice() {
  if (failed_ || session_ == nullptr || going_away_) return;
  if (nghttp2_submit_shutdown_notice(session_) == 0) Flush();
}

void Http2ClientSession::Abort() {
  failed_ = true;
  drained_.clear();
  // The streams may be inside a call from their exchange right now (a write that failed): they
  // are cancelled here and freed with the session, never from inside that call.
  for (Http2Stream* stream : live_) {
    if (session_ != nullptr && !stream->closed_) nghttp2_session_set_stream_user_data(session_, stream->id_, nullptr);
    stream->closed_ = true;
    if (stream->exchange_running_) {
      stream->exchange_running_ = false;
      stream->exchange_->Cancel();
    }
    retired_.emplace_back(stream);
  }
  live_.clear();
  for (Http2Stream* stream : reap_) retired_.emplace_back(stream);
  reap_.clear();
}

bool Http2ClientSession::Flush() {
  if (in_flush_ || failed_ || session_ == nullptr) return !failed_;
  in_flush_ = true;
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      in_flush_ = false;
      Fail();
      return false;
    }
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  in_flush_ = false;
  if (!out_.empty()) {
    const bool ok = transport_.Write(out_);
    out_.clear();
    if (!ok) {
      Fail();
      return false;
    }
  }
  NotifyDrained();
  if (!failed_ && nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0 &&
      transport_.pending_write_bytes() == 0 && !ExchangeFinishing()) {
    Fail();  // GOAWAY exchanged (or a connection error) and every stream done
    return false;
  }
  if (!failed_) UpdateIdle();
  return !failed_;
}

bool Http2ClientSession::ExchangeFinishing() const {
  // Its response went out whole, and it is on its way to ExchangeDone (the close waits for it:
  // MaybeReap flushes again, so the exchange ends normally instead of being cancelled).
  for (const Http2Stream* stream : live_) {
    if (stream->exchange_running_ && stream->response_ended_ && stream->request_end_delivered_) return true;
  }
  return false;
}

void Http2ClientSession::NotifyDrained() {
  while (!drained_.empty() && !failed_) {
    Http2Stream* stream = drained_.back();
    drained_.pop_back();
    stream->notify_drained_ = false;
    if (stream->exchange_running_ && stream->ResponseBacklog() < kLowWaterBytes) {
      stream->exchange_->OnDownstreamDrained();
    }
  }
}

void Http2ClientSession::UpdateReading() {
  if (failed_) return;
  if (transport_.pending_write_bytes() >= kHighWaterBytes) {
    transport_.StopReading();  // a client that does not read its responses sends no more requests
  } else {
    transport_.StartReading();
  }
}

void Http2ClientSession::Fail() {
  if (failed_) return;
  failed_ = true;
  host_.Http2Finished();
}

void Http2ClientSession::MaybeReap(Http2Stream* stream) {
  if (stream->reaped_ || stream->exchange_running_ || !stream->closed_) return;
  stream->reaped_ = true;
  live_[stream->live_index_] = live_.back();
  live_[stream->live_index_]->live_index_ = stream->live_index_;
  live_.pop_back();
  reap_.push_back(stream);
  --open_streams_;
  if (open_streams_ == 0 && !failed_) {
    host_.Http2Deadline(Host::Deadline::kRestart);
    Flush();  // a GOAWAY'd session whose last stream this was closes now
  }
}

void Http2ClientSession::Reap() {
  if (reap_.empty()) return;
  std::vector<Http2Stream*> streams;
  streams.swap(reap_);
  for (Http2Stream* stream : streams) {
    if (stream->exchange_ != nullptr) {
      if (stream->exchange_finished_ && stream->exchange_->WorthPooling()) {
        stream->exchange_->Reset();
        worker_.exchange_pool().Give(std::move(stream->exchange_));
      }
      stream->exchange_.reset();
    }
    if (spare_streams_.size() < 8) {
      spare_streams_.emplace_back(stream);
    } else {
      delete stream;
    }
  }
}

// ---- one stream --------------------------------------------------------------------------------

void Http2Stream::Reuse(int32_t id) {
  id_ = id;
  head_.Clear();
  authority_.clear();
  scheme_.clear();
  saw_host_ = grpc_ = head_too_large_ = head_bad_ = waits_for_body_ = reset_by_us_ = false;
  blocked_since_ms_ = 0;
  head_bytes_ = 0;
  exchange_running_ = request_ended_ = request_end_delivered_ = false;
  request_body_.clear();
  unacked_request_bytes_ = 0;
  response_submitted_ = response_has_body_ = response_ended_ = response_deferred_ = false;
  response_body_.clear();
  response_sent_ = 0;
  trailers_.clear();
  closed_ = reaped_ = notify_drained_ = exchange_finished_ = false;
}

void Http2Stream::DeliverRequestBody() {
  Http2ClientSession& session = *session_;
  while (exchange_running_ && exchange_->WantsRequestBody() && !request_end_delivered_) {
    if (!request_body_.empty()) {
      if (exchange_->UpstreamBacklog() >= kHighWaterBytes) return;  // RequestBodyWanted resumes
      const size_t n = request_body_.size();
      std::string body;
      body.swap(request_body_);
      exchange_->OnRequestBody(body);
      if (request_body_.empty()) {
        body.clear();
        request_body_.swap(body);  // keep the capacity
      } else {
        request_body_.insert(0, body);  // (not reached: the exchange takes a piece whole)
      }
      if (!closed_ && session.session_ != nullptr) {
        nghttp2_session_consume(session.session_, id_, n);
      }
      unacked_request_bytes_ -= std::min(unacked_request_bytes_, n);
      continue;
    }
    if (!request_ended_) return;
    request_end_delivered_ = true;
    exchange_->OnRequestComplete();  // may end the exchange (ExchangeDone)
    return;
  }
}

void Http2Stream::SendLocal(const dp::LocalResponse& response,
                            absl::Span<const std::pair<std::string, std::string>> extra_headers) {
  if (exchange_ != nullptr) {  // the body ({"message": ...} when none is given); fields not counted
    exchange_->response_bytes += !response.body.empty() ? response.body.size()
                                 : response.message.empty() ? 0 : response.message.size() + sizeof("{\"message\":\"\"}");
  }
  session_->SubmitLocal(this, response, extra_headers);
}

bool Http2Stream::SendResponseHead(const MessageHead& head,
                                   absl::Span<const std::pair<std::string, std::string>> extra_headers,
                                   absl::Span<const absl::string_view> removed_headers) {
  Http2ClientSession& session = *session_;
  const bool no_body = (head.status >= 100 && head.status < 200) || head.status == 204 || head.status == 304 ||
                       head_.method == "HEAD";
  if (response_submitted_ || closed_) return !no_body;
  response_submitted_ = true;
  response_has_body_ = !no_body;
  // Names are lowercased into one buffer first (nghttp2 copies them on submit); the vector of
  // name/value views is built once the buffer stops growing.
  std::string& names = session.scratch_;
  names.clear();
  struct Field {
    size_t name_at, name_size;
    absl::string_view value;
  };
  absl::InlinedVector<Field, 24> fields;
  const HopByHopFilter hop(head);
  std::string via;
  auto add = [&](absl::string_view name, absl::string_view value) {
    const size_t at = names.size();
    names.append(name.data(), name.size());
    for (size_t i = at; i < names.size(); ++i) names[i] = absl::ascii_tolower(static_cast<unsigned char>(names[i]));
    fields.push_back(Field{at, name.size(), value});
  };
  for (const auto& [name, value] : head.headers) {
    const KnownHeader kind = ClassifyHeader(name);
    if (hop.IsHopByHop(name, kind)) continue;
    if (kind == KnownHeader::kVia) {
      if (!via.empty()) via += ", ";
      via += value;
      continue;
    }
    if (kind == KnownHeader::kContentLength && (head.chunked || !head.has_content_length)) continue;
    if (!removed_headers.empty()) {
      bool removed = false;
      for (absl::string_view r : removed_headers) removed = removed || absl::EqualsIgnoreCase(r, name);
      if (removed) continue;
    }
    add(name, value);
  }
  if (via.empty()) {
    add("via", kOwnVia);
  } else {
    absl::StrAppend(&via, ", ", kOwnVia);
    add("via", via);
  }
  for (const auto& [name, value] : extra_headers) {
    // A plugin's connection-specific header would make the response malformed.
    if (!IsConnectionSpecific(ClassifyHeader(name))) add(name, value);
  }
  char status[4];
  const int code = head.status >= 100 && head.status <= 999 ? head.status : 502;
  status[0] = static_cast<char>('0' + code / 100);
  status[1] = static_cast<char>('0' + code / 10 % 10);
  status[2] = static_cast<char>('0' + code % 10);
  status[3] = '\0';
  absl::InlinedVector<nghttp2_nv, 24> nva;
  nva.push_back(MakeNv(":status", absl::string_view(status, 3)));
  for (const Field& f : fields) nva.push_back(MakeNv(absl::string_view(names).substr(f.name_at, f.name_size), f.value));
  if (exchange_ != nullptr) {
    for (const nghttp2_nv& nv : nva) exchange_->response_bytes += nv.namelen + nv.valuelen;
  }
  nghttp2_data_provider provider;
  provider.source.ptr = this;
  provider.read_callback = Http2ClientSession::Callbacks::ReadResponseBody;
  if (nghttp2_submit_response(session.session_, id_, nva.data(), nva.size(), no_body ? nullptr : &provider) != 0) {
    nghttp2_submit_rst_stream(session.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  }
  return !no_body;
}

void Http2Stream::SendResponseBody(absl::string_view data) {
  if (closed_) return;
  response_body_.append(data.data(), data.size());
  if (response_deferred_) {
    response_deferred_ = false;
    nghttp2_session_resume_data(session_->session_, id_);
  }
}

void Http2Stream::SendResponseTrailers(absl::Span<const std::pair<std::string, std::string>> trailers) {
  for (const auto& [name, value] : trailers) {
    const KnownHeader kind = ClassifyHeader(name);
    if (kind != KnownHeader::kOther) continue;  // framing and hop-by-hop fields are not trailers
    trailers_.emplace_back(absl::AsciiStrToLower(name), value);
  }
}

void Http2Stream::FlushResponse() { session_->Flush(); }

void Http2Stream::EndResponse() {
  response_ended_ = true;
  if (!closed_ && response_has_body_ && response_deferred_) {
    response_deferred_ = false;
    nghttp2_session_resume_data(session_->session_, id_);
  }
  if (!response_has_body_) StopUnfinishedRequest();  // else once the body went (ReadResponseBody)
  session_->Flush();
}

size_t Http2Stream::ResponseBacklog() const {
  return (response_body_.size() - response_sent_) + session_->transport_.pending_write_bytes();
}

void Http2Stream::RequestBodyWanted() {
  DeliverRequestBody();
  session_->Flush();  // window updates
}

void Http2Stream::WaitForRequestBody() {
  waits_for_body_ = true;
  session_->UpdateIdle();
}

void Http2Stream::Abort() {
  if (closed_) return;
  reset_by_us_ = true;
  nghttp2_submit_rst_stream(session_->session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  session_->Flush();
}

void Http2Stream::ExchangeDone() {
  if (!exchange_running_) return;
  exchange_running_ = false;
  exchange_finished_ = true;
  session_->MaybeReap(this);
}

void Http2Stream::StopUnfinishedRequest() {
  // RFC 9113 §8.1: after a complete response, RST_STREAM NO_ERROR tells the client to stop
  // sending the request. Not to gRPC clients: grpc-core turns it into INTERNAL even after the
  // status arrived; the rest of a gRPC request is read and discarded instead.
  if (!closed_ && !request_ended_ && !grpc_) {
    nghttp2_submit_rst_stream(session_->session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_NO_ERROR);
  }
}

}  // namespace portico::dp
