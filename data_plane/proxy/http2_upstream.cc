#include "data_plane/proxy/http2_upstream.h"

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/http/known_headers.h"
#include "common/base/log.h"
#include "data_plane/proxy/http2_upstream_pool.h"
#include "data_plane/proxy/worker.h"

namespace portico::dp {
namespace {

constexpr uint64_t kNever = ~uint64_t{0};

absl::string_view View(const uint8_t* data, size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(data), size);
}

}  // namespace

// ---- stream

bool Http2UpstreamStream::connected() const {
  const Http2UpstreamConnection::State state = connection_->state();
  return state == Http2UpstreamConnection::State::kActive || state == Http2UpstreamConnection::State::kDraining;
}

void Http2UpstreamStream::SendBody(absl::string_view data) {
  if (observer_ == nullptr || request_ended_ || data.empty()) return;
  if (body_offset_ > 0 && body_offset_ == body_.size()) {
    body_.clear();
    body_offset_ = 0;
  }
  body_.append(data.data(), data.size());
  if (pending_write_bytes() >= kHighWaterBytes) drain_wanted_ = true;
  connection_->ResumeBody(this);
}

void Http2UpstreamStream::EndRequest() {
  if (observer_ == nullptr || request_ended_) return;
  request_ended_ = true;
  connection_->ResumeBody(this);
}

void Http2UpstreamStream::PauseReading() { reading_paused_ = true; }

void Http2UpstreamStream::ResumeReading() {
  if (!reading_paused_) return;
  reading_paused_ = false;
  connection_->Consume(this);
}

void Http2UpstreamStream::Release() {
  if (observer_ == nullptr) return;
  observer_ = nullptr;
  Http2UpstreamConnection* connection = connection_;
  if (!request_sent_ && !closed_) {
    connection->CancelStream(this);  // may recycle this stream
    return;
  }
  connection->MaybeDead(this);
}

void Http2UpstreamStream::Abort() {
  if (observer_ == nullptr) return;
  observer_ = nullptr;
  connection_->CancelStream(this);
}

void Http2UpstreamStream::Clear() {
  id_ = -1;
  header_list_bytes_ = 0;
  observer_ = nullptr;
  body_.clear();
  body_offset_ = 0;
  request_ended_ = false;
  request_sent_ = false;
  data_deferred_ = false;
  drain_wanted_ = false;
  reading_paused_ = false;
  unconsumed_ = 0;
  in_read_list_ = false;
  dead_ = false;
  head_.Clear();
  head_delivered_ = false;
  skip_body_ = false;
  split_trailers_only_ = false;
  trailers_.clear();
  response_bytes_seen_ = false;
  response_complete_ = false;
  closed_ = false;
  read_ms_ = 0;
  read_deadline_ms_ = 0;
  deadline_ms_ = 0;
}

// ---- trampolines

struct Http2UpstreamConnection::Uv {
  static Http2UpstreamConnection* Self(uv_handle_t* h) { return static_cast<Http2UpstreamConnection*>(h->data); }
  static void Timer(uv_timer_t* t) { Self(reinterpret_cast<uv_handle_t*>(t))->OnTimer(); }
  static void Closed(uv_handle_t* h) { Self(h)->OnHandleClosed(); }
};

struct Http2UpstreamConnection::Nghttp2 {
  static Http2UpstreamConnection* Self(void* user_data) { return static_cast<Http2UpstreamConnection*>(user_data); }
  static int Header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t name_length,
                    const uint8_t* value, size_t value_length, uint8_t, void* user_data) {
    return Self(user_data)->OnHeader(frame->hd.stream_id, View(name, name_length), View(value, value_length));
  }
  static int FrameReceived(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    return Self(user_data)->OnFrameReceived(frame->hd.type, frame->hd.flags, frame->hd.stream_id);
  }
  static int DataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t length,
                       void* user_data) {
    return Self(user_data)->OnDataChunk(stream_id, View(data, length));
  }
  static int StreamClosed(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
    return Self(user_data)->OnStreamClosed(stream_id, error_code);
  }
  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buffer, size_t length, uint32_t* data_flags,
                          nghttp2_data_source* source, void* user_data) {
    return Self(user_data)->ReadBody(static_cast<Http2UpstreamStream*>(source->ptr), buffer, length, data_flags);
  }
};

// ---- connection

Http2UpstreamConnection::Http2UpstreamConnection(Http2UpstreamPool& pool, uv_loop_t* loop, char* read_buffer,
                                                 size_t read_buffer_size, std::string pool_key)
    : pool_(pool), loop_(loop), pool_key_(std::move(pool_key)), tcp_(loop, read_buffer, read_buffer_size, this) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
}

Http2UpstreamConnection::~Http2UpstreamConnection() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

void Http2UpstreamConnection::UseTls(SSL* ssl, char* plain_buffer, size_t plain_buffer_size) {
  static constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
  SSL_set_alpn_protos(ssl, kAlpnH2, sizeof(kAlpnH2));
  tls_ = std::make_unique<TlsTransport>(&tcp_, ssl, TlsTransport::Role::kClient, plain_buffer, plain_buffer_size,
                                        this);
}

void Http2UpstreamConnection::OnUpstreamTlsSession(SSL_SESSION* session) { pool_.KeepTlsSession(pool_key_, session); }

bool Http2UpstreamConnection::InitSession() {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) return false;
  nghttp2_session_callbacks_set_on_header_callback(callbacks, Nghttp2::Header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, Nghttp2::FrameReceived);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, Nghttp2::DataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, Nghttp2::StreamClosed);
  nghttp2_option* option = nullptr;
  if (nghttp2_option_new(&option) != 0) {
    nghttp2_session_callbacks_del(callbacks);
    return false;
  }
  nghttp2_option_set_no_auto_window_update(option, 1);
  // Until the server's SETTINGS arrive, assume its limit is ours.
  nghttp2_option_set_peer_max_concurrent_streams(option, kMaxStreamsPerUpstreamConnection);
  const int rc = nghttp2_session_client_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rc != 0) return false;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kUpstreamStreamWindowBytes)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kMaxUpstreamHeaderListBytes)},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0) return false;
  return nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kUpstreamConnectionWindowBytes) == 0;
}

absl::Status Http2UpstreamConnection::Connect(const struct sockaddr* address, int64_t connect_timeout_ms) {
  if (!InitSession()) return absl::ResourceExhaustedError("upstream HTTP/2: cannot create a session (out of memory)");
  connect_timeout_ms_ = connect_timeout_ms;
  connect_deadline_ms_ = uv_now(loop_) + static_cast<uint64_t>(std::max<int64_t>(connect_timeout_ms, 1));
  absl::Status status = UpstreamConnectStatus(WithTransport([&](auto& t) { return t.Connect(address); }));
  if (status.ok()) RearmTimer();
  return status;
}

bool Http2UpstreamConnection::HasCapacity() const {
  if (state_ != State::kConnecting && state_ != State::kActive) return false;
  if (has_deferred_error_ || nghttp2_session_check_request_allowed(session_) == 0) return false;
  const uint32_t peer_limit = nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return active_streams_ < std::min(peer_limit, kMaxStreamsPerUpstreamConnection);
}

Http2UpstreamStream* Http2UpstreamConnection::OpenStream(
    UpstreamObserver* observer, absl::Span<const std::pair<std::string, std::string>> headers,
    const UpstreamTimeouts& timeouts, uint64_t deadline_ms, bool end_stream) {
  Http2UpstreamStream* stream = nullptr;
  if (!spare_.empty()) {
    stream = spare_.back();
    spare_.pop_back();
  } else {
    streams_.push_back(std::make_unique<Http2UpstreamStream>());
    stream = streams_.back().get();
  }
  stream->connection_ = this;
  absl::InlinedVector<nghttp2_nv, 32> nva;
  nva.reserve(headers.size());
  for (const auto& [name, value] : headers) {
    nghttp2_nv nv;
    nv.name = reinterpret_cast<uint8_t*>(const_cast<char*>(name.data()));
    nv.namelen = name.size();
    nv.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
    nv.valuelen = value.size();
    nv.flags = NGHTTP2_NV_FLAG_NONE;  // nghttp2 copies them
    nva.push_back(nv);
  }
  nghttp2_data_provider body;
  body.source.ptr = stream;
  body.read_callback = Nghttp2::ReadBody;
  const int32_t id =
      nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), end_stream ? nullptr : &body, stream);
  if (id < 0) {
    stream->Clear();
    spare_.push_back(stream);
    return nullptr;
  }
  ++active_streams_;
  stream->id_ = id;
  stream->observer_ = observer;
  stream->request_ended_ = end_stream;
  stream->request_sent_ = end_stream;
  stream->read_ms_ = timeouts.read_ms;
  stream->read_deadline_ms_ = uv_now(loop_) + static_cast<uint64_t>(std::max<int64_t>(timeouts.read_ms, 1));
  stream->deadline_ms_ = deadline_ms;
  // Not from inside nghttp2's callbacks (a stream opened while a response completes): the read
  // flushes when it returns.
  if (state_ == State::kActive && !in_read_) Flush();  // errors: reported from the timer
  RearmTimer();
  return stream;
}

void Http2UpstreamConnection::ResumeBody(Http2UpstreamStream* stream) {
  if (stream->data_deferred_ && !stream->closed_) {
    stream->data_deferred_ = false;
    nghttp2_session_resume_data(session_, stream->id_);
  }
  if (state_ == State::kActive && !in_read_) Flush();
}

void Http2UpstreamConnection::CancelStream(Http2UpstreamStream* stream) {
  if (!stream->closed_ && session_ != nullptr && state_ != State::kClosing) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream->id_, NGHTTP2_CANCEL);
    if (state_ != State::kConnecting && !in_read_) Flush();
  }
  MaybeDead(stream);
}

void Http2UpstreamConnection::Consume(Http2UpstreamStream* stream) {
  if (stream->unconsumed_ == 0 || session_ == nullptr) return;
  if (stream->closed_) {
    nghttp2_session_consume_connection(session_, stream->unconsumed_);
  } else {
    nghttp2_session_consume(session_, stream->id_, stream->unconsumed_);
  }
  stream->unconsumed_ = 0;
  if (state_ == State::kActive && !in_read_) Flush();
}

void Http2UpstreamConnection::MaybeDead(Http2UpstreamStream* stream) {
  if (stream->observer_ != nullptr || stream->dead_) return;
  if (!stream->closed_ && state_ != State::kClosing) return;
  stream->dead_ = true;
  dead_.push_back(stream);
  if (!in_read_ && !in_flush_) RecycleDead();
}

void Http2UpstreamConnection::RecycleDead() {
  std::vector<Http2UpstreamStream*> dead;
  dead.swap(dead_);
  for (Http2UpstreamStream* stream : dead) Recycle(stream);
  dead.clear();
  if (dead_.empty()) dead_.swap(dead);  // keep the capacity
  if (active_streams_ == 0 && state_ == State::kActive) idle_since_ms_ = uv_now(loop_);
  MaybeCloseDraining();
  if (state_ != State::kClosing) RearmTimer();
}

void Http2UpstreamConnection::Recycle(Http2UpstreamStream* stream) {
  if (stream->unconsumed_ > 0 && session_ != nullptr) nghttp2_session_consume_connection(session_, stream->unconsumed_);
  if (session_ != nullptr && !stream->closed_) nghttp2_session_set_stream_user_data(session_, stream->id_, nullptr);
  stream->Clear();
  --active_streams_;
  spare_.push_back(stream);
}

void Http2UpstreamConnection::MaybeCloseDraining() {
  if (state_ == State::kDraining && active_streams_ == 0) Close();
}

ptrdiff_t Http2UpstreamConnection::ReadBody(Http2UpstreamStream* stream, uint8_t* buffer, size_t length,
                                            uint32_t* data_flags) {
  const size_t available = stream->pending_write_bytes();
  if (available == 0 && !stream->request_ended_) {
    stream->data_deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  const size_t n = std::min(available, length);
  if (n > 0) std::memcpy(buffer, stream->body_.data() + stream->body_offset_, n);
  stream->body_offset_ += n;
  if (stream->body_offset_ == stream->body_.size()) {
    stream->body_.clear();
    stream->body_offset_ = 0;
    if (stream->request_ended_) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      stream->request_sent_ = true;
    }
  }
  return static_cast<ptrdiff_t>(n);
}

int Http2UpstreamConnection::OnHeader(int32_t stream_id, absl::string_view name, absl::string_view value) {
  auto* stream = static_cast<Http2UpstreamStream*>(nghttp2_session_get_stream_user_data(session_, stream_id));
  if (stream == nullptr || stream->observer_ == nullptr) return 0;
  stream->response_bytes_seen_ = true;
  stream->header_list_bytes_ += name.size() + value.size() + 32;
  if (stream->header_list_bytes_ > kMaxUpstreamHeaderListBytes) {
    FailStream(stream, UpstreamError::kInvalidResponse);  // RST_STREAM; later fields are ignored
    return 0;
  }
  if (stream->head_delivered_) {
    stream->trailers_.emplace_back(name, value);
    return 0;
  }
  if (name == ":status") {
    int status = 0;
    if (value.size() == 3 && absl::SimpleAtoi(value, &status)) stream->head_.status = status;
    return 0;
  }
  if (!name.empty() && name[0] == ':') return 0;  // nghttp2 has checked the pseudo-headers
  if (name == "content-length") {
    uint64_t length = 0;
    if (absl::SimpleAtoi(value, &length)) {
      stream->head_.has_content_length = true;
      stream->head_.content_length = length;
    }
  }
  stream->head_.headers.emplace_back(name, value);
  return 0;
}

int Http2UpstreamConnection::OnFrameReceived(int type, uint8_t flags, int32_t stream_id) {
  if (type == NGHTTP2_GOAWAY) {
    if (state_ == State::kActive) state_ = State::kDraining;  // no new streams; the pool skips it
    return 0;
  }
  if (type != NGHTTP2_HEADERS && type != NGHTTP2_DATA) return 0;
  auto* stream = static_cast<Http2UpstreamStream*>(nghttp2_session_get_stream_user_data(session_, stream_id));
  if (stream == nullptr || stream->observer_ == nullptr) return 0;
  stream->read_deadline_ms_ = uv_now(loop_) + static_cast<uint64_t>(std::max<int64_t>(stream->read_ms_, 1));
  if (type == NGHTTP2_HEADERS && !stream->head_delivered_) {
    MessageHead& head = stream->head_;
    if (head.status >= 100 && head.status < 200) {  // interim: dropped; the final head follows
      head.Clear();
      return 0;
    }
    if (head.status < 200) {
      FailStream(stream, UpstreamError::kInvalidResponse);
      return 0;
    }
    head.version_major = 2;
    head.version_minor = 0;
    head.keep_alive = true;
    if ((flags & NGHTTP2_FLAG_END_STREAM) != 0 && stream->split_trailers_only_) SplitTrailersOnly(stream);
    stream->head_delivered_ = true;
    const UpstreamHeadAction action = stream->observer_->OnUpstreamHead(head);
    if (stream->observer_ == nullptr) return 0;  // the observer let go of the stream
    if (action == UpstreamHeadAction::kError) {
      FailStream(stream, UpstreamError::kInvalidResponse);
      return 0;
    }
    stream->skip_body_ = action == UpstreamHeadAction::kSkipBody;
    if (!stream->in_read_list_) {  // the head goes to the client at this read's end
      stream->in_read_list_ = true;
      read_list_.push_back(stream);
    }
  }
  if ((flags & NGHTTP2_FLAG_END_STREAM) != 0) {
    if (!stream->head_delivered_) {
      FailStream(stream, UpstreamError::kInvalidResponse);
      return 0;
    }
    CompleteStream(stream);
  }
  return 0;
}

int Http2UpstreamConnection::OnDataChunk(int32_t stream_id, absl::string_view data) {
  auto* stream = static_cast<Http2UpstreamStream*>(nghttp2_session_get_stream_user_data(session_, stream_id));
  if (stream == nullptr) {
    nghttp2_session_consume_connection(session_, data.size());
    return 0;
  }
  stream->unconsumed_ += data.size();
  if (!stream->in_read_list_) {
    stream->in_read_list_ = true;
    read_list_.push_back(stream);
  }
  if (stream->observer_ == nullptr) return 0;
  stream->response_bytes_seen_ = true;
  stream->read_deadline_ms_ = uv_now(loop_) + static_cast<uint64_t>(std::max<int64_t>(stream->read_ms_, 1));
  if (!stream->skip_body_) stream->observer_->OnUpstreamBody(data);  // borrowed until OnUpstreamReadEnd
  return 0;
}

int Http2UpstreamConnection::OnStreamClosed(int32_t stream_id, uint32_t error_code) {
  auto* stream = static_cast<Http2UpstreamStream*>(nghttp2_session_get_stream_user_data(session_, stream_id));
  if (stream == nullptr) return 0;
  stream->closed_ = true;
  if (stream->observer_ != nullptr && !stream->response_complete_) {
    // REFUSED_STREAM (also for streams past a GOAWAY's last id): the upstream did not act on it.
    if (error_code == NGHTTP2_REFUSED_STREAM) stream->response_bytes_seen_ = false;
    FailStream(stream, UpstreamError::kClosed);
    return 0;
  }
  MaybeDead(stream);
  return 0;
}

void Http2UpstreamConnection::SplitTrailersOnly(Http2UpstreamStream* stream) {
  std::vector<std::pair<std::string, std::string>>& fields = stream->head_.headers;
  bool grpc = false;
  for (const auto& [name, value] : fields) {
    grpc = grpc || (name == "content-type" && IsGrpcContentType(value));
  }
  if (!grpc) return;
  size_t kept = 0;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].first == "content-type") {
      if (kept != i) fields[kept] = std::move(fields[i]);
      ++kept;
    } else {
      stream->trailers_.push_back(std::move(fields[i]));
    }
  }
  fields.resize(kept);
}

void Http2UpstreamConnection::CompleteStream(Http2UpstreamStream* stream) {
  stream->response_complete_ = true;
  if (!stream->trailers_.empty()) stream->observer_->OnUpstreamTrailers(stream->trailers_);
  if (stream->observer_ != nullptr) stream->observer_->OnUpstreamComplete();  // calls Release() or Abort()
}

void Http2UpstreamConnection::FailStream(Http2UpstreamStream* stream, UpstreamError error) {
  UpstreamObserver* observer = stream->observer_;
  if (observer == nullptr) return;
  stream->observer_ = nullptr;
  const bool seen = stream->response_bytes_seen_;
  if (!stream->closed_ && session_ != nullptr && state_ != State::kClosing) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream->id_, NGHTTP2_CANCEL);
  }
  MaybeDead(stream);
  observer->OnUpstreamFailure(error, seen);
}

bool Http2UpstreamConnection::Flush() {
  if (session_ == nullptr || state_ == State::kClosing || state_ == State::kConnecting || in_flush_) return true;
  in_flush_ = true;
  bool ok = true;
  while (transport_pending_bytes() < kHighWaterBytes) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      ok = false;
      break;
    }
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    if (out_.size() >= kReadBufferBytes) {
      ok = WithTransport([&](auto& t) { return t.Write(absl::string_view(out_)); });
      out_.clear();
      if (!ok) break;
    }
  }
  if (ok && !out_.empty()) ok = WithTransport([&](auto& t) { return t.Write(absl::string_view(out_)); });
  out_.clear();
  in_flush_ = false;
  if (!ok) FailSoon(UpstreamError::kClosed);
  if (!dead_.empty() && !in_read_) RecycleDead();
  return ok;
}

void Http2UpstreamConnection::AfterEvent() {
  if (state_ == State::kClosing) return;
  // Body pieces of this read are borrowed until each observer's read end; then the window.
  std::vector<Http2UpstreamStream*> list;
  list.swap(read_list_);
  for (Http2UpstreamStream* stream : list) {
    stream->in_read_list_ = false;
    if (stream->observer_ != nullptr) stream->observer_->OnUpstreamReadEnd();
    if (state_ == State::kClosing) return;
    if (!stream->reading_paused_ || stream->observer_ == nullptr) {
      if (stream->unconsumed_ > 0) {
        if (stream->closed_) {
          nghttp2_session_consume_connection(session_, stream->unconsumed_);
        } else {
          nghttp2_session_consume(session_, stream->id_, stream->unconsumed_);
        }
        stream->unconsumed_ = 0;
      }
    }
  }
  list.clear();
  if (read_list_.empty()) read_list_.swap(list);
  Flush();
  if (state_ == State::kClosing) return;
  // Request bodies that fell below the low-water mark: their exchanges read on. (By index: an
  // observer may open a stream, growing streams_.)
  for (size_t i = 0; i < streams_.size(); ++i) {
    Http2UpstreamStream* stream = streams_[i].get();
    if (stream->observer_ != nullptr && stream->drain_wanted_ && stream->pending_write_bytes() < kLowWaterBytes) {
      stream->drain_wanted_ = false;
      stream->observer_->OnUpstreamWriteDrained();
      if (state_ == State::kClosing) return;
    }
  }
  RecycleDead();
}

void Http2UpstreamConnection::OnTransportConnected(int status) {
  if (state_ == State::kClosing) return;
  if (status < 0) {
    if (tls_ != nullptr && !tls_->error().empty() && pool_.AllowTlsLog()) {
      PORTICO_LOG(kWarn, "proxy", "upstream ", pool_key_, ": ", tls_->error());
    }
    Fail(UpstreamError::kConnectFailed);
    return;
  }
  if (tls_ != nullptr) {
    const unsigned char* protocol = nullptr;
    unsigned int length = 0;
    SSL_get0_alpn_selected(tls_->ssl(), &protocol, &length);
    if (length != 2 || std::memcmp(protocol, "h2", 2) != 0) {
      if (pool_.AllowTlsLog()) {
        PORTICO_LOG(kWarn, "proxy", "upstream ", pool_key_, ": the server did not select HTTP/2 (ALPN h2)");
      }
      Fail(UpstreamError::kConnectFailed);
      return;
    }
  }
  state_ = State::kActive;
  WithTransport([](auto& t) { t.SetNoDelay(); });
  WithTransport([](auto& t) { t.StartReading(); });
  if (active_streams_ == 0) idle_since_ms_ = uv_now(loop_);
  Flush();
  for (size_t i = 0; i < streams_.size() && state_ != State::kClosing; ++i) {  // by index: see AfterEvent
    if (streams_[i]->observer_ != nullptr) streams_[i]->observer_->OnUpstreamConnected();
  }
  if (state_ == State::kClosing) return;
  AfterEvent();
  RearmTimer();
}

void Http2UpstreamConnection::OnTransportRead(absl::string_view data) {
  if (state_ == State::kClosing) return;
  in_read_ = true;
  const ssize_t rc = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  in_read_ = false;
  if (state_ == State::kClosing) return;
  if (rc < 0) {
    PORTICO_LOG(kDebug, "proxy", "upstream ", pool_key_, ": HTTP/2: ", nghttp2_strerror(static_cast<int>(rc)));
    Flush();  // the GOAWAY nghttp2 queued, if it can
    Fail(UpstreamError::kInvalidResponse);
    return;
  }
  AfterEvent();
  if (state_ != State::kClosing && nghttp2_session_want_read(session_) == 0 &&
      nghttp2_session_want_write(session_) == 0) {
    Fail(UpstreamError::kClosed);  // nghttp2 ended the session (a connection error): tell the streams
  }
}

void Http2UpstreamConnection::OnTransportEof() {
  if (state_ == State::kClosing) return;
  Fail(UpstreamError::kClosed);
}

void Http2UpstreamConnection::OnTransportReadError(int) {
  if (state_ == State::kClosing) return;
  Fail(UpstreamError::kClosed);
}

void Http2UpstreamConnection::OnTransportWritten(size_t, int status) {
  if (state_ == State::kClosing) return;
  if (status < 0) {
    Fail(UpstreamError::kClosed);
    return;
  }
  if (transport_pending_bytes() < kLowWaterBytes) AfterEvent();
}

void Http2UpstreamConnection::FailSoon(UpstreamError error) {
  if (has_deferred_error_) return;
  has_deferred_error_ = true;
  deferred_error_ = error;
  uv_timer_start(&timer_, Uv::Timer, 0, 0);
}

void Http2UpstreamConnection::Fail(UpstreamError error) {
  if (state_ == State::kClosing) return;
  std::vector<std::pair<UpstreamObserver*, bool>> observers;
  for (const std::unique_ptr<Http2UpstreamStream>& stream : streams_) {
    if (stream->observer_ == nullptr) continue;
    observers.emplace_back(stream->observer_, stream->response_bytes_seen_);
    stream->observer_ = nullptr;
  }
  Close();
  for (const auto& [observer, seen] : observers) observer->OnUpstreamFailure(error, seen);
}

void Http2UpstreamConnection::Close() {
  if (state_ == State::kClosing) return;
  state_ = State::kClosing;
  for (const std::unique_ptr<Http2UpstreamStream>& stream : streams_) stream->observer_ = nullptr;
  pool_.Forget(this);
  pending_closes_ = 2;
  WithTransport([](auto& t) { t.Close(); });
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), Uv::Closed);
}

void Http2UpstreamConnection::OnTransportClosed() { OnHandleClosed(); }

void Http2UpstreamConnection::OnHandleClosed() {
  if (--pending_closes_ == 0) pool_.Destroy(this);  // freed after this loop iteration
}

void Http2UpstreamConnection::RearmTimer() {
  if (state_ == State::kClosing) return;
  if (has_deferred_error_) {
    uv_timer_start(&timer_, Uv::Timer, 0, 0);
    return;
  }
  uint64_t next = kNever;
  if (state_ == State::kConnecting) next = connect_deadline_ms_;
  for (const std::unique_ptr<Http2UpstreamStream>& stream : streams_) {
    if (stream->observer_ == nullptr) continue;
    if (!stream->reading_paused_ && !stream->response_complete_) next = std::min(next, stream->read_deadline_ms_);
    if (stream->deadline_ms_ != 0) next = std::min(next, stream->deadline_ms_);
  }
  if (state_ == State::kActive && active_streams_ == 0) {
    next = std::min(next, idle_since_ms_ + static_cast<uint64_t>(kUpstreamIdleTimeoutMs));
  }
  if (next == kNever) {
    uv_timer_stop(&timer_);
    return;
  }
  const uint64_t now = uv_now(loop_);
  uv_timer_start(&timer_, Uv::Timer, next > now ? next - now : 0, 0);
}

void Http2UpstreamConnection::OnTimer() {
  if (state_ == State::kClosing) return;
  if (has_deferred_error_) {
    Fail(deferred_error_);
    return;
  }
  const uint64_t now = uv_now(loop_);
  if (state_ == State::kConnecting) {
    if (now >= connect_deadline_ms_) {
      Fail(UpstreamError::kConnectTimeout);
      return;
    }
  }
  if (state_ == State::kActive && active_streams_ == 0 &&
      now >= idle_since_ms_ + static_cast<uint64_t>(kUpstreamIdleTimeoutMs)) {
    Close();
    return;
  }
  for (size_t i = 0; i < streams_.size(); ++i) {  // by index: a failed observer may open a stream
    Http2UpstreamStream* stream = streams_[i].get();
    if (stream->observer_ == nullptr) continue;
    if (stream->deadline_ms_ != 0 && now >= stream->deadline_ms_) {
      FailStream(stream, UpstreamError::kDeadlineExceeded);
    } else if (!stream->reading_paused_ && !stream->response_complete_ && now >= stream->read_deadline_ms_) {
      FailStream(stream, UpstreamError::kReadTimeout);
    }
    if (state_ == State::kClosing) return;
  }
  AfterEvent();  // sends the resets
  RearmTimer();
}

}  // namespace portico::dp
