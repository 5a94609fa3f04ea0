#pragma once
// Kong's kong.conf names for portico-dp's flags, for its --conf file (docs/operations.md,
// "Configuration file"). Every flag's own name (ssl_cert, dns_resolver, declarative_config...) is
// a key without being listed here.
#include <vector>

#include "common/base/conf_file.h"

namespace portico::dp {

std::vector<ConfKey> DataPlaneConfKeys();

}  // namespace portico::dp
