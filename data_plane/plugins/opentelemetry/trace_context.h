#pragma once
// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` header parsed and
// written, trace and span ids made by a per-thread generator (no lock), and the sampling
// decision. Used by the opentelemetry plugin; nothing here allocates.
#include <array>
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace portico::dp::plugins {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

constexpr uint8_t kTraceFlagSampled = 0x01;

// A traceparent: "<version>-<trace-id>-<parent-id>-<flags>" in lowercase hex.
struct TraceParent {
  TraceId trace_id{};
  SpanId parent_id{};
  uint8_t flags = 0;
  bool sampled() const { return (flags & kTraceFlagSampled) != 0; }
};

// The header's value, or nullopt when it is not a valid traceparent (then it counts as absent):
// version 00 is exactly 55 characters; a higher version (not ff) is read by its first four fields
// and must be 55 characters or go on with '-' (the spec's forward compatibility). Hex is
// lowercase only; an all-zero trace id or parent id is invalid. Surrounding spaces and tabs
// (optional whitespace of a header value) are ignored.
std::optional<TraceParent> ParseTraceparent(absl::string_view value);

// The longest tracestate (all its headers together, joined by commas) forwarded.
constexpr size_t kMaxTracestateLength = 512;
// True for a W3C tracestate list: at most 32 list-members `key=value` separated by commas with
// optional spaces/tabs (empty members allowed), keys `simple-key` or `tenant@system`, values of
// printable ASCII without ',' and '=' (not ending in a space).
bool ValidTracestate(absl::string_view value);

constexpr size_t kTraceparentLength = 55;
// "00-<trace>-<span>-<flags>" into `out` (55 characters, not NUL-terminated).
void FormatTraceparent(const TraceId& trace_id, const SpanId& span_id, uint8_t flags, char* out);

// Lowercase hex of `n` bytes into `out` (2n characters).
void HexEncode(const uint8_t* bytes, size_t n, char* out);

// A fast random generator (xoshiro256**) for ids. Not cryptographic: ids need to be unique, not
// secret. One per thread (ThreadIdGenerator) or seeded for tests.
class IdGenerator {
 public:
  explicit IdGenerator(uint64_t seed);
  uint64_t Next();
  // Never all zero (invalid in W3C).
  TraceId NewTraceId();
  SpanId NewSpanId();

 private:
  uint64_t s_[4];
};

// The calling thread's generator, seeded from std::random_device on first use.
IdGenerator& ThreadIdGenerator();

// Whether a new trace (no sampled parent decision) is recorded at `rate` (0..1): decided from the
// trace id's last 8 bytes (as OpenTelemetry's TraceIdRatioBased sampler), so every gateway with
// the same rate decides the same for the same trace.
bool SampleByTraceId(const TraceId& trace_id, double rate);

}  // namespace portico::dp::plugins
