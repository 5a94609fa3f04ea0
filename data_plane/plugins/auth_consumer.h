#pragma once
// What the auth plugins (key-auth, basic-auth, jwt) share: setting the consumer they identified
// (with Kong's upstream headers), and Kong's outcome of a failed authentication (the error, or
// the configured anonymous consumer).
#include "absl/strings/string_view.h"
#include "common/config/config_set.h"
#include "data_plane/pipeline/pipeline.h"
#include "nlohmann/json_fwd.hpp"

namespace portico::dp::plugins {

// The request comes from `consumer` through credential `credential_id` (empty: the anonymous
// consumer). Sends X-Consumer-ID, X-Consumer-Custom-ID, X-Consumer-Username and
// X-Credential-Identifier (`identifier`, or the credential id when empty: Kong sends the id for
// key-auth and the username for basic-auth), or X-Anonymous-Consumer: true, upstream, replacing
// (or removing) what the client sent under those names. The views must outlive the request.
void SetAuthenticatedConsumer(RequestContext& request, const config::v1::Consumer& consumer,
                              absl::string_view credential_id, absl::string_view identifier = {});

// An auth plugin's `anonymous` setting: the consumer (id or username) a failed request goes on as.
class AnonymousConsumer {
 public:
  AnonymousConsumer() = default;
  // `anonymous` is the config field (null or a string); the consumer is looked up in `snapshot`,
  // which must outlive this object.
  AnonymousConsumer(const nlohmann::json& anonymous, const ConfigSet& snapshot);

  // Kong's outcome of a failed authentication: with `anonymous` set, the request continues as that
  // consumer (500 "An unexpected error occurred" if it does not exist); otherwise `status` with
  // {"message": message} and, when not empty, WWW-Authenticate: `challenge`.
  StepStatus Fail(RequestContext& request, int status, absl::string_view message,
                  absl::string_view challenge) const;
  // The same with the whole error response given (a body of its own, as jwt's claim errors).
  StepStatus Fail(RequestContext& request, const LocalResponse& response) const;
  bool configured() const { return configured_; }

 private:
  bool configured_ = false;
  const config::v1::Consumer* consumer_ = nullptr;  // null when configured but missing
};

}  // namespace portico::dp::plugins
