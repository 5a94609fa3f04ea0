#pragma once
// request-size-limiting: refuses a request whose Content-Length is over the limit with 413
// `Request size limit exceeded` (417 when it asked `Expect: 100-continue`), and, with
// `require_content_length`, a request without Content-Length with 411. A chunked body is counted
// by the exchange as it arrives (RequestContext::request_body_limit): over the limit, 413 and the
// connection closes (Kong reads the whole body first; here an upstream may have seen part of it
// and is aborted).
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRequestSizeLimiting(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
