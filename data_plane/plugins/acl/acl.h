#pragma once
// acl: decides from the groups (acls entities) of the consumer an auth plugin identified. With
// `allow`, the consumer must be in one of them; with `deny`, in none. No consumer: 401
// "Unauthorized"; refused: 403 "You cannot consume this service" (also for a consumer without
// groups under `allow`, or 401 when it is the anonymous consumer). Let through: its groups go
// upstream as X-Consumer-Groups ("a, b") unless `hide_groups_header`; a client-sent
// X-Consumer-Groups never reaches the upstream. Decisions are made per consumer once per
// snapshot: a request costs one hash probe.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileAcl(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
