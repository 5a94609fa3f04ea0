#pragma once
// YAML/JSON text <-> nlohmann::json, for declarative config (kong.yml). docs/declarative.md
// "YAML and JSON parsing" states the rules; the contracts are below.
#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace portico {

struct DocumentLimits {
  // Nesting of sequences/mappings (the top-level container is depth 1), aliases included.
  int max_depth = 64;
  // Values (scalars and containers, not mapping keys) produced in total, every alias expansion
  // counted.
  size_t max_nodes = 4'000'000;
  // Copies made for anchors and aliases (each alias expansion, merge keys included, and the copy
  // an anchor keeps of its node), in total, may hold at most
  //   alias_nodes_base + alias_nodes_per_text_node * (values written out in the text so far) values
  //   alias_bytes_base + alias_nodes_per_text_node * (the text's size) bytes of strings (and keys).
  // A "billion laughs" document is refused after about 10,000 copied values, and an alias of a
  // big string repeated many times after 16 MiB, while a real file that reuses an anchored block
  // many times stays far below: each use is text of its own.
  size_t alias_nodes_base = 10'000;
  size_t alias_nodes_per_text_node = 10;
  size_t alias_bytes_base = size_t{16} << 20;
};

// Parses one YAML 1.1 document (a kong.yml) or a JSON text into JSON values. Errors are
// InvalidArgument with "line L, column C: <what>" (1-based) for syntax errors, and name the limit
// for depth/size/alias-expansion refusals ("line L, column C: alias expansion exceeds ... nodes").
// An empty text (or only comments) is "empty document". Never throws.
absl::StatusOr<nlohmann::json> ParseYamlDocument(absl::string_view text, const DocumentLimits& limits = {});

// Block-style YAML whose ParseYamlDocument gives back exactly `value` (objects, arrays, strings,
// integers, floats, booleans, null). Multi-line strings (PEM certificates) as literal blocks (|).
// What JSON cannot hold comes out as its nearest text: non-finite doubles as null, invalid UTF-8 in
// strings with U+FFFD; unsigned integers above INT64_MAX are written but do not parse back.
std::string ToYamlDocument(const nlohmann::json& value);

}  // namespace portico
