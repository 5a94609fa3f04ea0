// Fuzz target: what a data plane does with the bytes of a snapshot from the control plane
// (data_plane/main.cc's apply path): DecodeSnapshot, then ValidateConfigSet, then
// RuntimeConfig::Compile (which builds the router), then a few lookups.
//
// Input: byte 0 bit 0 chooses the mode, the rest is the snapshot data.
//   0: gzip mode. The rest is the compressed stream, as the chunks deliver it.
//   1: raw mode. The rest is the uncompressed ConfigPayload protobuf, decoded with gzip=false (the
//      NONE encoding), so mutations reach the entity parser and the validator without having to
//      keep a gzip CRC right.
// In both modes the harness inflates/parses the payload itself to announce what an honest CP
// would announce (uncompressed size, epoch/version, and the config hash recomputed here with the
// algorithm of snapshot.h), so DecodeSnapshot's checks pass whenever the payload is well formed.
// No test-only entry point in common/snapshot is needed.
//
// Invariants (ids as printed):
//   hash-agrees         a payload that parses and is strictly sorted never fails the hash check
//                       (the harness's hash is snapshot.h's; if this fires after a change of the
//                       hash, update ConfigHash below)
//   decode-status       failures are InvalidArgument (DECODE) or ResourceExhausted, never another code;
//                       an unsorted payload is refused
//   decode-shape        the decoded services/routes are exactly the payload's "services"/"routes"
//                       resources, in id order, each with its resource id
//   wrong-hash          the same bytes announced with another hash fail with DataLoss
//   wrong-size          the same bytes announced with another uncompressed size fail
//   roundtrip           BuildSnapshotOfExported(ExportableConfig(decoded)) decodes back to equal entities
//   validated-compiles  a config ValidateConfigSet accepts is compiled by RuntimeConfig::Compile
//                       (otherwise every DP NACKs a config the CP's own validator published);
//                       id validated-compiles-port0 when a service has port 0
//   route-self-match    in a compiled config, the request a plain-path route describes (its first
//                       non-wildcard host, first method, first plain path, one plain value per
//                       header) is matched by some route
//   regex-match         a request path that a routable regex-only route's pattern matches (RE2,
//                       partial match of "^" + regex, as docs/router.md says) is matched by some route
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"
#include "data_plane/proxy/runtime_config.h"
#include "data_plane/router/router.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "portico/sync/v1/sync.pb.h"
#include "re2/re2.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using portico::ConfigSet;
using portico::ConfigVersion;
using portico::fuzz::Show;

constexpr uint64_t kMaxInflate = uint64_t{4} << 20;

// snapshot.h: resource_hash = SHA-256(body); config_hash = SHA-256 over kind 0x00 id 0x00
// resource_hash, in payload order (DecodeSnapshot checks that order is strictly sorted).
std::string ConfigHash(const portico::sync::v1::ConfigPayload& payload) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (const portico::sync::v1::Resource& r : payload.resources()) {
    unsigned char body_hash[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(r.body().data()), r.body().size(), body_hash);
    EVP_DigestUpdate(ctx, r.kind().data(), r.kind().size());
    EVP_DigestUpdate(ctx, "", 1);
    EVP_DigestUpdate(ctx, r.id().data(), r.id().size());
    EVP_DigestUpdate(ctx, "", 1);
    EVP_DigestUpdate(ctx, body_hash, sizeof(body_hash));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

// The harness's own inflate (to learn what an honest CP would announce). False when the input is
// not exactly one gzip member, or inflates to more than kMaxInflate bytes.
bool Inflate(absl::string_view in, std::string* out) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return false;
  out->clear();
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  char buffer[16384];
  while (rc == Z_OK && out->size() <= kMaxInflate) {
    z.next_out = reinterpret_cast<Bytef*>(buffer);
    z.avail_out = sizeof(buffer);
    rc = inflate(&z, Z_NO_FLUSH);
    out->append(buffer, sizeof(buffer) - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_out != 0) break;  // input ended early
    if (rc == Z_BUF_ERROR) rc = Z_OK;
  }
  const bool ok = rc == Z_STREAM_END && z.avail_in == 0 && out->size() <= kMaxInflate;
  inflateEnd(&z);
  return ok;
}

bool StrictlySorted(const portico::sync::v1::ConfigPayload& payload) {
  for (int i = 1; i < payload.resources_size(); ++i) {
    const auto& a = payload.resources(i - 1);
    const auto& b = payload.resources(i);
    if (std::make_pair(a.kind(), a.id()) >= std::make_pair(b.kind(), b.id())) return false;
  }
  return true;
}

bool SameEntities(const ConfigSet& a, const ConfigSet& b) {
  if (a.services.size() != b.services.size() || a.routes.size() != b.routes.size()) return false;
  for (size_t i = 0; i < a.services.size(); ++i) {
    if (!google::protobuf::util::MessageDifferencer::Equals(a.services[i], b.services[i])) return false;
  }
  for (size_t i = 0; i < a.routes.size(); ++i) {
    if (!google::protobuf::util::MessageDifferencer::Equals(a.routes[i], b.routes[i])) return false;
  }
  return true;
}

void CheckShape(const portico::sync::v1::ConfigPayload& payload, const ConfigSet& config) {
  size_t s = 0;
  size_t r = 0;
  bool ok = true;
  for (const portico::sync::v1::Resource& res : payload.resources()) {
    if (res.kind() == "services") {
      ok = ok && s < config.services.size() && config.services[s++].id() == res.id();
    } else if (res.kind() == "routes") {
      ok = ok && r < config.routes.size() && config.routes[r++].id() == res.id();
    }
  }
  FUZZ_CHECK(ok && s == config.services.size() && r == config.routes.size(), "decode-shape",
             absl::StrCat(config.services.size(), " services, ", config.routes.size(), " routes decoded"));
}

bool Routable(const portico::config::v1::Route& route, const ConfigSet& config) {
  bool http = route.protocols_size() == 0;
  for (const std::string& p : route.protocols()) http = http || p == "http" || p == "https";
  if (!http) return false;
  if (!route.has_service_id()) return true;
  for (const auto& service : config.services) {
    if (service.id() == route.service_id()) return service.enabled();
  }
  return true;  // a missing service still routes (503)
}

void CheckLookups(const portico::dp::RuntimeConfig& runtime) {
  const ConfigSet& config = runtime.config();
  const portico::dp::Router& router = runtime.router();
  // Request paths to try against the regex routes: every plain path of the config, and "/".
  std::vector<std::string> paths = {"/"};
  for (const auto& route : config.routes) {
    for (const std::string& path : route.paths().values()) {
      if (!absl::StartsWith(path, "~") && paths.size() < 64) paths.push_back(path);
    }
  }
  for (const auto& route : config.routes) {
    if (!Routable(route, config)) continue;
    // route-self-match
    portico::dp::RequestView request;
    request.method = route.methods().values_size() > 0 ? absl::string_view(route.methods().values(0)) : "GET";
    request.port = 8000;
    bool usable = true;
    if (route.hosts().values_size() > 0) {
      usable = false;
      for (const std::string& host : route.hosts().values()) {
        if (!absl::StrContains(host, '*')) {
          request.host = host;
          usable = true;
          break;
        }
      }
    }
    request.path = "/";
    if (route.paths().values_size() > 0) {
      bool found = false;
      for (const std::string& path : route.paths().values()) {
        if (!absl::StartsWith(path, "~")) {
          request.path = path;
          found = true;
          break;
        }
      }
      usable = usable && found;
    }
    std::vector<std::pair<absl::string_view, absl::string_view>> headers;
    for (const auto& [name, list] : route.headers().values()) {
      bool found = false;
      for (const std::string& value : list.values()) {
        if (!absl::StartsWith(value, "~*")) {
          headers.emplace_back(name, value);
          found = true;
          break;
        }
      }
      usable = usable && found;
    }
    request.headers = &headers;
    if (usable) {
      FUZZ_CHECK(router.Find(request).has_value(), "route-self-match",
                 absl::StrCat("route ", route.id(), ": ", request.method, " host ", Show(request.host), " path ",
                              Show(request.path), " with ", headers.size(), " headers: no match"));
    }
    // regex-match: only routes whose sole field is paths, so the path decides.
    if (route.methods().values_size() > 0 || route.hosts().values_size() > 0 ||
        route.headers().values_size() > 0) {
      continue;
    }
    for (const std::string& path : route.paths().values()) {
      if (!absl::StartsWith(path, "~")) continue;
      const re2::RE2 regex(portico::RoutePathRegexPattern(path), re2::RE2::Quiet);
      if (!regex.ok()) continue;
      for (const std::string& candidate : paths) {
        if (!re2::RE2::PartialMatch(candidate, regex)) continue;
        portico::dp::RequestView by_path;
        by_path.method = "GET";
        by_path.path = candidate;
        by_path.port = 8000;
        FUZZ_CHECK(router.Find(by_path).has_value(), "regex-match",
                   absl::StrCat("route ", route.id(), " path ", Show(path), " matches ", Show(candidate),
                                " with RE2, the router finds nothing"));
      }
    }
  }
}

void CheckDecoded(const portico::sync::v1::ConfigPayload& payload, const portico::DecodedSnapshot& decoded) {
  CheckShape(payload, *decoded.config);

  // Round trip through the CP's builder.
  const ConfigSet exported = portico::ExportableConfig(*decoded.config);
  const portico::FakeClock clock(1);
  auto built = portico::BuildSnapshotOfExported(exported, decoded.version, clock);
  if (FUZZ_CHECK(built.ok(), "roundtrip", absl::StrCat("BuildSnapshotOfExported: ", built.status().ToString()))) {
    auto again = portico::DecodeSnapshot((*built)->compressed, true, (*built)->uncompressed_size, (*built)->version);
    if (FUZZ_CHECK(again.ok(), "roundtrip", absl::StrCat("decode of the rebuilt snapshot: ", again.status().ToString()))) {
      FUZZ_CHECK(SameEntities(exported, *again->config), "roundtrip", "rebuilt snapshot decodes to other entities");
    }
  }

  // The DP's apply path (data_plane/main.cc): validate, then compile.
  if (!portico::ValidateConfigSet(*decoded.config).ok()) return;
  auto runtime = portico::dp::RuntimeConfig::Compile(decoded.config, decoded.version);
  // A config with a port-0 service gets its own id (a known issue, tests/fuzz/known_issues.txt),
  // so that listing it does not hide other validator/compiler disagreements.
  bool port_zero = false;
  for (const auto& service : decoded.config->services) port_zero = port_zero || service.port() == 0;
  if (!FUZZ_CHECK(runtime.ok(), port_zero ? "validated-compiles-port0" : "validated-compiles",
                  absl::StrCat("ValidateConfigSet accepted, Compile said: ", runtime.status().ToString()))) {
    return;
  }
  CheckLookups(**runtime);
}

}  // namespace

// Protobuf logs every string field that is not UTF-8 while parsing (an ERROR line per parse):
// noise, and most of the time of such inputs.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool gzip = (data[0] & 1) == 0;
  const absl::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);

  std::string raw;
  if (gzip) {
    if (!Inflate(bytes, &raw)) {
      // Not a gzip stream (or too large for the harness): must be refused, whatever is announced.
      const uint64_t declared = raw.size();
      auto decoded = portico::DecodeSnapshot(bytes, true, declared, ConfigVersion{});
      FUZZ_CHECK(!decoded.ok(), "decode-status", "corrupt gzip accepted");
      return 0;
    }
  } else {
    raw = std::string(bytes);
  }
  portico::sync::v1::ConfigPayload payload;
  const bool parsed = payload.ParseFromString(raw);
  ConfigVersion target;
  if (parsed) {
    target = ConfigVersion{payload.ref().epoch(), payload.ref().version(), ConfigHash(payload)};
  }
  auto decoded = portico::DecodeSnapshot(bytes, gzip, raw.size(), target);
  if (!decoded.ok()) {
    const absl::StatusCode code = decoded.status().code();
    FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kResourceExhausted,
               "decode-status", decoded.status().ToString());
    FUZZ_CHECK(!parsed || !StrictlySorted(payload) || code != absl::StatusCode::kDataLoss, "hash-agrees",
               decoded.status().ToString());
    return 0;
  }
  FUZZ_CHECK(parsed && StrictlySorted(payload), "decode-status", "an unparsable or unsorted payload was accepted");
  FUZZ_CHECK(decoded->version == target, "decode-shape", "decoded version is not the announced one");

  ConfigVersion wrong = target;
  wrong.hash[0] = static_cast<char>(wrong.hash[0] ^ 1);
  auto wrong_hash = portico::DecodeSnapshot(bytes, gzip, raw.size(), wrong);
  FUZZ_CHECK(!wrong_hash.ok() && wrong_hash.status().code() == absl::StatusCode::kDataLoss, "wrong-hash",
             wrong_hash.status().ToString());
  auto wrong_size = portico::DecodeSnapshot(bytes, gzip, raw.size() + 1, target);
  FUZZ_CHECK(!wrong_size.ok(), "wrong-size", "payload accepted with a larger announced size");

  CheckDecoded(payload, *decoded);
  return 0;
}
