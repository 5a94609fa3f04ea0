#pragma once
// One log entry per request in the shape of Kong's log serializer (kong/pdk/log.lua `serialize`),
// as one JSON object: what --access-log, file-log and http-log write (docs/operations.md "Access
// logs" lists the fields). Appended by hand into a caller's string, which keeps its capacity:
// no allocation once warm, and nothing here throws.
//
// Secrets never reach the entry: the values of credential-bearing request and response headers
// (authorization, proxy-authorization, cookie, set-cookie, apikey, x-api-key, api-key), of
// credential-looking query arguments (apikey, api_key, access_token, jwt, token, password; named
// percent-encoded or not), and of headers and query arguments named in `extra_redacted` (the
// snapshot's configured credential names, ConfiguredCredentialNames) are replaced by "[REDACTED]".
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/config/config_set.h"
#include "data_plane/pipeline/pipeline.h"

namespace portico::dp {

constexpr absl::string_view kRedacted = "[REDACTED]";

// Appends the entry of a finished request (a log step's view: `status` went to the client) and
// no newline. `now_unix_ms` is the wall clock now (started_at is derived from it and the
// request's age); `now_ns` is uv_hrtime() now. `extra_redacted`: more header and query argument
// names (any case) whose values are redacted.
void AppendLogEntry(const RequestContext& request, int status, int64_t now_unix_ms, uint64_t now_ns,
                    std::string* out, absl::Span<const std::string> extra_redacted = {});

// The credential names the snapshot's plugins read (key-auth key_names; jwt header_names,
// uri_param_names, cookie_names), lowercase, without duplicates: the log steps of that snapshot
// redact headers and query arguments of these names. Unparsable plugin configs are skipped.
std::vector<std::string> ConfiguredCredentialNames(const ConfigSet& snapshot);

// Wall clock now, in milliseconds since the epoch (CLOCK_REALTIME).
int64_t UnixNowMs();

// `text` as the body of a JSON string (no quotes) appended to `out`: ", \ and control characters
// escaped, invalid UTF-8 bytes replaced by U+FFFD.
void AppendJsonEscaped(absl::string_view text, std::string* out);

// True when a header or query argument of this name (any case) carries credentials.
bool IsSecretHeader(absl::string_view name);
bool IsSecretQueryArgument(absl::string_view name);

}  // namespace portico::dp
