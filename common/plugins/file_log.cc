// file-log (Kong 3.x kong/plugins/file-log/schema.lua): appends each request's log entry (Kong's
// log serializer, one JSON object per line) to `path`. `reopen` is accepted: Portico's writer
// always keeps the file open and reopens it on SIGUSR1 (docs/plugins.md). custom_fields_by_lua
// needs Lua, which Portico does not run: a non-empty value is refused.
#include "absl/strings/match.h"
#include "common/plugins/bundled.h"
#include "common/plugins/log_plugins.h"

namespace portico::plugins {
namespace {

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  const std::optional<std::string> path = f.String("path", std::nullopt, {}, 1024);
  f.Boolean("reopen", false);
  f.Record("custom_fields_by_lua");
  nlohmann::json out = f.Finish();
  if (!path) {
    errors->Add("path", "required field missing");
  } else if (path->empty() || path->front() != '/' || path->find_first_of("*&%`\\") != std::string::npos ||
             absl::StrContains(*path, '\0')) {
    // Kong's pattern refuses * & % ` and \; an absolute path keeps a DP's log where the operator
    // expects it, whatever the working directory.
    errors->Add("path", "must be an absolute file path without the characters * & % ` \\");
  }
  RefuseCustomFieldsByLua(out, errors);
  return out;
}

}  // namespace

const PluginSchema& FileLogSchema() {
  static const PluginSchema schema{"file-log", 9, &Normalize};
  return schema;
}

}  // namespace portico::plugins
