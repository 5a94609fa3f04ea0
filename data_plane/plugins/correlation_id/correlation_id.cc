#include "data_plane/plugins/correlation_id/correlation_id.h"

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

// Per worker thread: a random generator, and the UUID + counter of `uuid#counter`.
struct ThreadIds {
  std::mt19937_64 random{std::random_device{}()};
  char worker_uuid[37] = {0};
  uint64_t counter = 0;
};

ThreadIds& Ids() {
  thread_local ThreadIds ids;
  return ids;
}

// A version-4 UUID into `out` (36 characters and a NUL).
void RandomUuid(std::mt19937_64& random, char (&out)[37]) {
  uint64_t hi = random(), lo = random();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  std::snprintf(out, sizeof(out), "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xffffffffffffULL));
}

class CorrelationId final : public PluginHandler {
 public:
  CorrelationId(std::string header, bool with_counter, bool echo)
      : header_(std::move(header)), header_lower_(absl::AsciiStrToLower(header_)), with_counter_(with_counter),
        echo_(echo) {}

  StepStatus Access(RequestContext& request) const override {
    // Kong: a header that is there but empty counts as absent.
    if (const std::string* existing = request.head->Find(header_lower_); existing != nullptr && !existing->empty()) {
      request.request_id.assign(*existing);
    } else {
      ThreadIds& ids = Ids();
      char uuid[37];
      if (with_counter_) {
        if (ids.worker_uuid[0] == '\0') RandomUuid(ids.random, ids.worker_uuid);
        request.request_id.assign(ids.worker_uuid, 36);
        request.request_id.push_back('#');
        const absl::AlphaNum counter(++ids.counter);
        request.request_id.append(counter.data(), counter.size());
      } else {
        RandomUuid(ids.random, uuid);
        request.request_id.assign(uuid, 36);
      }
      request.upstream_headers.emplace_back(header_, request.request_id);
    }
    if (echo_) {  // replaces a header of that name the upstream sends (Kong's set_header)
      request.response_headers.Add(header_, request.request_id);
      request.response_headers_removed.push_back(header_lower_);
    }
    return StepStatus::kContinue;
  }

 private:
  const std::string header_;
  const std::string header_lower_;
  const bool with_counter_;
  const bool echo_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileCorrelationId(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  return std::make_unique<const CorrelationId>(config["header_name"].get<std::string>(),
                                               config["generator"].get<std::string>() == "uuid#counter",
                                               config["echo_downstream"].get<bool>());
}

}  // namespace portico::dp::plugins
