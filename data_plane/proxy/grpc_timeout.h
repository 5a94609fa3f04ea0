#pragma once
// The gRPC `grpc-timeout` request header (gRPC over HTTP/2, "Requests"): TimeoutValue, at most 8
// ASCII digits, then one TimeoutUnit: H (hours), M (minutes), S (seconds), m (milliseconds),
// u (microseconds), n (nanoseconds).
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace portico::dp {

// The timeout in milliseconds, rounded up (1n is 1 ms: a deadline never expires early);
// std::nullopt when `value` does not follow the grammar.
std::optional<int64_t> ParseGrpcTimeoutMs(absl::string_view value);

}  // namespace portico::dp
