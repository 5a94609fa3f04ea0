#include "common/config/entity_json.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/uuid.h"

namespace portico {
namespace {

using nlohmann::json;
using config::v1::CidrPortList;
using config::v1::Route;
using config::v1::Service;
using config::v1::StringList;

constexpr char kExpectedString[] = "expected a string";
constexpr char kExpectedInteger[] = "expected an integer";
constexpr char kExpectedBoolean[] = "expected a boolean";
constexpr char kExpectedUuid[] = "expected a valid UUID";
constexpr char kUnknownField[] = "unknown field";

json StringListOrNull(bool present, const StringList& list) {
  if (!present) return nullptr;
  json out = json::array();
  for (const auto& v : list.values()) out.push_back(v);
  return out;
}

json CidrPortsOrNull(bool present, const CidrPortList& list) {
  if (!present) return nullptr;
  json out = json::array();
  for (const auto& v : list.values()) {
    json item = json::object();
    item["ip"] = v.has_ip() ? json(v.ip()) : json(nullptr);
    item["port"] = v.has_port() ? json(v.port()) : json(nullptr);
    out.push_back(std::move(item));
  }
  return out;
}

// Reads a JSON string; records `kExpectedString` otherwise.
bool ReadString(const json& v, absl::string_view path, FieldErrors* errors, std::string* out) {
  if (!v.is_string()) {
    errors->Add(path, kExpectedString);
    return false;
  }
  *out = v.get<std::string>();
  return true;
}

bool ReadInt64(const json& v, absl::string_view path, FieldErrors* errors, int64_t* out) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      errors->Add(path, kExpectedInteger);
      return false;
    }
    *out = v.get<int64_t>();
    return true;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e15) {
      *out = static_cast<int64_t>(d);
      return true;
    }
  }
  errors->Add(path, kExpectedInteger);
  return false;
}

// int32 fields: out-of-range values are reported by the caller-supplied bounds message.
bool ReadInt32(const json& v, absl::string_view path, FieldErrors* errors, int32_t* out) {
  int64_t wide = 0;
  if (!ReadInt64(v, path, errors, &wide)) return false;
  if (wide < std::numeric_limits<int32_t>::min() || wide > std::numeric_limits<int32_t>::max()) {
    errors->Add(path, "value out of range");
    return false;
  }
  *out = static_cast<int32_t>(wide);
  return true;
}

bool ReadBool(const json& v, absl::string_view path, FieldErrors* errors, bool* out) {
  if (!v.is_boolean()) {
    errors->Add(path, kExpectedBoolean);
    return false;
  }
  *out = v.get<bool>();
  return true;
}

// Arrays and sets of strings. `kind` is "an array" or "a set" for the message.
bool ReadStrings(const json& v, absl::string_view path, absl::string_view kind, FieldErrors* errors,
                 StringList* out) {
  if (!v.is_array()) {
    errors->Add(path, absl::StrCat("expected ", kind));
    return false;
  }
  StringList list;
  bool ok = true;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) {
      errors->Add(absl::StrCat(path, ".", i + 1), kExpectedString);
      ok = false;
      continue;
    }
    list.add_values(v[i].get<std::string>());
  }
  if (ok) *out = std::move(list);
  return ok;
}

// {"id": "<uuid>"} foreign-key record.
bool ReadForeignId(const json& v, absl::string_view path, FieldErrors* errors, std::string* id) {
  if (!v.is_object()) {
    errors->Add(path, "expected a record");
    return false;
  }
  bool ok = true;
  for (const auto& [key, value] : v.items()) {
    if (key != "id") {
      errors->Add(absl::StrCat(path, ".", key), kUnknownField);
      ok = false;
    }
  }
  auto it = v.find("id");
  if (it == v.end() || it->is_null()) {
    errors->Add(absl::StrCat(path, ".id"), "required field missing");
    return false;
  }
  if (!it->is_string() || !IsUuid(it->get<std::string>())) {
    errors->Add(absl::StrCat(path, ".id"), kExpectedUuid);
    return false;
  }
  *id = absl::AsciiStrToLower(it->get<std::string>());
  return ok;
}

bool ReadCidrPorts(const json& v, absl::string_view path, FieldErrors* errors, CidrPortList* out) {
  if (!v.is_array()) {
    errors->Add(path, "expected a set");
    return false;
  }
  CidrPortList list;
  bool ok = true;
  for (size_t i = 0; i < v.size(); ++i) {
    std::string item_path = absl::StrCat(path, ".", i + 1);
    const json& item = v[i];
    if (!item.is_object()) {
      errors->Add(item_path, "expected a record");
      ok = false;
      continue;
    }
    auto* entry = list.add_values();
    for (const auto& [key, value] : item.items()) {
      std::string field_path = absl::StrCat(item_path, ".", key);
      if (key == "ip") {
        std::string ip;
        if (value.is_null()) continue;
        if (ReadString(value, field_path, errors, &ip)) entry->set_ip(ip); else ok = false;
      } else if (key == "port") {
        int32_t port = 0;
        if (value.is_null()) continue;
        if (ReadInt32(value, field_path, errors, &port)) entry->set_port(port); else ok = false;
      } else {
        errors->Add(field_path, kUnknownField);
        ok = false;
      }
    }
  }
  if (ok) *out = std::move(list);
  return ok;
}

// Splits "scheme://host[:port][/path]" for the service `url` shorthand.
void ApplyServiceUrl(const std::string& url, Service* service, FieldErrors* errors) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos || scheme_end == 0) {
    errors->Add("url", "missing scheme in url");
    return;
  }
  std::string scheme = absl::AsciiStrToLower(url.substr(0, scheme_end));
  std::string rest = url.substr(scheme_end + 3);
  size_t path_start = rest.find('/');
  std::string authority = rest.substr(0, path_start);
  std::string path = path_start == std::string::npos ? "" : rest.substr(path_start);
  // Query and fragment are not part of a service.
  if (size_t q = path.find_first_of("?#"); q != std::string::npos) path.resize(q);
  std::string host = authority;
  std::string port_text;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) {
      errors->Add("url", "invalid url");
      return;
    }
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        errors->Add("url", "invalid url");
        return;
      }
      port_text = authority.substr(close + 2);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
  }
  if (host.empty()) {
    errors->Add("url", "missing host in url");
    return;
  }
  int32_t port = 0;
  if (!port_text.empty()) {
    if (!absl::SimpleAtoi(port_text, &port)) {
      errors->Add("url", "invalid port in url");
      return;
    }
  } else {
    port = (scheme == "https" || scheme == "grpcs" || scheme == "tls") ? 443 : 80;
  }
  service->set_protocol(scheme);
  service->set_host(host);
  service->set_port(port);
  if (path.empty()) {
    service->clear_path();
  } else {
    service->set_path(path);
  }
}

}  // namespace

json ServiceToJson(const Service& s) {
  json j = json::object();
  j["id"] = s.id();
  j["created_at"] = s.created_at();
  j["updated_at"] = s.updated_at();
  j["name"] = s.has_name() ? json(s.name()) : json(nullptr);
  j["retries"] = s.retries();
  j["protocol"] = s.protocol();
  j["host"] = s.host();
  j["port"] = s.port();
  j["path"] = s.has_path() ? json(s.path()) : json(nullptr);
  j["connect_timeout"] = s.connect_timeout();
  j["write_timeout"] = s.write_timeout();
  j["read_timeout"] = s.read_timeout();
  j["tags"] = StringListOrNull(s.has_tags(), s.tags());
  j["client_certificate"] =
      s.has_client_certificate_id() ? json{{"id", s.client_certificate_id()}} : json(nullptr);
  j["tls_verify"] = s.has_tls_verify() ? json(s.tls_verify()) : json(nullptr);
  j["tls_verify_depth"] = s.has_tls_verify_depth() ? json(s.tls_verify_depth()) : json(nullptr);
  j["ca_certificates"] = StringListOrNull(s.has_ca_certificates(), s.ca_certificates());
  j["enabled"] = s.enabled();
  return j;
}

json RouteToJson(const Route& r) {
  json j = json::object();
  j["id"] = r.id();
  j["created_at"] = r.created_at();
  j["updated_at"] = r.updated_at();
  j["name"] = r.has_name() ? json(r.name()) : json(nullptr);
  json protocols = json::array();
  for (const auto& p : r.protocols()) protocols.push_back(p);
  j["protocols"] = std::move(protocols);
  j["methods"] = StringListOrNull(r.has_methods(), r.methods());
  j["hosts"] = StringListOrNull(r.has_hosts(), r.hosts());
  j["paths"] = StringListOrNull(r.has_paths(), r.paths());
  if (r.has_headers()) {
    json headers = json::object();
    // Sorted output: protobuf maps have no stable order.
    std::map<std::string, const StringList*> sorted;
    for (const auto& [name, values] : r.headers().values()) sorted[name] = &values;
    for (const auto& [name, values] : sorted) headers[name] = StringListOrNull(true, *values);
    j["headers"] = std::move(headers);
  } else {
    j["headers"] = nullptr;
  }
  j["snis"] = StringListOrNull(r.has_snis(), r.snis());
  j["sources"] = CidrPortsOrNull(r.has_sources(), r.sources());
  j["destinations"] = CidrPortsOrNull(r.has_destinations(), r.destinations());
  j["https_redirect_status_code"] = r.https_redirect_status_code();
  j["regex_priority"] = r.regex_priority();
  j["strip_path"] = r.strip_path();
  j["preserve_host"] = r.preserve_host();
  j["request_buffering"] = r.request_buffering();
  j["response_buffering"] = r.response_buffering();
  j["path_handling"] = r.path_handling();
  j["service"] = r.has_service_id() ? json{{"id", r.service_id()}} : json(nullptr);
  j["tags"] = StringListOrNull(r.has_tags(), r.tags());
  return j;
}

Service DefaultService() {
  Service s;
  s.set_retries(5);
  s.set_protocol("http");
  s.set_port(80);
  s.set_connect_timeout(60000);
  s.set_write_timeout(60000);
  s.set_read_timeout(60000);
  s.set_enabled(true);
  return s;
}

Route DefaultRoute() {
  Route r;
  r.add_protocols("http");
  r.add_protocols("https");
  r.set_https_redirect_status_code(426);
  r.set_regex_priority(0);
  r.set_strip_path(true);
  r.set_preserve_host(false);
  r.set_request_buffering(true);
  r.set_response_buffering(true);
  r.set_path_handling("v0");
  return r;
}

void ApplyServiceJson(const json& body, Service* s, FieldErrors* errors) {
  if (!body.is_object()) {
    errors->AddEntity("expected a record");
    return;
  }
  const Service defaults = DefaultService();
  for (const auto& [key, v] : body.items()) {
    const bool null = v.is_null();
    std::string text;
    int32_t i32 = 0;
    int64_t i64 = 0;
    bool flag = false;
    if (key == "id") {
      if (null) continue;  // keep the current id
      if (!v.is_string() || !IsUuid(v.get<std::string>())) {
        errors->Add(key, kExpectedUuid);
      } else {
        s->set_id(absl::AsciiStrToLower(v.get<std::string>()));
      }
    } else if (key == "created_at" || key == "updated_at") {
      if (null) continue;
      if (ReadInt64(v, key, errors, &i64)) {
        key == "created_at" ? s->set_created_at(i64) : s->set_updated_at(i64);
      }
    } else if (key == "name") {
      if (null) s->clear_name();
      else if (ReadString(v, key, errors, &text)) s->set_name(text);
    } else if (key == "retries") {
      if (null) s->set_retries(defaults.retries());
      else if (ReadInt32(v, key, errors, &i32)) s->set_retries(i32);
    } else if (key == "protocol") {
      if (null) s->set_protocol(defaults.protocol());
      else if (ReadString(v, key, errors, &text)) s->set_protocol(text);
    } else if (key == "host") {
      if (null) s->clear_host();
      else if (ReadString(v, key, errors, &text)) s->set_host(text);
    } else if (key == "port") {
      if (null) s->set_port(defaults.port());
      else if (ReadInt32(v, key, errors, &i32)) s->set_port(i32);
    } else if (key == "path") {
      if (null) s->clear_path();
      else if (ReadString(v, key, errors, &text)) s->set_path(text);
    } else if (key == "connect_timeout" || key == "write_timeout" || key == "read_timeout") {
      if (null) i32 = 60000;
      else if (!ReadInt32(v, key, errors, &i32)) continue;
      if (key == "connect_timeout") s->set_connect_timeout(i32);
      else if (key == "write_timeout") s->set_write_timeout(i32);
      else s->set_read_timeout(i32);
    } else if (key == "tags") {
      if (null) s->clear_tags();
      else ReadStrings(v, key, "a set", errors, s->mutable_tags());
    } else if (key == "client_certificate") {
      if (null) s->clear_client_certificate_id();
      else if (ReadForeignId(v, key, errors, &text)) s->set_client_certificate_id(text);
    } else if (key == "tls_verify") {
      if (null) s->clear_tls_verify();
      else if (ReadBool(v, key, errors, &flag)) s->set_tls_verify(flag);
    } else if (key == "tls_verify_depth") {
      if (null) s->clear_tls_verify_depth();
      else if (ReadInt32(v, key, errors, &i32)) s->set_tls_verify_depth(i32);
    } else if (key == "ca_certificates") {
      if (null) s->clear_ca_certificates();
      else ReadStrings(v, key, "an array", errors, s->mutable_ca_certificates());
    } else if (key == "enabled") {
      if (null) s->set_enabled(true);
      else if (ReadBool(v, key, errors, &flag)) s->set_enabled(flag);
    } else if (key == "url") {
      if (null) continue;
      for (const char* part : {"protocol", "host", "port", "path"}) {
        if (body.contains(part)) {
          errors->Add("url", "cannot be combined with 'protocol', 'host', 'port' or 'path'");
          break;
        }
      }
      if (errors->Has("url")) continue;
      if (ReadString(v, key, errors, &text)) ApplyServiceUrl(text, s, errors);
    } else {
      errors->Add(key, kUnknownField);
    }
  }
}

void ApplyRouteJson(const json& body, Route* r, FieldErrors* errors) {
  if (!body.is_object()) {
    errors->AddEntity("expected a record");
    return;
  }
  const Route defaults = DefaultRoute();
  for (const auto& [key, v] : body.items()) {
    const bool null = v.is_null();
    std::string text;
    int32_t i32 = 0;
    int64_t i64 = 0;
    bool flag = false;
    if (key == "id") {
      if (null) continue;
      if (!v.is_string() || !IsUuid(v.get<std::string>())) {
        errors->Add(key, kExpectedUuid);
      } else {
        r->set_id(absl::AsciiStrToLower(v.get<std::string>()));
      }
    } else if (key == "created_at" || key == "updated_at") {
      if (null) continue;
      if (ReadInt64(v, key, errors, &i64)) {
        key == "created_at" ? r->set_created_at(i64) : r->set_updated_at(i64);
      }
    } else if (key == "name") {
      if (null) r->clear_name();
      else if (ReadString(v, key, errors, &text)) r->set_name(text);
    } else if (key == "protocols") {
      StringList list;
      if (null) {
        *r->mutable_protocols() = defaults.protocols();
      } else if (ReadStrings(v, key, "a set", errors, &list)) {
        r->clear_protocols();
        for (const auto& p : list.values()) r->add_protocols(p);
      }
    } else if (key == "methods") {
      if (null) r->clear_methods();
      else ReadStrings(v, key, "a set", errors, r->mutable_methods());
    } else if (key == "hosts") {
      if (null) r->clear_hosts();
      else ReadStrings(v, key, "an array", errors, r->mutable_hosts());
    } else if (key == "paths") {
      if (null) r->clear_paths();
      else ReadStrings(v, key, "an array", errors, r->mutable_paths());
    } else if (key == "snis") {
      if (null) r->clear_snis();
      else ReadStrings(v, key, "a set", errors, r->mutable_snis());
    } else if (key == "tags") {
      if (null) r->clear_tags();
      else ReadStrings(v, key, "a set", errors, r->mutable_tags());
    } else if (key == "headers") {
      if (null) {
        r->clear_headers();
        continue;
      }
      if (!v.is_object()) {
        errors->Add(key, "expected a map");
        continue;
      }
      config::v1::HeaderMatch headers;
      bool ok = true;
      for (const auto& [name, values] : v.items()) {
        StringList list;
        if (!ReadStrings(values, absl::StrCat(key, ".", name), "an array", errors, &list)) {
          ok = false;
          continue;
        }
        (*headers.mutable_values())[absl::AsciiStrToLower(name)] = std::move(list);
      }
      if (ok) *r->mutable_headers() = std::move(headers);
    } else if (key == "sources" || key == "destinations") {
      CidrPortList list;
      if (null) {
        key == "sources" ? r->clear_sources() : r->clear_destinations();
      } else if (ReadCidrPorts(v, key, errors, &list)) {
        *(key == "sources" ? r->mutable_sources() : r->mutable_destinations()) = std::move(list);
      }
    } else if (key == "https_redirect_status_code") {
      if (null) r->set_https_redirect_status_code(defaults.https_redirect_status_code());
      else if (ReadInt32(v, key, errors, &i32)) r->set_https_redirect_status_code(i32);
    } else if (key == "regex_priority") {
      if (null) r->set_regex_priority(0);
      else if (ReadInt32(v, key, errors, &i32)) r->set_regex_priority(i32);
    } else if (key == "strip_path" || key == "preserve_host" || key == "request_buffering" ||
               key == "response_buffering") {
      if (null) {
        flag = key != "preserve_host";  // defaults: true except preserve_host
      } else if (!ReadBool(v, key, errors, &flag)) {
        continue;
      }
      if (key == "strip_path") r->set_strip_path(flag);
      else if (key == "preserve_host") r->set_preserve_host(flag);
      else if (key == "request_buffering") r->set_request_buffering(flag);
      else r->set_response_buffering(flag);
    } else if (key == "path_handling") {
      if (null) r->set_path_handling(defaults.path_handling());
      else if (ReadString(v, key, errors, &text)) r->set_path_handling(text);
    } else if (key == "service") {
      if (null) r->clear_service_id();
      else if (ReadForeignId(v, key, errors, &text)) r->set_service_id(text);
    } else {
      errors->Add(key, kUnknownField);
    }
  }
}

namespace {

bool AllKeysNumeric(const json& object) {
  if (!object.is_object() || object.empty()) return false;
  for (const auto& [key, value] : object.items()) {
    int index = 0;
    if (!absl::SimpleAtoi(key, &index) || index < 1) return false;
  }
  return true;
}

// Turns {"1": x, "3": y} into [x, null, y], recursively.
json ArraysFromNumericObjects(const json& node) {
  if (!node.is_object()) return node;
  if (AllKeysNumeric(node)) {
    json array = json::array();
    for (const auto& [key, value] : node.items()) {
      int index = 0;
      (void)absl::SimpleAtoi(key, &index);
      while (array.size() < static_cast<size_t>(index)) array.push_back(nullptr);
      array[index - 1] = ArraysFromNumericObjects(value);
    }
    return array;
  }
  json out = json::object();
  for (const auto& [key, value] : node.items()) out[key] = ArraysFromNumericObjects(value);
  return out;
}

}  // namespace

json FieldErrorsToJson(const FieldErrors& errors) {
  json out = json::object();
  for (const auto& [path, message] : errors.errors()) {
    if (path == FieldErrors::kEntity) {
      out["@entity"].push_back(message);
      continue;
    }
    std::vector<std::string> segments = absl::StrSplit(path, '.');
    json* node = &out;
    for (size_t i = 0; i + 1 < segments.size(); ++i) {
      json& child = (*node)[segments[i]];
      if (!child.is_object()) child = json::object();
      node = &child;
    }
    (*node)[segments.back()] = message;
  }
  return ArraysFromNumericObjects(out);
}

FieldKind ServiceFieldKind(absl::string_view field) {
  static const std::map<std::string, FieldKind, std::less<>> kKinds = {
      {"id", FieldKind::kString},           {"created_at", FieldKind::kInteger},
      {"updated_at", FieldKind::kInteger},  {"name", FieldKind::kString},
      {"retries", FieldKind::kInteger},     {"protocol", FieldKind::kString},
      {"host", FieldKind::kString},         {"port", FieldKind::kInteger},
      {"path", FieldKind::kString},         {"connect_timeout", FieldKind::kInteger},
      {"write_timeout", FieldKind::kInteger}, {"read_timeout", FieldKind::kInteger},
      {"tags", FieldKind::kArray},          {"client_certificate", FieldKind::kRecord},
      {"tls_verify", FieldKind::kBoolean},  {"tls_verify_depth", FieldKind::kInteger},
      {"ca_certificates", FieldKind::kArray}, {"enabled", FieldKind::kBoolean},
      {"url", FieldKind::kString},
  };
  auto it = kKinds.find(field);
  return it == kKinds.end() ? FieldKind::kUnknown : it->second;
}

FieldKind RouteFieldKind(absl::string_view field) {
  static const std::map<std::string, FieldKind, std::less<>> kKinds = {
      {"id", FieldKind::kString},
      {"created_at", FieldKind::kInteger},
      {"updated_at", FieldKind::kInteger},
      {"name", FieldKind::kString},
      {"protocols", FieldKind::kArray},
      {"methods", FieldKind::kArray},
      {"hosts", FieldKind::kArray},
      {"paths", FieldKind::kArray},
      {"headers", FieldKind::kStringMap},
      {"snis", FieldKind::kArray},
      {"sources", FieldKind::kRecordArray},
      {"destinations", FieldKind::kRecordArray},
      {"https_redirect_status_code", FieldKind::kInteger},
      {"regex_priority", FieldKind::kInteger},
      {"strip_path", FieldKind::kBoolean},
      {"preserve_host", FieldKind::kBoolean},
      {"request_buffering", FieldKind::kBoolean},
      {"response_buffering", FieldKind::kBoolean},
      {"path_handling", FieldKind::kString},
      {"service", FieldKind::kRecord},
      {"tags", FieldKind::kArray},
  };
  auto it = kKinds.find(field);
  return it == kKinds.end() ? FieldKind::kUnknown : it->second;
}

}  // namespace portico
