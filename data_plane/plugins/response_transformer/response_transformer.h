#pragma once
// response-transformer: in the header_filter phase, edits the headers of every response that
// goes to the client (the upstream's, and those earlier plugins added), in Kong's order: remove,
// rename ("old:new"), replace (only a header that is there), add (only one that is not), append.
// Names match case-insensitively. Framing and hop-by-hop headers stay the proxy's.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileResponseTransformer(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
