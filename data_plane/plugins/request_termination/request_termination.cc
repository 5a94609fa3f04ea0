#include "data_plane/plugins/request_termination/request_termination.h"

#include <string>

#include "absl/strings/ascii.h"
#include "data_plane/plugins/query_arguments.h"
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
        !HasQueryArgument(request.target.query)) {
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
  bool HasQueryArgument(absl::string_view query) const {
    bool found = false;
    ForEachQueryArgument(query, [&](absl::string_view name, absl::string_view, absl::string_view) {
      found |= name == trigger_;
    });
    return found;
  }

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
