#include "data_plane/plugins/correlation_id/correlation_id.h"

#include <sys/time.h>
#include <unistd.h>

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

enum class Generator { kUuid, kUuidCounter, kTracker };

// Kong's tracker: "<server address>-<server port>-<worker pid>-<connection serial>-<request number
// on the connection>-<seconds since the epoch, 3 decimals>" (fmt "%s-%s-%d-%s-%s-%0.3f"). Portico's
// workers are threads of one process: the pid is the same for all of them.
void TrackerId(const RequestContext& request, std::string* out) {
  struct timeval now;
  gettimeofday(&now, nullptr);
  char tail[96];
  const int n = std::snprintf(tail, sizeof(tail), "-%u-%d-%llu-%u-%.3f", static_cast<unsigned>(request.local_port),
                              static_cast<int>(getpid()), static_cast<unsigned long long>(request.connection_serial),
                              static_cast<unsigned>(request.connection_requests),
                              static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_usec / 1000) / 1000.0);
  out->assign(request.local_ip.data(), request.local_ip.size());
  out->append(tail, n > 0 ? static_cast<size_t>(n) : 0);
}

class CorrelationId final : public PluginHandler {
 public:
  CorrelationId(std::string header, Generator generator, bool echo)
      : header_(std::move(header)), header_lower_(absl::AsciiStrToLower(header_)), generator_(generator),
        echo_(echo) {}

  StepStatus Access(RequestContext& request) const override {
    // Kong: a header that is there but empty counts as absent.
    if (const std::string* existing = request.head->Find(header_lower_); existing != nullptr && !existing->empty()) {
      request.request_id.assign(*existing);
    } else {
      ThreadIds& ids = Ids();
      char uuid[37];
      if (generator_ == Generator::kTracker) {
        TrackerId(request, &request.request_id);
      } else if (generator_ == Generator::kUuidCounter) {
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
  const Generator generator_;
  const bool echo_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileCorrelationId(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  const std::string& generator = config["generator"].get_ref<const std::string&>();
  return std::make_unique<const CorrelationId>(config["header_name"].get<std::string>(),
                                               generator == "tracker"        ? Generator::kTracker
                                               : generator == "uuid#counter" ? Generator::kUuidCounter
                                                                             : Generator::kUuid,
                                               config["echo_downstream"].get<bool>());
}

}  // namespace portico::dp::plugins
