#include "common/config/utf8_fields.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/text_format.h"

namespace portico {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// A field path as a chain of stack nodes, turned into text only when an error is reported (valid
// entities, the common case, allocate nothing).
struct PathNode {
  const PathNode* parent = nullptr;
  const FieldDescriptor* field = nullptr;  // a field segment ("name", "<x>.id" for "<x>_id")
  int index = 0;                           // > 0: a list element segment
  absl::string_view key;                   // a map key segment (when field and index are unset)
  bool empty = false;                      // adds no segment (a wrapper's `values`)
};

void AppendSegment(const PathNode& node, std::string* out) {
  if (node.empty) return;
  if (!out->empty()) out->push_back('.');
  if (node.field != nullptr) {
    const std::string& name = node.field->name();
    if (name != "id" && absl::EndsWith(name, "_id")) {
      absl::StrAppend(out, absl::string_view(name).substr(0, name.size() - 3), ".id");
    } else {
      out->append(name);
    }
  } else if (node.index > 0) {
    absl::StrAppend(out, node.index);
  } else {
    out->append(node.key.data(), node.key.size());
  }
}

std::string PathText(const PathNode* node) {
  std::vector<const PathNode*> chain;
  for (; node != nullptr; node = node->parent) chain.push_back(node);
  std::string out;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) AppendSegment(**it, &out);
  return out;
}

// A list wrapper: a (non map-entry) message whose only field is `values`.
bool IsWrapper(const Descriptor* type) {
  return !type->options().map_entry() && type->field_count() == 1 && type->field(0)->name() == "values";
}

bool IsString(const FieldDescriptor* field) { return field->type() == FieldDescriptor::TYPE_STRING; }

void CheckString(const std::string& value, const PathNode& path, FieldErrors* errors) {
  size_t bad = 0;
  if (!IsValidUtf8(value, &bad)) {
    errors->Add(PathText(&path), absl::StrCat("expected a valid UTF-8 string (invalid byte at offset ", bad, ")"));
  }
}

// `index_elements` is false for the list wrapped in a map value (reported at the entry).
void Walk(const Message& message, const PathNode* path, bool index_elements, FieldErrors* errors);

void WalkMap(const Message& message, const FieldDescriptor* field, const PathNode& path, FieldErrors* errors) {
  const Reflection* reflection = message.GetReflection();
  const FieldDescriptor* key_field = field->message_type()->map_key();
  const FieldDescriptor* value_field = field->message_type()->map_value();
  const int size = reflection->FieldSize(message, field);
  for (int i = 0; i < size; ++i) {
    const Message& entry = reflection->GetRepeatedMessage(message, field, i);
    const Reflection* entry_reflection = entry.GetReflection();
    std::string scratch, key;
    if (IsString(key_field)) {
      key = entry_reflection->GetStringReference(entry, key_field, &scratch);
      size_t bad = 0;
      if (!IsValidUtf8(key, &bad)) {
        errors->Add(PathText(&path),
                    absl::StrCat("a key is not a valid UTF-8 string (invalid byte at offset ", bad, ")"));
        continue;
      }
    } else {
      google::protobuf::TextFormat::PrintFieldValueToString(entry, key_field, -1, &key);
    }
    PathNode value_path{&path};
    value_path.key = key;
    if (IsString(value_field)) {
      std::string scratch;
      CheckString(entry_reflection->GetStringReference(entry, value_field, &scratch), value_path, errors);
    } else if (value_field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      Walk(entry_reflection->GetMessage(entry, value_field), &value_path, /*index_elements=*/false, errors);
    }
  }
}

void Walk(const Message& message, const PathNode* path, bool index_elements, FieldErrors* errors) {
  const Reflection* reflection = message.GetReflection();
  const Descriptor* type = message.GetDescriptor();
  const bool wrapper = IsWrapper(type);
  for (int f = 0; f < type->field_count(); ++f) {
    const FieldDescriptor* field = type->field(f);
    const bool is_message = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
    if (!is_message && !IsString(field)) continue;  // numbers, bools, enums, bytes
    if (field->is_repeated() ? reflection->FieldSize(message, field) == 0 : !reflection->HasField(message, field)) {
      continue;
    }
    PathNode field_path{path};
    if (wrapper) {
      field_path.empty = true;
    } else {
      field_path.field = field;
    }
    if (field->is_map()) {
      WalkMap(message, field, field_path, errors);
    } else if (field->is_repeated()) {
      const int size = reflection->FieldSize(message, field);
      for (int i = 0; i < size; ++i) {
        PathNode element_path{&field_path};
        if (wrapper && !index_elements) {
          element_path.empty = true;
        } else {
          element_path.index = i + 1;
        }
        if (IsString(field)) {
          std::string scratch;  // GetRepeatedStringReference returns the stored string, no copy
          CheckString(reflection->GetRepeatedStringReference(message, field, i, &scratch), element_path, errors);
        } else {
          Walk(reflection->GetRepeatedMessage(message, field, i), &element_path, true, errors);
        }
      }
    } else if (IsString(field)) {
      std::string scratch;
      CheckString(reflection->GetStringReference(message, field, &scratch), field_path, errors);
    } else {
      Walk(reflection->GetMessage(message, field), &field_path, true, errors);
    }
  }
}

}  // namespace

bool IsValidUtf8(absl::string_view text, size_t* bad_offset) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      // ASCII runs (nearly every gateway string) eight bytes at a time.
      uint64_t word = 0;
      while (i + 8 <= n && (std::memcpy(&word, s + i, 8), (word & 0x8080808080808080ULL) == 0)) i += 8;
      continue;
    }
    // Length and the allowed range of the second byte (RFC 3629 §4), which excludes overlong
    // forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above U+10FFFF.
    size_t length = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c == 0xE0) {
      length = 3;
      lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      length = 3;
    } else if (c == 0xED) {
      length = 3;
      hi = 0x9F;
    } else if (c == 0xF0) {
      length = 4;
      lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
      length = 4;
    } else if (c == 0xF4) {
      length = 4;
      hi = 0x8F;
    }
    bool ok = length != 0 && i + length <= n && s[i + 1] >= lo && s[i + 1] <= hi;
    for (size_t k = 2; ok && k < length; ++k) ok = (s[i + k] & 0xC0) == 0x80;
    if (!ok) {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    i += length;
  }
  return true;
}

void CheckUtf8Fields(const Message& message, FieldErrors* errors) {
  Walk(message, nullptr, /*index_elements=*/true, errors);
}

}  // namespace portico
