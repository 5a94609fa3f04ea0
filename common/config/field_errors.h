#pragma once
// Field-level validation errors, keyed by a dotted field path, as Kong reports them.
// Paths: "host", "service.id", "paths.2" (1-based element index, as Kong's messages),
// and "@entity" for entity-level errors. Thread-compatible value type.
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace portico {

class FieldErrors {
 public:
  static constexpr absl::string_view kEntity = "@entity";

  // Records `message` for `path`. The first message per path wins (later ones are dropped), so
  // a field reports its most basic problem only.
  void Add(absl::string_view path, absl::string_view message);
  void AddEntity(absl::string_view message) { Add(kEntity, message); }
  // Prefixes every path of `nested` with `prefix.` and appends them.
  void Merge(absl::string_view prefix, const FieldErrors& nested);

  bool empty() const { return errors_.empty(); }
  size_t size() const { return errors_.size(); }
  bool Has(absl::string_view path) const;
  const std::vector<std::pair<std::string, std::string>>& errors() const { return errors_; }

  // Kong's message text: "schema violation (host: required field missing)" or
  // "2 schema violations (a: x; b: y)". Entity-level errors appear without a path.
  std::string KongMessage() const;
  // InvalidArgument with `context` + KongMessage(); OK when empty.
  absl::Status ToStatus(absl::string_view context = "") const;

 private:
  std::vector<std::pair<std::string, std::string>> errors_;
};

}  // namespace portico
