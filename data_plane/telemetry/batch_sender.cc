#include "data_plane/telemetry/batch_sender.h"

#include <netdb.h>
#include <uv.h>

#include <deque>
#include <system_error>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/http/http1_codec.h"
#include "common/net/tcp_transport.h"
#include "data_plane/telemetry/record_ring.h"

namespace portico::dp {

namespace {

int64_t LoopNowMs(uv_loop_t* loop) { return static_cast<int64_t>(uv_now(loop)); }

std::string JsonArray(absl::Span<const std::string> entries) {
  size_t size = 2;
  for (const std::string& e : entries) size += e.size() + 1;
  std::string body;
  body.reserve(size);
  body.push_back('[');
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) body.push_back(',');
    body.append(entries[i]);
  }
  body.push_back(']');
  return body;
}

constexpr int64_t kTickMs = 5;
constexpr int64_t kFailureReportIntervalMs = 10000;

}  // namespace

// One HTTP/1.1 request on its own connection: resolve, connect, write, read the status line and
// headers (Http1Codec), report the status (or a negative libuv error), close. Owned by the loop
// from Start until its transport closes.
class HttpExchange final : public TransportCallbacks, public Http1Codec::BodySink {
 public:
  using Done = std::function<void(int status)>;  // >= 100: an HTTP status; < 0: failed

  HttpExchange(uv_loop_t* loop, const HttpUrl& url, std::string request, Done done)
      : loop_(loop), url_(url), request_(std::move(request)), done_(std::move(done)),
        codec_(Http1Codec::Kind::kResponse, this, 64 * 1024) {
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
  }

  // Resolves, connects and sends; `done` may run before it returns (a failure to start).
  void Start(int64_t timeout_ms) {
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<HttpExchange*>(t->data)->Finish(UV_ETIMEDOUT); },
                   static_cast<uint64_t>(timeout_ms), 0);
    resolve_.data = this;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    const std::string port = std::to_string(url_.port);
    resolving_ = true;
    const int rc = uv_getaddrinfo(
        loop_, &resolve_,
        [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
          static_cast<HttpExchange*>(req->data)->OnResolved(status, res);
        },
        url_.host.c_str(), port.c_str(), &hints);
    if (rc != 0) {
      resolving_ = false;
      Finish(rc);
    }
  }

  // Stops it now (the sender is stopping): `done` is not called.
  void Abort() {
    done_ = nullptr;
    Finish(UV_ECANCELED);
  }

 private:
  void OnResolved(int status, addrinfo* res) {
    resolving_ = false;
    if (finished_) {
      if (res != nullptr) uv_freeaddrinfo(res);
      MaybeFree();
      return;
    }
    if (status != 0 || res == nullptr) {
      if (res != nullptr) uv_freeaddrinfo(res);
      return Finish(status != 0 ? status : UV_EAI_NONAME);
    }
    transport_ = std::make_unique<TcpTransport>(loop_, read_buffer_, sizeof(read_buffer_), this);
    const int rc = transport_->Connect(res->ai_addr);
    uv_freeaddrinfo(res);
    if (rc != 0) Finish(rc);
  }
  void OnTransportConnected(int status) override {
    if (status < 0) return Finish(status);
    transport_->SetNoDelay();
    transport_->StartReading();
    if (!transport_->Write(request_)) Finish(UV_EPIPE);
  }
  void OnTransportRead(absl::string_view data) override {
    if (finished_) return;
    const Http1Codec::Result r = codec_.Execute(data.data(), data.size());
    if (r.event == Http1Codec::Event::kHead || r.event == Http1Codec::Event::kMessageDone) {
      return Finish(codec_.head().status);  // the status is all the sender needs
    }
    if (r.event != Http1Codec::Event::kNeedMore) Finish(UV_EPROTO);
  }
  void OnTransportEof() override { Finish(UV_EOF); }
  void OnTransportReadError(int status) override { Finish(status); }
  void OnTransportWritten(size_t, int status) override {
    if (status < 0) Finish(status);
  }
  void OnTransportShutdown(int) override {}
  void OnTransportClosed() override {
    transport_closed_ = true;
    MaybeFree();
  }
  bool OnBody(absl::string_view) override { return true; }

  void Finish(int status) {
    if (finished_) return;
    finished_ = true;
    uv_timer_stop(&timer_);
    if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_));
    if (done_) {
      Done done = std::move(done_);
      done_ = nullptr;
      done(status);  // may start the next exchange; never frees this one
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
      auto* self = static_cast<HttpExchange*>(h->data);
      self->timer_closed_ = true;
      self->MaybeFree();
    });
    if (transport_ != nullptr) {
      transport_->Close();
    } else {
      transport_closed_ = true;
    }
  }
  void MaybeFree() {
    if (finished_ && timer_closed_ && transport_closed_ && !resolving_) delete this;
  }

  uv_loop_t* loop_;
  HttpUrl url_;
  std::string request_;
  Done done_;
  Http1Codec codec_;
  uv_timer_t timer_;
  uv_getaddrinfo_t resolve_;
  std::unique_ptr<TcpTransport> transport_;
  char read_buffer_[4096];
  bool resolving_ = false;
  bool finished_ = false;
  bool timer_closed_ = false;
  bool transport_closed_ = false;
};

struct BatchSender::Impl {
  BatchSenderOptions options;
  HttpUrl url;
  std::vector<std::unique_ptr<RecordRing>> rings;
  uv_loop_t loop;
  uv_async_t stop_async;
  uv_timer_t tick;
  uv_timer_t retry;
  std::thread thread;
  std::atomic<bool> stopping{false};
  bool stopped = false;

  // Sender thread only.
  struct Entry {
    std::string body;
    int64_t queued_ms;
  };
  std::deque<Entry> queue;
  size_t queue_bytes = 0;
  std::vector<std::string> batch;  // in flight (or waiting for its retry)
  int64_t batch_first_try_ms = 0;
  int64_t retry_delay_ms = 0;
  bool waiting_retry = false;
  HttpExchange* exchange = nullptr;
  std::string scratch;
  int64_t last_failure_report_ms = -kFailureReportIntervalMs;
  uint64_t dropped_reported = 0;
  int64_t last_drop_report_ms = -kFailureReportIntervalMs;

  std::atomic<uint64_t> enqueued{0}, sent{0}, batches_sent{0}, queue_dropped{0}, failed{0}, retries{0}, queued{0};
  std::atomic<uint64_t> producer_out_of_range{0};

  void Run() {
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }

  void OnTick() {
    const int64_t now = LoopNowMs(&loop);
    for (auto& ring : rings) {
      ring->Drain(&scratch, [&](absl::string_view entry) {
        queue.push_back(Entry{std::string(entry), now});
        queue_bytes += entry.size();
        enqueued.fetch_add(1, std::memory_order_relaxed);
        while (queue.size() > options.max_entries ||
               (options.max_bytes != 0 && queue_bytes > options.max_bytes && queue.size() > 1)) {
          queue_bytes -= queue.front().body.size();
          queue.pop_front();
          queue_dropped.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    queued.store(queue.size() + batch.size(), std::memory_order_relaxed);
    const uint64_t dropped_now = queue_dropped.load(std::memory_order_relaxed);
    if (dropped_now != dropped_reported && now - last_drop_report_ms >= kFailureReportIntervalMs) {
      PORTICO_LOG(kWarn, "log", options.name, ": ", dropped_now - dropped_reported,
                  " entries dropped, the queue was full (max_entries ", options.max_entries, ")");
      dropped_reported = dropped_now;
      last_drop_report_ms = now;
    }
    MaybeSend();
  }

  void MaybeSend() {
    if (exchange != nullptr || waiting_retry || !batch.empty() || queue.empty() || stopped) return;
    const int64_t now = LoopNowMs(&loop);
    if (queue.size() < options.max_batch_size && now - queue.front().queued_ms < options.max_coalescing_delay_ms) {
      return;
    }
    while (!queue.empty() && batch.size() < options.max_batch_size) {
      queue_bytes -= queue.front().body.size();
      batch.push_back(std::move(queue.front().body));
      queue.pop_front();
    }
    batch_first_try_ms = now;
    retry_delay_ms = options.initial_retry_delay_ms;
    Send();
  }

  void Send() {
    const std::string body = options.encode_batch ? options.encode_batch(batch) : JsonArray(batch);
    std::string request = absl::StrCat(options.method, " ", url.target, " HTTP/1.1\r\nHost: ", url.host_header,
                                       "\r\nContent-Type: ", options.content_type,
                                       "\r\nContent-Length: ", body.size(),
                                       "\r\nUser-Agent: portico\r\nConnection: close\r\n");
    for (const auto& [name, value] : options.headers) absl::StrAppend(&request, name, ": ", value, "\r\n");
    absl::StrAppend(&request, "\r\n", body);
    exchange = new HttpExchange(&loop, url, std::move(request), [this](int status) { OnSent(status); });
    exchange->Start(options.timeout_ms);
  }

  void OnSent(int status) {
    exchange = nullptr;
    if (status >= 200 && status <= options.max_delivered_status) {
      sent.fetch_add(batch.size(), std::memory_order_relaxed);
      batches_sent.fetch_add(1, std::memory_order_relaxed);
      batch.clear();
      queued.store(queue.size(), std::memory_order_relaxed);
      MaybeSend();
      return;
    }
    const int64_t now = LoopNowMs(&loop);
    const std::string why = status >= 100 ? absl::StrCat("HTTP ", status) : std::string(uv_strerror(status));
    if (now + retry_delay_ms - batch_first_try_ms > options.max_retry_time_ms) {
      failed.fetch_add(batch.size(), std::memory_order_relaxed);
      if (now - last_failure_report_ms >= kFailureReportIntervalMs) {
        PORTICO_LOG(kWarn, "log", options.name, ": dropping a batch of ", batch.size(), " entries after ",
                    now - batch_first_try_ms, " ms of retries (last: ", why, ")");
        last_failure_report_ms = now;
      }
      batch.clear();
      queued.store(queue.size(), std::memory_order_relaxed);
      MaybeSend();
      return;
    }
    PORTICO_LOG(kDebug, "log", options.name, ": send failed (", why, "), retry in ", retry_delay_ms, " ms");
    retries.fetch_add(1, std::memory_order_relaxed);
    waiting_retry = true;
    uv_timer_start(&retry, [](uv_timer_t* t) {
      auto* self = static_cast<Impl*>(t->data);
      self->waiting_retry = false;
      if (!self->stopped) self->Send();
    }, static_cast<uint64_t>(retry_delay_ms), 0);
    retry_delay_ms = std::min(retry_delay_ms * 2, options.max_retry_delay_ms);
    if (retry_delay_ms <= 0) retry_delay_ms = 1;
  }

  void OnStop() {
    stopped = true;
    if (exchange != nullptr) {
      exchange->Abort();
      exchange = nullptr;
    }
    for (auto& ring : rings) ring->Drain(&scratch, [&](absl::string_view) { queue_dropped.fetch_add(1); });
    queue_dropped.fetch_add(queue.size() + batch.size(), std::memory_order_relaxed);
    queue.clear();
    batch.clear();
    queued.store(0, std::memory_order_relaxed);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&retry), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&stop_async), nullptr);
  }
};

absl::StatusOr<std::unique_ptr<BatchSender>> BatchSender::Start(BatchSenderOptions options) {
  absl::StatusOr<HttpUrl> url = ParseHttpUrl(options.url);
  if (!url.ok()) return absl::InvalidArgumentError(absl::StrCat(options.url, ": ", url.status().message()));
  if (options.max_batch_size < 1) options.max_batch_size = 1;
  if (options.max_entries < 1) options.max_entries = 1;
  if (options.producers < 1) options.producers = 1;
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->url = *std::move(url);
  for (int i = 0; i < impl->options.producers; ++i) {
    impl->rings.push_back(std::make_unique<RecordRing>(impl->options.ring_bytes));
  }
  if (const int rc = uv_loop_init(&impl->loop); rc != 0) {
    return absl::InternalError(absl::StrCat("uv_loop_init: ", uv_strerror(rc)));
  }
  Impl* raw = impl.get();
  uv_async_init(&impl->loop, &impl->stop_async, [](uv_async_t* a) { static_cast<Impl*>(a->data)->OnStop(); });
  impl->stop_async.data = raw;
  uv_timer_init(&impl->loop, &impl->tick);
  impl->tick.data = raw;
  uv_timer_init(&impl->loop, &impl->retry);
  impl->retry.data = raw;
  uv_timer_start(&impl->tick, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->OnTick(); }, kTickMs, kTickMs);
  try {
    impl->thread = std::thread([raw] { raw->Run(); });
  } catch (const std::system_error& e) {  // e.g. the process's thread limit
    raw->stopped = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&raw->tick), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&raw->retry), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&raw->stop_async), nullptr);
    raw->Run();  // runs the closes, then closes the loop
    return absl::ResourceExhaustedError(absl::StrCat("cannot start the sender's thread: ", e.what()));
  }
  return std::unique_ptr<BatchSender>(new BatchSender(std::move(impl)));
}

BatchSender::BatchSender(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

BatchSender::~BatchSender() { Stop(); }

bool BatchSender::Enqueue(int producer, absl::string_view entry) {
  if (producer < 0 || producer >= static_cast<int>(impl_->rings.size())) {
    impl_->producer_out_of_range.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (impl_->stopping.load(std::memory_order_relaxed)) return false;
  return impl_->rings[producer]->TryPush(entry);
}

BatchSenderStats BatchSender::stats() const {
  BatchSenderStats s;
  s.enqueued = impl_->enqueued.load(std::memory_order_relaxed);
  s.sent = impl_->sent.load(std::memory_order_relaxed);
  s.batches_sent = impl_->batches_sent.load(std::memory_order_relaxed);
  s.dropped = impl_->queue_dropped.load(std::memory_order_relaxed) +
              impl_->producer_out_of_range.load(std::memory_order_relaxed);
  for (const auto& ring : impl_->rings) s.dropped += ring->dropped();
  s.failed = impl_->failed.load(std::memory_order_relaxed);
  s.retries = impl_->retries.load(std::memory_order_relaxed);
  s.queued = impl_->queued.load(std::memory_order_relaxed);
  return s;
}

const BatchSenderOptions& BatchSender::options() const { return impl_->options; }

void BatchSender::Stop() {
  if (impl_->stopping.exchange(true)) return;
  uv_async_send(&impl_->stop_async);
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace portico::dp
