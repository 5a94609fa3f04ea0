#pragma once
// A stored entity row that cannot be read back (its serialized entity does not parse), as the
// CP store reports it and GET /status shows it. Plain value type, no protobuf.
#include <string>

namespace portico {

struct CorruptRow {
  std::string kind;   // table / Admin API collection: "services" or "routes"
  std::string id;     // the row's id column (raw bytes as stored)
  std::string error;  // why it cannot be read
};

}  // namespace portico
