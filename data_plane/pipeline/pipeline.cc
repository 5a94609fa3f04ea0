#include "data_plane/pipeline/pipeline.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "data_plane/balancer/balancer.h"

namespace portico::dp {

void RequestContext::ResetContext() {
  head = nullptr;
  target = RequestTarget();
  host = absl::string_view();
  has_host = false;
  local_port = 0;
  tls = false;
  sni = absl::string_view();
  client_ip = absl::string_view();
  local_ip = absl::string_view();
  connection_serial = 0;
  connection_requests = 0;
  client_http11 = true;
  websocket_upgrade = false;
  loop = nullptr;
  worker_cursor = 0;
  normalized_path.clear();
  match.reset();
  service = nullptr;
  upstream_target = nullptr;
  dns_answer.reset();
  resolver = nullptr;
  attempt = 0;
  EndAttempt();
  balancer = nullptr;
  target_host_header = absl::string_view();
  upstream_host_header = absl::string_view();
  tried_count = 0;
  attempt_started_ns = 0;
  received_ns = 0;
  upstream_started_ns = 0;
  upstream_head_ns = 0;
  finished_ns = 0;
  upstream_status = 0;
  response_is_local = false;
  request_body_received = 0;
  response_bytes = 0;
  upstream_try_count = 0;
  plugin_timing_count = 0;
  trace.active = false;
  hash_cookie_value.clear();
  worker_index = 0;
  upstream_head.clear();
  upstream_http2_headers.Clear();
  response_headers.Clear();
  response_head = nullptr;
  response_headers_removed.clear();
  request_body_limit = kNoBodyLimit;
  request_body.clear();
  request_body_read = false;
  reading_request_body_ = false;
  request_body_too_large = false;
  upstream_body.clear();
  upstream_body_set = false;
  buffer_response_body = false;
  response_body.clear();
  consumer = nullptr;
  credential_id = absl::string_view();
  upstream_headers.clear();
  upstream_headers_removed.clear();
  upstream_query.clear();
  upstream_query_set = false;
  upstream_method = absl::string_view();
  upstream_path = absl::string_view();
  upstream_host = absl::string_view();
  request_id.clear();
  suspended_data = nullptr;
  plugin_chain = nullptr;
  plugin_position = 0;
  response_text.clear();
  header_views.clear();
  debug_headers_allowed = false;
}

void RequestContext::EndAttempt() {
  if (balancer != nullptr && balancer_target >= 0) balancer->Release(worker_index, balancer_target);
  balancer_target = -1;
}

RequestLatencies ComputeLatencies(const RequestContext& request) {
  RequestLatencies latencies;
  constexpr double kNsPerMs = 1e6;
  if (request.received_ns != 0 && request.finished_ns >= request.received_ns) {
    latencies.request_ms = static_cast<double>(request.finished_ns - request.received_ns) / kNsPerMs;
  }
  if (request.upstream_started_ns != 0 && request.upstream_head_ns >= request.upstream_started_ns) {
    latencies.proxy_ms = static_cast<double>(request.upstream_head_ns - request.upstream_started_ns) / kNsPerMs;
  }
  latencies.kong_ms = std::max(0.0, latencies.request_ms - latencies.proxy_ms);
  return latencies;
}

uint64_t RequestSizeBytes(const RequestContext& request) {
  uint64_t size = request.request_body_received;
  if (request.head == nullptr) return size;
  const MessageHead& head = *request.head;
  size += head.method.size() + 1 + head.url.size() + sizeof(" HTTP/1.1\r\n") - 1 + 2;  // + the blank line
  for (const auto& [name, value] : head.headers) size += name.size() + 2 + value.size() + 2;
  return size;
}

bool HeaderList::Contains(absl::string_view name) const {
  for (size_t i = 0; i < size_; ++i) {
    if (absl::EqualsIgnoreCase(items_[i].first, name)) return true;
  }
  return false;
}

void HeaderList::Remove(absl::string_view name) {
  size_t kept = 0;
  for (size_t i = 0; i < size_; ++i) {
    if (absl::EqualsIgnoreCase(items_[i].first, name)) continue;
    if (kept != i) std::swap(items_[kept], items_[i]);
    ++kept;
  }
  size_ = kept;
}

void HeaderList::Rename(absl::string_view from, absl::string_view to) {
  for (size_t i = 0; i < size_; ++i) {
    if (absl::EqualsIgnoreCase(items_[i].first, from)) items_[i].first.assign(to.data(), to.size());
  }
}

void Pipeline::Add(Phase phase, std::shared_ptr<const RequestStep> step) {
  // Stable by phase: a step goes after every step of its phase and of the phases before it.
  auto at = std::upper_bound(entries_.begin(), entries_.end(), phase,
                             [](Phase p, const Entry& e) { return static_cast<int>(p) < static_cast<int>(e.phase); });
  entries_.insert(at, Entry{phase, std::move(step)});
  request_steps_.clear();
  for (const Entry& entry : entries_) request_steps_.push_back(entry.step.get());
}

void Pipeline::AddResponseHead(std::shared_ptr<const ResponseHeadStep> step) {
  head_steps_.push_back(step.get());
  head_owned_.push_back(std::move(step));
}

void Pipeline::AddResponseBody(std::shared_ptr<const ResponseBodyStep> step) {
  body_steps_.push_back(step.get());
  body_owned_.push_back(std::move(step));
}

void Pipeline::AddBufferedResponseBody(std::shared_ptr<const BufferedResponseBodyStep> step) {
  buffered_steps_.push_back(step.get());
  buffered_owned_.push_back(std::move(step));
}

void Pipeline::AddLog(std::shared_ptr<const LogStep> step) {
  log_steps_.push_back(step.get());
  log_owned_.push_back(std::move(step));
}

}  // namespace portico::dp
