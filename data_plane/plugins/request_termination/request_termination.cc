#include "data_plane/plugins/request_termination/request_termination.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

// Kong's messages for a status when the config has no message (kong/plugins/request-termination).
absl::string_view DefaultMessage(int status) {
  switch (status) {
    case 401: return "Unauthorized";
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 500: return "An unexpected error occurred";
    case 502: return "Bad Gateway";
    case 503: return "Service unavailable";
    default: return "";
  }
}

// True if `query` (without '?') has the argument `name` (with or without a value).
bool HasQueryArgument(absl::string_view query, absl::string_view name) {
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    if (pair.substr(0, pair.find('=')) == name) return true;
  }
  return false;
}

class RequestTermination final : public PluginHandler {
 public:
  explicit RequestTermination(const nlohmann::json& config)
      : status_(config["status_code"].get<int>()),
        message_(config["message"].is_string() ? config["message"].get<std::string>()
                                                : std::string(DefaultMessage(status_))),
        body_(config["body"].is_string() ? config["body"].get<std::string>() : std::string()),
        content_type_(config["content_type"].is_string() ? config["content_type"].get<std::string>()
                                                          : std::string()),
        trigger_(config["trigger"].is_string() ? config["trigger"].get<std::string>() : std::string()),
        trigger_lower_(absl::AsciiStrToLower(trigger_)) {}

  StepStatus Access(RequestContext& request) const override {
    if (!trigger_.empty() && request.head->Find(trigger_lower_) == nullptr &&
        !HasQueryArgument(request.target.query, trigger_)) {
      return StepStatus::kContinue;
    }
    LocalResponse response;
    response.status = status_;
    if (!body_.empty()) {
      response.body = body_;
      response.content_type = content_type_;
    } else {
      response.message = message_;
    }
    request.Respond(response);
    return StepStatus::kStop;
  }

 private:
  const int status_;
  const std::string message_;
  const std::string body_;
  const std::string content_type_;
  const std::string trigger_;
  const std::string trigger_lower_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRequestTermination(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  return std::make_unique<const RequestTermination>(config);
}

}  // namespace portico::dp::plugins
