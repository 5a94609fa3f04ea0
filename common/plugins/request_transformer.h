#pragma once
// The transformers' "name:value" entries (request- and response-transformer), split as Kong splits
// them (^([^:]+):*(.-)$): the name runs to the first colon, the value starts after the colons that
// follow it. Shared by the schemas (common/plugins/*_transformer.cc) and the data plane's handlers.
#include <string>

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

// Checks of header entries (an error text, "" when fine): a header name (what follows a colon
// is ignored, as Kong ignores it), "Name:value", and "Old:New". Names as Kong's
// validate_header_name allows them (A-Z, a-z, 0-9, '-', '_'); values without control characters.
std::string CheckTransformerHeaderName(absl::string_view entry);
std::string CheckTransformerHeaderPair(absl::string_view entry);
std::string CheckTransformerHeaderRename(absl::string_view entry);

}  // namespace portico::plugins
