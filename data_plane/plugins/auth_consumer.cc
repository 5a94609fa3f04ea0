#include "data_plane/plugins/auth_consumer.h"

#include <string>

#include "nlohmann/json.hpp"

namespace portico::dp::plugins {

using config::v1::Consumer;

void SetAuthenticatedConsumer(RequestContext& request, const Consumer& consumer, absl::string_view credential_id,
                              absl::string_view identifier) {
  request.consumer = &consumer;
  request.credential_id = credential_id;
  request.upstream_headers.emplace_back("X-Consumer-ID", consumer.id());
  if (consumer.has_custom_id()) {
    request.upstream_headers.emplace_back("X-Consumer-Custom-ID", consumer.custom_id());
  } else {
    request.upstream_headers_removed.push_back("x-consumer-custom-id");
  }
  if (consumer.has_username()) {
    request.upstream_headers.emplace_back("X-Consumer-Username", consumer.username());
  } else {
    request.upstream_headers_removed.push_back("x-consumer-username");
  }
  if (credential_id.empty()) {
    request.upstream_headers.emplace_back("X-Anonymous-Consumer", "true");
    request.upstream_headers_removed.push_back("x-credential-identifier");
  } else {
    request.upstream_headers.emplace_back("X-Credential-Identifier", identifier.empty() ? credential_id : identifier);
    request.upstream_headers_removed.push_back("x-anonymous-consumer");
  }
}

AnonymousConsumer::AnonymousConsumer(const nlohmann::json& anonymous, const ConfigSet& snapshot) {
  if (!anonymous.is_string()) return;
  configured_ = true;
  const std::string& name = anonymous.get_ref<const std::string&>();
  for (const Consumer& c : snapshot.consumers) {
    if (c.id() == name || (c.has_username() && c.username() == name)) consumer_ = &c;
  }
}

StepStatus AnonymousConsumer::Fail(RequestContext& request, int status, absl::string_view message,
                                   absl::string_view challenge) const {
  LocalResponse response;
  if (!configured_) {  // built only when it is sent
    response.status = status;
    response.message = message;
    if (!challenge.empty()) response.headers.emplace_back("WWW-Authenticate", challenge);
  }
  return Fail(request, response);
}

StepStatus AnonymousConsumer::Fail(RequestContext& request, const LocalResponse& response) const {
  if (!configured_) {
    request.Respond(response);
    return StepStatus::kStop;
  }
  if (consumer_ != nullptr) {
    SetAuthenticatedConsumer(request, *consumer_, absl::string_view());
    return StepStatus::kContinue;
  }
  // Kong: the configured anonymous consumer does not exist -> 500.
  LocalResponse error;
  error.status = 500;
  error.message = "An unexpected error occurred";
  request.Respond(error);
  return StepStatus::kStop;
}

}  // namespace portico::dp::plugins
