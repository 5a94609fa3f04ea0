#include "common/config/upstreams.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/plugins/plugin_schema.h"

namespace portico {
namespace {

using nlohmann::json;

absl::Status Invalid(absl::string_view text) { return absl::InvalidArgumentError(text); }

// A port of 1+ digits; false when it has other characters or exceeds 65535 (*too_big set).
bool ParsePort(absl::string_view text, int* port, bool* too_big) {
  *too_big = false;
  if (text.empty() || text.size() > 9) {
    *too_big = !text.empty() && std::all_of(text.begin(), text.end(), absl::ascii_isdigit);
    return false;
  }
  for (char c : text) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  int value = 0;
  if (!absl::SimpleAtoi(text, &value)) return false;
  if (value > 65535) {
    *too_big = true;
    return false;
  }
  *port = value;
  return true;
}

// 1..3 digits, at most 255.
bool ParseOctet(absl::string_view text, int* value) {
  if (text.empty() || text.size() > 3) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return absl::SimpleAtoi(text, value) && *value <= 255;
}

absl::StatusOr<KongAddress> ParseIpv4(absl::string_view address) {
  const std::string bad = absl::StrCat("invalid ipv4 address: ", address);
  absl::string_view ip = address;
  KongAddress out{KongAddress::Type::kIpv4};
  if (size_t colon = address.find(':'); colon != absl::string_view::npos) {
    ip = address.substr(0, colon);
    int port = 0;
    bool too_big = false;
    if (!ParsePort(address.substr(colon + 1), &port, &too_big)) {
      return Invalid(too_big ? "invalid port number" : bad);
    }
    out.port = port;
  }
  std::vector<absl::string_view> parts = absl::StrSplit(ip, '.');
  if (parts.size() != 4) return Invalid(bad);
  std::vector<int> octets(4);
  for (size_t i = 0; i < 4; ++i) {
    if (!ParseOctet(parts[i], &octets[i])) return Invalid(bad);
  }
  out.host = absl::StrJoin(octets, ".");
  return out;
}

absl::StatusOr<KongAddress> ParseIpv6(absl::string_view address) {
  KongAddress out{KongAddress::Type::kIpv6};
  std::string check;
  if (absl::StartsWith(address, "[")) {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos) return Invalid(absl::StrCat("invalid ipv6 address: ", address));
    check = std::string(address.substr(1, close - 1));
    absl::string_view rest = address.substr(close + 1);
    if (!rest.empty()) {
      int port = 0;
      bool too_big = false;
      if (rest[0] != ':' || !ParsePort(rest.substr(1), &port, &too_big)) {
        return Invalid(too_big ? "invalid port number" : "invalid ipv6 address");
      }
      out.port = port;
    }
  } else {
    check = std::string(address);
  }
  if (absl::StartsWith(check, ":")) check = "0" + check;
  if (absl::EndsWith(check, ":")) check += "0";
  if (size_t dc = check.find("::"); dc != std::string::npos) {
    const int colons = static_cast<int>(std::count(check.begin(), check.end(), ':'));
    std::string fill = ":";
    for (int i = 0; i < 8 - colons; ++i) fill += "0:";
    check.replace(dc, 2, fill);
  }
  std::vector<absl::string_view> groups = absl::StrSplit(check, ':');
  if (groups.size() != 8) return Invalid(absl::StrCat("invalid ipv6 address: ", address));
  std::vector<std::string> expanded;
  for (absl::string_view g : groups) {
    if (g.empty() || g.size() > 4 || !std::all_of(g.begin(), g.end(), absl::ascii_isxdigit)) {
      return Invalid(absl::StrCat("invalid ipv6 address: ", address));
    }
    expanded.push_back(absl::AsciiStrToLower(absl::StrCat(std::string(4 - g.size(), '0'), g)));
  }
  out.host = absl::StrJoin(expanded, ":");
  return out;
}

absl::StatusOr<KongAddress> ParseName(absl::string_view address) {
  KongAddress out{KongAddress::Type::kName};
  absl::string_view name = address;
  // A trailing ":<digits>" is the port.
  if (size_t colon = address.rfind(':'); colon != absl::string_view::npos && colon + 1 < address.size() &&
                                         std::all_of(address.begin() + colon + 1, address.end(), absl::ascii_isdigit)) {
    int port = 0;
    bool too_big = false;
    if (!ParsePort(address.substr(colon + 1), &port, &too_big)) return Invalid("invalid port number");
    out.port = port;
    name = address.substr(0, colon);
  }
  const std::string bad = absl::StrCat("invalid hostname: ", address);
  if (name.empty()) return Invalid(bad);
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '.' && c != '_') return Invalid(bad);
  }
  std::vector<absl::string_view> labels = absl::StrSplit(name, '.');
  for (size_t i = 0; i < labels.size(); ++i) {
    if (absl::EndsWith(labels[i], "-") || (labels[i].empty() && i + 1 != labels.size())) return Invalid(bad);
  }
  out.host = std::string(name);
  return out;
}

// --- healthchecks: one function per record ---

const std::vector<std::string> kCheckTypes = {"tcp", "http", "https", "grpc", "grpcs"};
constexpr int64_t kMaxInt = int64_t{1} << 31;

json ActiveHealthy(const json& record, FieldErrors* errors) {
  plugins::ConfigFields f(record, errors);
  f.Number("interval", 0, 0, 65535);
  f.IntegerArray("http_statuses", std::vector<int64_t>{200, 302}, 100, 999);
  f.Integer("successes", 0, 0, 255);
  return f.Finish();
}

json ActiveUnhealthy(const json& record, FieldErrors* errors) {
  plugins::ConfigFields f(record, errors);
  f.Number("interval", 0, 0, 65535);
  f.IntegerArray("http_statuses", std::vector<int64_t>{429, 404, 500, 501, 502, 503, 504, 505}, 100, 999);
  f.Integer("tcp_failures", 0, 0, 255);
  f.Integer("timeouts", 0, 0, 255);
  f.Integer("http_failures", 0, 0, 255);
  return f.Finish();
}

json PassiveHealthy(const json& record, FieldErrors* errors) {
  plugins::ConfigFields f(record, errors);
  f.IntegerArray("http_statuses",
                 std::vector<int64_t>{200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305,
                                      306, 307, 308},
                 100, 999);
  f.Integer("successes", 0, 0, 255);
  return f.Finish();
}

json PassiveUnhealthy(const json& record, FieldErrors* errors) {
  plugins::ConfigFields f(record, errors);
  f.IntegerArray("http_statuses", std::vector<int64_t>{429, 500, 503}, 100, 999);
  f.Integer("tcp_failures", 0, 0, 255);
  f.Integer("timeouts", 0, 0, 255);
  f.Integer("http_failures", 0, 0, 255);
  return f.Finish();
}

json Active(const json& record, FieldErrors* errors) {
  plugins::ConfigFields f(record, errors);
  f.String("type", "http", kCheckTypes);
  f.Number("timeout", 1, 0, 65535);
  f.Integer("concurrency", 10, 1, kMaxInt);
  if (std::optional<std::string> path = f.String("http_path", "/")) {
    if (std::string e = KongPathError(*path); !e.empty()) errors->Add("http_path", e);
  }
  if (std::optional<std::string> sni = f.String("https_sni", std::nullopt)) {
    if (std::string e = KongSniError(*sni); !e.empty()) errors->Add("https_sni", e);
  }
  f.Boolean("https_verify_certificate", true);
  f.StringArrayMap("headers", &KongHeaderNameError);
  f.Record("healthy", &ActiveHealthy);
  f.Record("unhealthy", &ActiveUnhealthy);
  return f.Finish();
}

json Passive(const json& record, FieldErrors* errors) {
  plugins::ConfigFields f(record, errors);
  f.String("type", "http", kCheckTypes);
  f.Record("healthy", &PassiveHealthy);
  f.Record("unhealthy", &PassiveUnhealthy);
  return f.Finish();
}

}  // namespace

absl::StatusOr<KongAddress> ParseKongAddress(absl::string_view address) {
  // Kong's hostname_type: more than one ':' is IPv6; digits and dots (once ':' are dropped) IPv4.
  const size_t colons = std::count(address.begin(), address.end(), ':');
  if (colons > 1) return ParseIpv6(address);
  bool digits_and_dots = !address.empty() && address != ":";
  for (char c : address) digits_and_dots = digits_and_dots && (absl::ascii_isdigit(c) || c == '.' || c == ':');
  if (digits_and_dots) return ParseIpv4(address);
  return ParseName(address);
}

std::optional<std::string> FormatTarget(absl::string_view target) {
  absl::StatusOr<KongAddress> address = ParseKongAddress(target);
  if (!address.ok()) return std::nullopt;
  const int port = address->port.value_or(kDefaultTargetPort);
  if (address->type == KongAddress::Type::kIpv6) return absl::StrCat("[", address->host, "]:", port);
  return absl::StrCat(address->host, ":", port);
}

std::string KongPathError(absl::string_view path) {
  if (!absl::StartsWith(path, "/")) return "should start with: /";
  if (absl::StrContains(path, "//")) return "must not have empty segments";
  for (char c : path) {
    if (!absl::ascii_isalnum(c) && !absl::StrContains("._-~/%:@!$&'()*+,;=", c)) {
      return absl::StrCat("invalid path: '", path, "' (characters outside of the reserved list of RFC 3986 found)");
    }
  }
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') continue;
    if (i + 2 < path.size() + 0 && absl::ascii_isxdigit(path[i + 1]) && absl::ascii_isxdigit(path[i + 2])) {
      i += 2;
      continue;
    }
    return absl::StrCat("invalid url-encoded value: '", path.substr(i, 3), "'");
  }
  return "";
}

std::string KongSniError(absl::string_view sni) {
  absl::StatusOr<KongAddress> address = ParseKongAddress(sni);
  if (!address.ok()) {
    return address.status().message() == "invalid port number" ? "must not have a port"
                                                                : absl::StrCat("invalid value: ", sni);
  }
  if (address->type != KongAddress::Type::kName) return "must not be an IP";
  if (address->port) return "must not have a port";
  return "";
}

namespace {

bool IsTokenName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

}  // namespace

std::string KongHeaderNameError(absl::string_view name) {
  if (IsTokenName(name)) return "";
  return absl::StrCat("bad header name '", name, "', allowed characters are A-Z, a-z, 0-9, '_', and '-'");
}

std::string KongCookieNameError(absl::string_view name) {
  if (IsTokenName(name)) return "";
  return absl::StrCat("bad cookie name '", name, "', allowed characters are A-Z, a-z, 0-9, '_', and '-'");
}

json NormalizeUpstreamHealthchecks(const json& record, FieldErrors* errors) {
  plugins::ConfigFields f(record, errors);
  f.Record("active", &Active);
  f.Record("passive", &Passive);
  f.Number("threshold", 0, 0, 100);
  return f.Finish();
}

bool UpstreamUsesHealthchecks(const json& record) {
  auto nonzero = [&record](std::initializer_list<const char*> path) {
    const json* node = &record;
    for (const char* key : path) {
      if (!node->is_object()) return false;
      auto it = node->find(key);
      if (it == node->end()) return false;
      node = &*it;
    }
    return node->is_number() && node->get<double>() != 0;
  };
  return nonzero({"active", "healthy", "interval"}) || nonzero({"active", "unhealthy", "interval"}) ||
         nonzero({"passive", "unhealthy", "tcp_failures"}) || nonzero({"passive", "unhealthy", "timeouts"}) ||
         nonzero({"passive", "unhealthy", "http_failures"});
}

const std::string& DefaultUpstreamHealthchecksJson() {
  static const std::string* const text = [] {
    FieldErrors ignored;
    return new std::string(NormalizeUpstreamHealthchecks(json::object(), &ignored).dump());
  }();
  return *text;
}

void MergeUpstreamHealthchecks(json* current, const json& patch) {
  if (!current->is_object()) *current = json::object();
  for (const auto& [key, value] : patch.items()) {
    if (value.is_null()) {
      current->erase(key);
    } else if (value.is_object() && key != "headers" && current->contains(key) && (*current)[key].is_object()) {
      MergeUpstreamHealthchecks(&(*current)[key], value);
    } else {
      (*current)[key] = value;
    }
  }
}

void RewriteUpstreamBody(json* body) {
  if (!body->is_object()) return;
  if (auto algorithm = body->find("algorithm"); algorithm != body->end() && algorithm->is_string()) {
    if (*algorithm == "least-connections" || *algorithm == "latency") (*body)["hash_on"] = nullptr;
  }
  if (auto hash_on = body->find("hash_on"); hash_on != body->end() && hash_on->is_string()) {
    (*body)["algorithm"] = *hash_on == "none" ? "round-robin" : "consistent-hashing";
  }
}

}  // namespace portico
