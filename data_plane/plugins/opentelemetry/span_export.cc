#include "data_plane/plugins/opentelemetry/span_export.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "data_plane/pipeline/loop_state.h"
#include "data_plane/plugins/opentelemetry/otlp_json.h"

namespace portico::dp::plugins {
namespace {

constexpr char kScopeName[] = "kong-internal";
constexpr char kScopeVersion[] = "0.1.0";

std::atomic<OtlpBatchSenderFactory> sender_factory{nullptr};

// The batchers of one loop, by target key.
class SpanBatchers final : public LoopState {
 public:
  void Close() override {
    for (auto& [key, batcher] : batchers_) {
      SpanBatcher* raw = batcher.get();
      raw->Close(std::move(batcher));
    }
    batchers_.clear();
    delete this;
  }
  // Closes the batchers whose sender is gone.
  void Sweep() {
    for (auto it = batchers_.begin(); it != batchers_.end();) {
      if (it->second->orphaned()) {
        SpanBatcher* raw = it->second.get();
        raw->Close(std::move(it->second));
        batchers_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  // By sender: a sender lives as long as a compiled config uses it, and its batchers no longer.
  absl::flat_hash_map<const OtlpBatchSender*, std::unique_ptr<SpanBatcher>> batchers_;
};

const char kBatchersKind = 0;

uint64_t DelayMs(double seconds) { return static_cast<uint64_t>(std::llround(std::max(0.0, seconds) * 1000.0)); }

}  // namespace

std::string OtlpExportTarget::Key() const {
  std::string key = absl::StrCat(url, "\n", connect_timeout_ms, ",", send_timeout_ms, ",", read_timeout_ms, ",",
                                 max_batch_size, ",", max_coalescing_delay_s, ",", max_entries, ",", max_retry_time_s,
                                 ",", initial_retry_delay_s, ",", max_retry_delay_s, ",", max_bytes, "\n",
                                 resource_json);
  for (const auto& [name, value] : headers) absl::StrAppend(&key, "\n", name, ":", value);
  return key;
}

void SetOtlpBatchSenderFactory(OtlpBatchSenderFactory factory) { sender_factory.store(factory); }

absl::StatusOr<std::shared_ptr<OtlpBatchSender>> MakeOtlpBatchSender(const OtlpExportTarget& target) {
  OtlpBatchSenderFactory factory = sender_factory.load();
  if (factory == nullptr) {
    PORTICO_LOG(kWarn, "opentelemetry", "no OTLP sender in this data plane: spans for ", target.url, " are dropped");
    return std::shared_ptr<OtlpBatchSender>();
  }
  return factory(target);
}

SpanExportCounters& GlobalSpanExportCounters() {
  static SpanExportCounters counters;
  return counters;
}

SpanBatcher::SpanBatcher(uv_loop_t* loop, int worker_index, std::weak_ptr<OtlpBatchSender> sender,
                         const OtlpExportTarget& target)
    : loop_(loop), worker_index_(worker_index), target_(target), sender_(std::move(sender)) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
}

SpanBatcher::~SpanBatcher() = default;

bool SpanBatcher::Reserve(size_t spans) {
  if (pending_count_ + spans > static_cast<size_t>(target_.max_entries)) {
    GlobalSpanExportCounters().spans_dropped.fetch_add(spans, std::memory_order_relaxed);
    return false;
  }
  return true;
}

std::string& SpanBatcher::BeginSpan() {
  if (pending_count_ != 0) pending_.push_back(',');
  ++pending_count_;
  GlobalSpanExportCounters().spans_queued.fetch_add(1, std::memory_order_relaxed);
  return pending_;
}

void SpanBatcher::EndRequest() {
  if (pending_count_ >= static_cast<size_t>(target_.max_batch_size) || pending_.size() >= kMaxBatchBytes) {
    Flush();
    return;
  }
  if (!timer_armed_ && pending_count_ != 0) {
    timer_armed_ = true;
    uv_timer_start(&timer_, &SpanBatcher::OnTimer, DelayMs(target_.max_coalescing_delay_s), 0);
  }
}

void SpanBatcher::Flush() {
  if (timer_armed_) {
    uv_timer_stop(&timer_);
    timer_armed_ = false;
  }
  if (pending_count_ == 0) return;
  const size_t count = pending_count_;
  body_.clear();
  AppendExportRequestJson(target_.resource_json, kScopeName, kScopeVersion, pending_, &body_);
  pending_.clear();  // both keep their capacity
  pending_count_ = 0;
  const std::shared_ptr<OtlpBatchSender> sender = sender_.lock();
  if (sender != nullptr && sender->Send(worker_index_, body_, count)) {
    GlobalSpanExportCounters().batches_sent.fetch_add(1, std::memory_order_relaxed);
  } else {
    GlobalSpanExportCounters().spans_dropped.fetch_add(count, std::memory_order_relaxed);
  }
}

void SpanBatcher::OnTimer(uv_timer_t* timer) {
  auto* self = static_cast<SpanBatcher*>(timer->data);
  self->timer_armed_ = false;
  self->Flush();
}

void SpanBatcher::Close(std::unique_ptr<SpanBatcher> self) {
  Flush();  // hand the last spans to the sender (its own thread may still deliver them)
  closing_self_ = std::move(self);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &SpanBatcher::OnClosed);
}

void SpanBatcher::OnClosed(uv_handle_t* handle) {
  auto* self = static_cast<SpanBatcher*>(handle->data);
  std::unique_ptr<SpanBatcher> owned = std::move(self->closing_self_);
}

SpanBatcher& FindSpanBatcher(uv_loop_t* loop, int worker_index, const std::shared_ptr<OtlpBatchSender>& sender,
                             const OtlpExportTarget& target) {
  auto* state = static_cast<SpanBatchers*>(FindLoopState(loop, &kBatchersKind));
  if (state == nullptr) {
    state = static_cast<SpanBatchers*>(AddLoopState(loop, &kBatchersKind, std::make_unique<SpanBatchers>()));
  }
  auto it = state->batchers_.find(sender.get());
  // An orphaned batcher under a live sender's address: a new sender reused a freed one's memory.
  if (it != state->batchers_.end() && !it->second->orphaned()) return *it->second;
  state->Sweep();
  auto batcher = std::make_unique<SpanBatcher>(loop, worker_index, sender, target);
  SpanBatcher& made = *batcher;
  state->batchers_.emplace(sender.get(), std::move(batcher));
  return made;
}

size_t SpanBatcherCount(uv_loop_t* loop) {
  const auto* state = static_cast<const SpanBatchers*>(FindLoopState(loop, &kBatchersKind));
  return state == nullptr ? 0 : state->batchers_.size();
}

}  // namespace portico::dp::plugins
