#pragma once
// UTF-8 checks of entity strings. proto3 `string` fields must hold UTF-8: protobuf serializes
// any bytes but refuses to parse ill-formed UTF-8 back, so an entity carrying such bytes could
// be written to the store but never read, built into a snapshot or deleted by name. The entity
// validator (validate.h) runs CheckUtf8Fields before any rule that could echo a value.
// Pure functions, thread-safe. No protobuf headers here (the message type is only declared).
#include <cstddef>

#include "absl/strings/string_view.h"
#include "common/config/field_errors.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace portico {

// True when `text` is well-formed UTF-8 (RFC 3629: shortest form only, no surrogates, nothing
// above U+10FFFF; NUL is allowed, as in protobuf). Otherwise false and, when `bad_offset` is
// given, the offset of the first byte of the first ill-formed sequence.
bool IsValidUtf8(absl::string_view text, size_t* bad_offset = nullptr);

// Adds one error per ill-formed string of `message`, found by reflection (singular and repeated
// strings, nested messages, map keys and values), so every entity kind is covered without a
// list of its fields. Messages never contain the bad bytes. Paths follow FieldErrors' Kong
// conventions, derived from the proto field names:
//   - a field is its name ("name", "host"); a flat foreign key `<x>_id` other than `id` is
//     "<x>.id" (Kong shows it as a record: "service.id", "client_certificate.id");
//   - a list wrapper (a message whose only field is `values`: StringList, HeaderMatch,
//     CidrPortList) adds nothing: "paths", "headers", "sources";
//   - a list element adds its 1-based index ("paths.2", "sources.1.ip"), except the elements
//     of a map value, which are reported at the entry ("headers.x-a", as the validator does);
//   - a map value adds its key ("headers.x-a"); an ill-formed key is reported at the map
//     itself ("headers"), since it cannot be part of a path.
void CheckUtf8Fields(const google::protobuf::Message& message, FieldErrors* errors);

}  // namespace portico
