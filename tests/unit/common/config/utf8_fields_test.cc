// UTF-8 checks of entity strings (common/config/utf8_fields.h) and how the validator uses them:
// a proto3 string that is not UTF-8 serializes but never parses back, so an entity carrying one
// must be refused with the field's path before anything echoes its bytes.
#include "common/config/utf8_fields.h"

#include <functional>
#include <string>
#include <vector>

#include "common/config/entity_json.h"
#include "common/config/validate.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/message.h"
#include "gtest/gtest.h"

namespace portico {
namespace {

using config::v1::Route;
using config::v1::Service;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

constexpr char kServiceId[] = "11111111-1111-4111-8111-111111111111";
constexpr char kRouteId[] = "22222222-2222-4222-8222-222222222222";
const std::string kBad = "bad\xff\xfe";  // ill-formed at offset 3

Service ValidService() {
  Service s = DefaultService();
  s.set_id(kServiceId);
  s.set_host("example.com");
  return s;
}

Route ValidRoute() {
  Route r = DefaultRoute();
  r.set_id(kRouteId);
  r.mutable_paths()->add_values("/api");
  return r;
}

// Every path and message is UTF-8, and so is the Kong message built from them.
void ExpectPrintable(const FieldErrors& errors) {
  for (const auto& [path, message] : errors.errors()) {
    EXPECT_TRUE(IsValidUtf8(path)) << path;
    EXPECT_TRUE(IsValidUtf8(message)) << path << ": " << message;
  }
  EXPECT_TRUE(IsValidUtf8(errors.KongMessage())) << errors.KongMessage();
}

std::string MessageFor(const FieldErrors& errors, const std::string& path) {
  std::string all;
  for (const auto& [p, m] : errors.errors()) {
    if (p == path) return m;
    all += p + "=" + m + "; ";
  }
  return "<none; got: " + all + ">";
}

// Protobuf's own verdict: does a Service whose name is `text` survive serialize + parse?
bool ProtobufRoundTrips(const std::string& text) {
  Service s;
  s.set_name(text);
  Service back;
  return back.ParseFromString(s.SerializeAsString());
}

TEST(IsValidUtf8Test, AcceptsWellFormedAndFindsTheFirstBadByte) {
  struct Case {
    std::string text;
    bool valid;
    size_t offset;
  };
  const std::vector<Case> cases = {
      {"", true, 0},
      {"plain ascii", true, 0},
      {std::string("nul\0inside", 10), true, 0},
      {"s\xc3\xa9rvice", true, 0},          // é
      {"\xe2\x82\xac", true, 0},            // €
      {"\xf0\x9f\x98\x80", true, 0},        // U+1F600
      {"\xf4\x8f\xbf\xbf", true, 0},        // U+10FFFF
      {"\xed\x9f\xbf", true, 0},            // U+D7FF, just below the surrogates
      {"bad\xff\xfe", false, 3},
      {"\x80", false, 0},                   // lone continuation byte
      {"a\xc0\x80", false, 1},              // overlong NUL
      {"\xc1\xbf", false, 0},               // overlong
      {"\xe0\x80\xaf", false, 0},           // overlong '/'
      {"\xf0\x80\x80\xaf", false, 0},       // overlong '/'
      {"ok\xed\xa0\x80", false, 2},         // surrogate U+D800
      {"\xf4\x90\x80\x80", false, 0},       // above U+10FFFF
      {"\xf5\x80\x80\x80", false, 0},
      {"\xe2\x82", false, 0},               // truncated
      {"\xe2\x28\xa1", false, 0},           // bad continuation
      {"abc\xc3", false, 3},                // truncated at the end
      // Longer ASCII runs (checked eight bytes at a time) before, between and after.
      {"0123456789abcdef\xff", false, 16},
      {"0123456789abcdef\xc3\xa9/0123456789abcdefg", true, 0},
      {"0123456789abcdef\xc3\xa9/0123456789abcdefg\x80xyz", false, 36},
      {"abcdefgh\xc3", false, 8},
  };
  for (const Case& c : cases) {
    size_t offset = 12345;
    EXPECT_EQ(IsValidUtf8(c.text, &offset), c.valid) << testing::PrintToString(c.text);
    if (!c.valid) {
      EXPECT_EQ(offset, c.offset) << testing::PrintToString(c.text);
    }
  }
}

// The check must refuse everything protobuf refuses to parse back: whatever it accepts, protobuf
// parses. Exhaustive over 1- and 2-byte strings, and over 3- and 4-byte strings built from the
// boundary values of every lead byte.
TEST(IsValidUtf8Test, AcceptsNothingProtobufCannotParseBack) {
  int accepted = 0, checked = 0;
  auto check = [&](const std::string& text) {
    ++checked;
    if (!IsValidUtf8(text)) return;
    ++accepted;
    EXPECT_TRUE(ProtobufRoundTrips(text)) << testing::PrintToString(text);
  };
  for (int a = 0; a < 256; ++a) {
    check(std::string(1, static_cast<char>(a)));
    for (int b = 0; b < 256; ++b) check({static_cast<char>(a), static_cast<char>(b)});
  }
  const std::vector<int> tails = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
  for (int lead = 0xc0; lead < 0x100; ++lead) {
    for (int b : tails) {
      for (int c : tails) {
        check({static_cast<char>(lead), static_cast<char>(b), static_cast<char>(c)});
        for (int d : tails) {
          check({static_cast<char>(lead), static_cast<char>(b), static_cast<char>(c), static_cast<char>(d)});
        }
      }
    }
  }
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(checked, 100000);
}

TEST(CheckUtf8FieldsTest, NamesKongFieldPathsWithoutEchoingTheBytes) {
  struct Case {
    std::string name;
    std::function<void(Route&)> mutate;
    std::string path;
  };
  const std::vector<Case> cases = {
      {"name", [](Route& r) { r.set_name(kBad); }, "name"},
      {"second path", [](Route& r) { r.mutable_paths()->add_values("/v\xff"); }, "paths.2"},
      {"header value",
       [](Route& r) { (*r.mutable_headers()->mutable_values())["x-a"].add_values("v\xff"); }, "headers.x-a"},
      {"header name",
       [](Route& r) { (*r.mutable_headers()->mutable_values())["x-\xff"].add_values("v"); }, "headers"},
      {"source ip", [](Route& r) { r.mutable_sources()->add_values()->set_ip("10.0.0.\xff"); }, "sources.1.ip"},
      {"service fk", [](Route& r) { r.set_service_id(kBad); }, "service.id"},
      {"tag", [](Route& r) { r.mutable_tags()->add_values(kBad); }, "tags.1"},
      {"protocol", [](Route& r) { r.add_protocols(kBad); }, "protocols.3"},
      {"path_handling", [](Route& r) { r.set_path_handling(kBad); }, "path_handling"},
  };
  for (const Case& c : cases) {
    Route r = ValidRoute();
    c.mutate(r);
    FieldErrors errors;
    CheckUtf8Fields(r, &errors);
    ASSERT_EQ(errors.size(), 1u) << c.name << ": " << errors.KongMessage();
    EXPECT_EQ(errors.errors()[0].first, c.path) << c.name;
    EXPECT_NE(errors.errors()[0].second.find("valid UTF-8"), std::string::npos) << c.name;
    ExpectPrintable(errors);
  }
  Service s = ValidService();
  s.set_client_certificate_id(kBad);
  FieldErrors errors;
  CheckUtf8Fields(s, &errors);
  EXPECT_EQ(MessageFor(errors, "client_certificate.id"), "expected a valid UTF-8 string (invalid byte at offset 3)");
  FieldErrors none;
  CheckUtf8Fields(ValidRoute(), &none);
  EXPECT_TRUE(none.empty()) << none.KongMessage();
}

// Puts an ill-formed string at the end of `path` (a chain of fields; a repeated or map field
// gets one new element), creating the messages on the way. A path ending in a map field gets an
// entry with an ill-formed key.
void Poison(Message* message, const std::vector<const FieldDescriptor*>& path, size_t at) {
  const FieldDescriptor* field = path[at];
  const auto* reflection = message->GetReflection();
  const bool last = at + 1 == path.size();
  if (field->is_map()) {
    Message* entry = reflection->AddMessage(message, field);
    const FieldDescriptor* key = field->message_type()->map_key();
    const FieldDescriptor* value = field->message_type()->map_value();
    entry->GetReflection()->SetString(entry, key, last ? kBad : "key");
    if (value->type() == FieldDescriptor::TYPE_STRING) {
      entry->GetReflection()->SetString(entry, value, "v");
    } else if (!last) {
      Poison(entry->GetReflection()->MutableMessage(entry, value), path, at + 1);
    }
    return;
  }
  if (field->type() == FieldDescriptor::TYPE_STRING) {
    if (field->is_repeated()) {
      reflection->AddString(message, field, kBad);
    } else {
      reflection->SetString(message, field, kBad);
    }
    return;
  }
  Message* child = field->is_repeated() ? reflection->AddMessage(message, field)
                                        : reflection->MutableMessage(message, field);
  Poison(child, path, at + 1);
}

// Every chain of fields from `type` that ends in a string or a map (its key).
void StringPaths(const google::protobuf::Descriptor* type, std::vector<const FieldDescriptor*>* prefix,
                 std::vector<std::vector<const FieldDescriptor*>>* out) {
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    prefix->push_back(field);
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      out->push_back(*prefix);
    } else if (field->is_map()) {
      out->push_back(*prefix);  // the key
      const FieldDescriptor* value = field->message_type()->map_value();
      if (value->type() == FieldDescriptor::TYPE_STRING) {
        prefix->push_back(value);
        out->push_back(*prefix);  // a string value
        prefix->pop_back();
      } else if (value->type() == FieldDescriptor::TYPE_MESSAGE) {
        StringPaths(value->message_type(), prefix, out);
      }
    } else if (field->type() == FieldDescriptor::TYPE_MESSAGE && prefix->size() < 4) {
      StringPaths(field->message_type(), prefix, out);
    }
    prefix->pop_back();
  }
}

// Whatever string field an entity kind has (now or later), an ill-formed value in it is refused
// by the validator, and the refused entity is indeed one that protobuf cannot parse back.
template <typename Entity>
void EveryStringFieldIsChecked(const Entity& valid, FieldErrors (*validate)(const Entity&),
                               size_t string_paths_today) {
  std::vector<const FieldDescriptor*> prefix;
  std::vector<std::vector<const FieldDescriptor*>> paths;
  StringPaths(Entity::descriptor(), &prefix, &paths);
  ASSERT_GE(paths.size(), string_paths_today);
  for (const auto& path : paths) {
    Entity e = valid;
    std::string where;
    for (const FieldDescriptor* f : path) where += "/" + f->name();
    if (path.back()->containing_type()->options().map_entry()) {
      // a string map value: poison the map (key "key") and set the value by hand
      std::vector<const FieldDescriptor*> to_map(path.begin(), path.end() - 1);
      Message* m = &e;
      for (size_t i = 0; i + 1 < to_map.size(); ++i) {
        m = to_map[i]->is_repeated() ? m->GetReflection()->AddMessage(m, to_map[i])
                                     : m->GetReflection()->MutableMessage(m, to_map[i]);
      }
      Message* entry = m->GetReflection()->AddMessage(m, to_map.back());
      entry->GetReflection()->SetString(entry, entry->GetDescriptor()->map_key(), "key");
      entry->GetReflection()->SetString(entry, path.back(), kBad);
    } else {
      Poison(&e, path, 0);
    }
    Entity back;
    EXPECT_FALSE(back.ParseFromString(e.SerializeAsString())) << where;
    FieldErrors errors = validate(e);
    EXPECT_FALSE(errors.empty()) << where;
    bool utf8_error = false;
    for (const auto& [p, m] : errors.errors()) utf8_error |= m.find("valid UTF-8") != std::string::npos;
    EXPECT_TRUE(utf8_error) << where << ": " << errors.KongMessage();
    ExpectPrintable(errors);
  }
}

TEST(ValidateUtf8Test, EveryStringFieldOfEveryKindIsChecked) {
  // Service: id name protocol host path tags client_certificate_id ca_certificates.
  EveryStringFieldIsChecked<Service>(ValidService(), &ValidateServiceFields, 8);
  // Route: id name protocols methods hosts paths headers(key) headers(value) snis sources.ip
  // destinations.ip path_handling service_id tags.
  EveryStringFieldIsChecked<Route>(ValidRoute(), &ValidateRouteFields, 14);
}

TEST(ValidateUtf8Test, Utf8ErrorComesFirstAndOtherFieldsAreStillReported) {
  Service s = ValidService();
  s.set_name(kBad);   // would also fail the name character rule, echoing the bytes
  s.set_host("a\xff.example.com");
  s.set_port(70000);  // another field: still reported
  FieldErrors errors = ValidateServiceFields(s);
  EXPECT_EQ(MessageFor(errors, "name"), "expected a valid UTF-8 string (invalid byte at offset 3)");
  EXPECT_EQ(MessageFor(errors, "host"), "expected a valid UTF-8 string (invalid byte at offset 1)");
  EXPECT_EQ(MessageFor(errors, "port"), "value should be between 0 and 65535");
  EXPECT_EQ(errors.size(), 3u) << errors.KongMessage();
  ExpectPrintable(errors);

  // A regex header value that is not UTF-8: the RE2 error (which quotes the value) is dropped.
  Route r = ValidRoute();
  (*r.mutable_headers()->mutable_values())["x-a"].add_values("~*(\xff");
  errors = ValidateRouteFields(r);
  EXPECT_EQ(errors.size(), 1u) << errors.KongMessage();
  EXPECT_EQ(MessageFor(errors, "headers.x-a"), "expected a valid UTF-8 string (invalid byte at offset 3)");
  ExpectPrintable(errors);

  // Entity-level rules are not evaluated on bad values.
  Route empty = ValidRoute();
  empty.clear_paths();
  empty.set_name(kBad);
  errors = ValidateRouteFields(empty);
  EXPECT_FALSE(errors.Has(FieldErrors::kEntity)) << errors.KongMessage();
}

TEST(ValidateUtf8Test, ConfigSetNamesTheEntityAndFieldInPrintableText) {
  ConfigSet set;
  set.services = {ValidService()};
  Route r = ValidRoute();
  r.set_name(kBad);
  set.routes = {r};
  absl::Status status = ValidateConfigSet(set);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), std::string("route ") + kRouteId +
                                  ": schema violation (name: expected a valid UTF-8 string (invalid byte at offset 3))");

  // Two services with the same ill-formed name: the UTF-8 error, not "duplicate name '<bytes>'".
  Service a = ValidService(), b = ValidService();
  a.set_name(kBad);
  b.set_name(kBad);
  b.set_id("33333333-3333-4333-8333-333333333333");
  set.services = {a, b};
  set.routes.clear();
  status = ValidateConfigSet(set);
  EXPECT_TRUE(IsValidUtf8(status.message())) << status;
  EXPECT_NE(status.message().find("valid UTF-8"), std::string::npos) << status;

  // An id that is neither a UUID nor UTF-8 is printed escaped.
  Service odd = ValidService();
  odd.set_id("id\xff");
  set.services = {odd};
  status = ValidateConfigSet(set);
  EXPECT_TRUE(IsValidUtf8(status.message())) << status;
  EXPECT_NE(status.message().find("id is not a UUID"), std::string::npos) << status;
}

}  // namespace
}  // namespace portico
