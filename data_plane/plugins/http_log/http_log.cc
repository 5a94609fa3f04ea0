#include "data_plane/plugins/http_log/http_log.h"

#include <uv.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data_plane/telemetry/batch_sender.h"
#include "data_plane/telemetry/log_serializer.h"
#include "data_plane/telemetry/log_sinks.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

using nlohmann::json;

class HttpLog final : public PluginHandler {
 public:
  HttpLog(std::shared_ptr<BatchSender> sender, std::vector<std::string> redacted_names)
      : sender_(std::move(sender)), redacted_names_(std::move(redacted_names)) {}
  StepStatus Access(RequestContext&) const override { return StepStatus::kContinue; }
  void Log(const RequestContext& request, int status) const override {
    thread_local std::string entry;  // one per worker thread, kept with its capacity
    entry.clear();
    AppendLogEntry(request, status, UnixNowMs(), uv_hrtime(), &entry, redacted_names_);
    sender_->Enqueue(request.worker_index, entry);  // a full ring drops and counts
  }
  bool logs() const override { return true; }

 private:
  std::shared_ptr<BatchSender> sender_;
  std::vector<std::string> redacted_names_;  // the snapshot's configured credential names
};

constexpr size_t kDefaultHttpLogQueueBytes = 64 << 20;

int64_t Number(const json& object, const char* name, int64_t fallback) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_number()) return fallback;
  return it->get<int64_t>();
}

// Seconds (Kong's queue times) to milliseconds.
int64_t SecondsMs(const json& object, const char* name, double fallback) {
  auto it = object.find(name);
  const double seconds = (it == object.end() || !it->is_number()) ? fallback : it->get<double>();
  return static_cast<int64_t>(std::llround(seconds * 1000));
}

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileHttpLog(const PluginCompileContext& context) {
  const json& config = context.config;
  BatchSenderOptions options;
  auto endpoint = config.find("http_endpoint");
  if (endpoint == config.end() || !endpoint->is_string()) {
    return absl::InvalidArgumentError("config.http_endpoint: required field missing");
  }
  options.url = endpoint->get<std::string>();
  if (absl::StatusOr<HttpUrl> url = ParseHttpUrl(options.url); !url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config.http_endpoint: ", url.status().message()));
  } else {
    options.name = absl::StrCat("http-log ", url->host_header, url->target.substr(0, url->target.find('?')));
  }
  options.method = config.value("method", std::string("POST"));
  options.content_type = config.value("content_type", std::string("application/json"));
  options.timeout_ms = std::max<int64_t>(1, Number(config, "timeout", 10000));
  options.max_delivered_status = 399;  // Kong's http-log: any status below 400 is a delivery
  if (auto headers = config.find("headers"); headers != config.end() && headers->is_object()) {
    for (const auto& [name, value] : headers->items()) {
      if (value.is_string()) options.headers.emplace_back(name, value.get<std::string>());
    }
  }
  const json queue = config.contains("queue") && config["queue"].is_object() ? config["queue"] : json::object();
  options.max_batch_size = static_cast<size_t>(std::max<int64_t>(1, Number(queue, "max_batch_size", 1)));
  options.max_coalescing_delay_ms = SecondsMs(queue, "max_coalescing_delay", 1);
  options.max_entries = static_cast<size_t>(std::max<int64_t>(1, Number(queue, "max_entries", 10000)));
  // Kong's max_bytes null means no byte bound; here it means kDefaultHttpLogQueueBytes, so that
  // max_entries large entries cannot hold gigabytes (an entry is at most a ring, 1 MiB).
  const int64_t max_bytes = Number(queue, "max_bytes", 0);
  options.max_bytes = max_bytes > 0 ? static_cast<size_t>(max_bytes) : kDefaultHttpLogQueueBytes;
  options.max_retry_time_ms = SecondsMs(queue, "max_retry_time", 60);
  options.initial_retry_delay_ms = std::max<int64_t>(1, SecondsMs(queue, "initial_retry_delay", 0.01));
  options.max_retry_delay_ms = std::max<int64_t>(1, SecondsMs(queue, "max_retry_delay", 60));
  if (options.max_batch_size == 1) {
    // Kong sends a batch of one as the entry itself.
    options.encode_batch = [](absl::Span<const std::string> entries) {
      return entries.size() == 1 ? entries[0] : absl::StrCat("[", absl::StrJoin(entries, ","), "]");
    };
  }
  const std::string key = config.dump(-1, ' ', false, json::error_handler_t::replace);
  absl::StatusOr<std::shared_ptr<BatchSender>> sender = BatchSenders::Global().Get(key, std::move(options));
  if (!sender.ok()) return absl::InvalidArgumentError(absl::StrCat("config.http_endpoint: ", sender.status().message()));
  return std::unique_ptr<const PluginHandler>(std::make_unique<HttpLog>(*std::move(sender), ConfiguredCredentialNames(context.snapshot)));
}

}  // namespace portico::dp::plugins
