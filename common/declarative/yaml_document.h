#pragma once
// TEMPORARY (replaced by the yaml helper's implementation): JSON only.
#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace portico {
struct DocumentLimits {
  int max_depth = 64;
  size_t max_nodes = 4'000'000;
};
absl::StatusOr<nlohmann::json> ParseYamlDocument(absl::string_view text, const DocumentLimits& limits = {});
std::string ToYamlDocument(const nlohmann::json& value);
}  // namespace portico
