#pragma once
// The one entity validator: run by the Admin API before writing, by the CP before publishing a
// snapshot and by the DP before applying one (KONG-REFERENCE.md §2.2 rules for services/routes).
// Pure functions, thread-safe.
#include "absl/status/status.h"
#include "common/config/config_set.h"
#include "common/config/field_errors.h"

namespace portico {

// Field-level and entity-level checks of one entity; empty result = valid. Does not check
// references (route.service_id existing) nor uniqueness: those need the whole set.
FieldErrors ValidateServiceFields(const config::v1::Service& service);
FieldErrors ValidateRouteFields(const config::v1::Route& route);

// InvalidArgument "service <id>: schema violation (...)" when invalid.
absl::Status ValidateService(const config::v1::Service& service);
absl::Status ValidateRoute(const config::v1::Route& route);

// Every entity valid, ids are UUIDs and unique per kind, names unique per kind, every
// route.service_id references a service of the set. The message names the kind and id at fault.
absl::Status ValidateConfigSet(const ConfigSet& config);

// Helpers shared with the Admin API.
bool IsValidHostname(absl::string_view host);  // DNS name or IP literal, no port
bool IsValidIpOrCidr(absl::string_view text);

}  // namespace portico
