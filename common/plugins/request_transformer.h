#pragma once
// request-transformer's "name:value" entries, split as Kong splits them (^([^:]+):*(.-)$): the
// name runs to the first colon, the value starts after the colons that follow it. Shared by the
// schema (common/plugins/request_transformer.cc) and the data plane's handler.
#include "absl/strings/string_view.h"

namespace portico::plugins {

struct TransformerPair {
  absl::string_view name;   // empty when the entry starts with ':' (Kong: no match)
  absl::string_view value;  // empty when nothing follows the colons
};

inline TransformerPair SplitTransformerPair(absl::string_view entry) {
  const size_t colon = entry.find(':');
  if (colon == absl::string_view::npos) return {entry, {}};
  absl::string_view value = entry.substr(colon);
  while (!value.empty() && value.front() == ':') value.remove_prefix(1);
  return {entry.substr(0, colon), value};
}

}  // namespace portico::plugins
