#include "common/declarative/yaml_document.h"

namespace portico {
absl::StatusOr<nlohmann::json> ParseYamlDocument(absl::string_view text, const DocumentLimits&) {
  nlohmann::json value = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (value.is_discarded()) return absl::InvalidArgumentError("line 1, column 1: not JSON");
  return value;
}
std::string ToYamlDocument(const nlohmann::json& value) { return value.dump(2); }
}  // namespace portico
