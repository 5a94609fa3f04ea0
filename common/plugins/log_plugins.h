#pragma once
// What the log plugins' schemas (file-log, http-log) share.
#include "common/config/field_errors.h"
#include "nlohmann/json.hpp"

namespace portico::plugins {

// custom_fields_by_lua needs Lua: a non-empty map is an error at custom_fields_by_lua.
inline void RefuseCustomFieldsByLua(const nlohmann::json& normalized, FieldErrors* errors) {
  auto it = normalized.find("custom_fields_by_lua");
  if (it == normalized.end() || it->is_null()) return;
  if (it->is_object() && it->empty()) return;
  errors->Add("custom_fields_by_lua", "Lua code is not supported by Portico; leave it empty");
}

}  // namespace portico::plugins
