#include "data_plane/plugins/request_size_limiting/request_size_limiting.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

class RequestSizeLimiting final : public PluginHandler {
 public:
  RequestSizeLimiting(uint64_t limit_bytes, bool require_content_length)
      : limit_bytes_(limit_bytes), require_content_length_(require_content_length) {}

  StepStatus Access(RequestContext& request) const override {
    const MessageHead& head = *request.head;
    if (head.has_content_length) {
      if (head.content_length <= limit_bytes_) return StepStatus::kContinue;
      const std::string* expect = head.Find("expect");
      return RespondWithMessage(request, expect != nullptr && absl::EqualsIgnoreCase(*expect, "100-continue") ? 417 : 413,
                    "Request size limit exceeded");
    }
    if (require_content_length_) return RespondWithMessage(request, 411, "A valid Content-Length header is required");
    // A body without Content-Length (chunked) is counted by the exchange as it arrives.
    if (head.chunked) request.request_body_limit = std::min(request.request_body_limit, limit_bytes_);
    return StepStatus::kContinue;
  }

 private:
  const uint64_t limit_bytes_;
  const bool require_content_length_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRequestSizeLimiting(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  const std::string unit = config["size_unit"].get<std::string>();
  const uint64_t multiplier = unit == "megabytes" ? (1u << 20) : unit == "kilobytes" ? (1u << 10) : 1;
  return std::make_unique<const RequestSizeLimiting>(config["allowed_payload_size"].get<uint64_t>() * multiplier,
                                                     config["require_content_length"].get<bool>());
}

}  // namespace portico::dp::plugins
