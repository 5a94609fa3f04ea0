// ParseYamlDocument (common/declarative/yaml_document.h) on any bytes, as a kong.yml file or a
// POST /config body can hold them, and ToYamlDocument on what it accepts.
// Input: one flags byte (bit 0: max_depth 8; bit 1: max_nodes 300; bit 2: a small alias budget),
// then the text.
// Invariants (ids):
//   yaml-error-shape     a refusal is InvalidArgument (or ResourceExhausted) and its message is
//                        "empty document" or starts "line L, column C: " with L, C >= 1
//   yaml-error-utf8      the message is valid UTF-8 (it goes into a JSON error body)
//   yaml-limits          an accepted value nests at most max_depth and has at most max_nodes values
//   yaml-value-utf8      an accepted value's strings and keys are valid UTF-8 (it dumps as JSON)
//   yaml-emit-reparse    ToYamlDocument(value) parses (same depth limit)
//   yaml-emit-equal      ... back to the same value, types included (its JSON dump is equal)
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/declarative/yaml_document.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using nlohmann::json;
using portico::fuzz::Show;

// Values in `value` (containers and scalars) and its container nesting.
void Measure(const json& value, int depth, size_t* nodes, int* max_depth) {
  ++*nodes;
  if (!value.is_structured()) return;
  *max_depth = std::max(*max_depth, depth + 1);
  for (const json& child : value) Measure(child, depth + 1, nodes, max_depth);
}

bool ValidUtf8Message(const std::string& message) {
  try {
    (void)json(message).dump();
    return true;
  } catch (...) {
    return false;
  }
}

bool WellShapedError(absl::string_view message) {
  if (message == "empty document") return true;
  if (!absl::ConsumePrefix(&message, "line ")) return false;
  size_t digits = 0;
  while (digits < message.size() && absl::ascii_isdigit(message[digits])) ++digits;
  if (digits == 0 || message[0] == '0') return false;
  message.remove_prefix(digits);
  if (!absl::ConsumePrefix(&message, ", column ")) return false;
  digits = 0;
  while (digits < message.size() && absl::ascii_isdigit(message[digits])) ++digits;
  if (digits == 0 || message[0] == '0') return false;
  message.remove_prefix(digits);
  return absl::StartsWith(message, ": ") && message.size() > 2;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const absl::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  portico::DocumentLimits limits;
  if (flags & 1) limits.max_depth = 8;
  if (flags & 2) limits.max_nodes = 300;
  if (flags & 4) {
    limits.alias_nodes_base = 20;
    limits.alias_nodes_per_text_node = 1;
  }

  absl::StatusOr<json> parsed = portico::ParseYamlDocument(text, limits);
  if (!parsed.ok()) {
    const std::string message(parsed.status().message());
    const bool code_ok = parsed.status().code() == absl::StatusCode::kInvalidArgument ||
                         parsed.status().code() == absl::StatusCode::kResourceExhausted;
    FUZZ_CHECK(code_ok && (parsed.status().code() != absl::StatusCode::kInvalidArgument || WellShapedError(message)),
               "yaml-error-shape", parsed.status().ToString() + " for " + Show(text));
    FUZZ_CHECK(ValidUtf8Message(message), "yaml-error-utf8", Show(message) + " for " + Show(text));
    return 0;
  }

  size_t nodes = 0;
  int depth = 0;
  Measure(*parsed, 0, &nodes, &depth);
  FUZZ_CHECK(depth <= limits.max_depth && nodes <= limits.max_nodes, "yaml-limits",
             "depth " + std::to_string(depth) + ", nodes " + std::to_string(nodes) + " for " + Show(text));
  std::string dumped;
  try {
    dumped = parsed->dump();
  } catch (...) {
    FUZZ_CHECK(false, "yaml-value-utf8", Show(text));
    return 0;
  }

  const std::string yaml = portico::ToYamlDocument(*parsed);
  portico::DocumentLimits reparse_limits;
  reparse_limits.max_depth = limits.max_depth;
  absl::StatusOr<json> back = portico::ParseYamlDocument(yaml, reparse_limits);
  if (!FUZZ_CHECK(back.ok(), "yaml-emit-reparse",
                  back.status().ToString() + "\nvalue: " + Show(dumped) + "\nyaml: " + Show(yaml, 2000))) {
    return 0;
  }
  FUZZ_CHECK(*back == *parsed && back->dump() == dumped, "yaml-emit-equal",
             "value: " + Show(dumped) + "\nyaml: " + Show(yaml, 2000) + "\nback: " + Show(back->dump()));
  return 0;
}
