#pragma once
// Kong's kong.conf names for portico-cp's flags, for its --conf file (docs/operations.md,
// "Configuration file"). Every flag's own name (db, admin_token_file...) is a key without being
// listed here.
#include <vector>

#include "common/base/conf_file.h"

namespace portico::cp {

std::vector<ConfKey> ControlPlaneConfKeys();

}  // namespace portico::cp
