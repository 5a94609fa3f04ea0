#include "common/config/field_errors.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace portico {

void FieldErrors::Add(absl::string_view path, absl::string_view message) {
  // Entity-level errors may be several; field errors keep the first message only.
  if (path != kEntity && Has(path)) return;
  errors_.emplace_back(std::string(path), std::string(message));
}

void FieldErrors::Merge(absl::string_view prefix, const FieldErrors& nested) {
  for (const auto& [path, message] : nested.errors_) {
    Add(prefix.empty() ? path : absl::StrCat(prefix, ".", path), message);
  }
}

bool FieldErrors::Has(absl::string_view path) const {
  for (const auto& [p, m] : errors_) {
    if (p == path) return true;
  }
  return false;
}

std::string FieldErrors::KongMessage() const {
  std::vector<std::string> parts;
  for (const auto& [path, message] : errors_) {
    if (path == kEntity) {
      parts.push_back(message);
    } else if (absl::EndsWith(path, absl::StrCat(".", kEntity))) {  // "config.@entity" -> "config: ..."
      parts.push_back(absl::StrCat(path.substr(0, path.size() - kEntity.size() - 1), ": ", message));
    } else {
      parts.push_back(absl::StrCat(path, ": ", message));
    }
  }
  std::sort(parts.begin(), parts.end());
  if (parts.size() == 1) return absl::StrCat("schema violation (", parts[0], ")");
  return absl::StrCat(parts.size(), " schema violations (", absl::StrJoin(parts, "; "), ")");
}

absl::Status FieldErrors::ToStatus(absl::string_view context) const {
  if (errors_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(context, KongMessage()));
}

}  // namespace portico
