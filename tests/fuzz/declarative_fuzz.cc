// Fuzz target: a declarative document (kong.yml, YAML or JSON) through the one loader that
// POST /config, `portico-cp config` and a DB-less DP share (LoadDeclarativeText).
//
// Invariants (ids as printed):
//   deterministic  loading the same text twice gives the same entities (ids included; basic-auth
//                  hashes and generated secrets are random and compared by presence only)
//   export         an accepted document exports (ExportDeclarativeYaml) to YAML that loads back
//                  into exactly the same entities
//   errors         a refused document says why: a syntax message, or at least one error line, in
//                  valid UTF-8
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/declarative/declarative.h"
#include "google/protobuf/util/message_differencer.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_check.h"

namespace {

using portico::DeclarativeConfig;
using portico::DeclarativeErrors;
using portico::DeclarativeOptions;
using portico::fuzz::Show;

// Same kinds, same ids, in the same order; with `exact`, every field equal too.
bool SameEntities(const DeclarativeConfig& a, const DeclarativeConfig& b, bool exact, std::string* why) {
  if (a.kinds.size() != b.kinds.size()) {
    *why = "kind count";
    return false;
  }
  for (size_t k = 0; k < a.kinds.size(); ++k) {
    const auto& x = a.kinds[k];
    const auto& y = b.kinds[k];
    if (x.entities.size() != y.entities.size()) {
      *why = absl::StrCat(x.kind->name(), ": ", x.entities.size(), " vs ", y.entities.size());
      return false;
    }
    for (size_t i = 0; i < x.entities.size(); ++i) {
      if (x.kind->Id(*x.entities[i]) != y.kind->Id(*y.entities[i])) {
        *why = absl::StrCat(x.kind->name(), " id ", x.kind->Id(*x.entities[i]), " vs ", y.kind->Id(*y.entities[i]));
        return false;
      }
      if (exact && !google::protobuf::util::MessageDifferencer::Equals(*x.entities[i], *y.entities[i])) {
        *why = absl::StrCat(x.kind->name(), " ", x.entities[i]->ShortDebugString(), " vs ",
                            y.entities[i]->ShortDebugString());
        return false;
      }
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  DeclarativeOptions options;
  options.max_nodes = 200'000;  // keeps each run fast; the limit itself is the parser's business
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> loaded = portico::LoadDeclarativeText(text, options, &errors);
  if (!loaded.ok()) {
    if (errors.syntax.empty() && errors.lines.empty()) {
      portico::fuzz::Violation("errors", absl::StrCat("refused without a reason: ", Show(text)));
    }
    const nlohmann::json body = errors.KongBody(true);
    const std::string strict = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::ignore);
    if (strict != body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)) {
      portico::fuzz::Violation("errors", absl::StrCat("the error body is not valid UTF-8: ", Show(strict)));
    }
    return 0;
  }
  std::string why;
  DeclarativeErrors again_errors;
  absl::StatusOr<DeclarativeConfig> again = portico::LoadDeclarativeText(text, options, &again_errors);
  if (!again.ok() || !SameEntities(*loaded, *again, /*exact=*/false, &why)) {
    portico::fuzz::Violation("deterministic", absl::StrCat(again.ok() ? why : "second load refused", ": ", Show(text)));
  }
  const std::string exported = portico::ExportDeclarativeYaml(loaded->kinds);
  DeclarativeErrors export_errors;
  absl::StatusOr<DeclarativeConfig> reloaded = portico::LoadDeclarativeText(exported, options, &export_errors);
  if (!reloaded.ok()) {
    portico::fuzz::Violation("export", absl::StrCat("the export does not load: ", export_errors.syntax, " ",
                                                    export_errors.lines.empty() ? "" : export_errors.lines[0],
                                                    "\nexport: ", Show(exported)));
  } else if (!SameEntities(*loaded, *reloaded, /*exact=*/true, &why)) {
    portico::fuzz::Violation("export", absl::StrCat("the export loads into other entities: ", why));
  }
  return 0;
}
