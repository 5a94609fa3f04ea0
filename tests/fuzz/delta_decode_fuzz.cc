// Fuzz target: what a data plane does with the bytes of a delta (ConfigDelta) from the control
// plane: DecodeDelta against the snapshot it holds (tests/fuzz/delta_held.h: known kinds and one
// kind from a newer CP).
//
// Input: byte 0 holds flags, the rest is the payload.
//   bit 0 = 0: the payload is a gzip stream; 1: the uncompressed ConfigDelta (encoding NONE), so
//              mutations reach the merge without having to keep a gzip CRC right.
//   bit 1 = 1: announce the payload's own base (as a chunk's `base`) instead of the held version.
// The harness parses the payload itself and announces what an honest CP would (sizes, target
// epoch/version, and the hash of its own merge of the changes into the held resources), so
// DecodeDelta's checks pass whenever the delta is well formed.
//
// Invariants (ids as printed):
//   delta-status     the outcome is the one the harness predicts from the payload: FailedPrecondition
//                    for another announced base, InvalidArgument for an unparsable payload, a base or
//                    ref that differs from the announced one, unsorted changes, a delete of a
//                    resource not held, or a body of a known kind that does not parse or carries
//                    another id; ResourceExhausted over the ratio cap; OK otherwise
//   delta-merge      on success, the resources are the harness's merge (kind, id, body, hash)
//   delta-full       on success, the full payload of the result decodes (DecodeSnapshot) to the
//                    same version, resources and entities
//   delta-wrong-hash a delta that applies is refused with DataLoss when announced with another hash
//   held-untouched   the held snapshot is unchanged by any input
#include <openssl/sha.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/snapshot/snapshot.h"
#include "google/protobuf/stubs/logging.h"
#include "portico/sync/v1/sync.pb.h"
#include "tests/fuzz/delta_held.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using portico::ConfigSet;
using portico::ConfigVersion;
using portico::DecodedSnapshot;
using portico::ResourceIndex;

constexpr uint64_t kMaxInflate = uint64_t{4} << 20;

const DecodedSnapshot& Held() {
  static const DecodedSnapshot* held = [] {
    const ConfigVersion version = portico::fuzz::DeltaHeldVersion();
    const std::string payload = portico::SerializeFullPayload(version, portico::fuzz::DeltaHeldResources());
    auto decoded = portico::DecodeSnapshot(payload, false, payload.size(), version);
    if (!decoded.ok()) __builtin_trap();
    return new DecodedSnapshot(*std::move(decoded));
  }();
  return *held;
}

// What the held snapshot looks like (serialized), to check that nothing changes it.
const std::string& HeldBytes() {
  static const std::string* bytes =
      new std::string(portico::SerializeFullPayload(Held().version, *Held().resources));
  return *bytes;
}

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
    if (rc == Z_BUF_ERROR && z.avail_out != 0) break;
    if (rc == Z_BUF_ERROR) rc = Z_OK;
  }
  const bool ok = rc == Z_STREAM_END && z.avail_in == 0 && out->size() <= kMaxInflate;
  inflateEnd(&z);
  return ok;
}

std::string Sha(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// snapshot.h's config hash, written again: SHA-256 over kind 0x00 id 0x00 SHA-256(body).
using Merged = std::map<std::pair<std::string, std::string>, std::string>;
std::string HashOf(const Merged& merged) {
  std::string input;
  for (const auto& [key, body] : merged) {
    absl::StrAppend(&input, key.first, absl::string_view("\0", 1), key.second, absl::string_view("\0", 1), Sha(body));
  }
  return Sha(input);
}

// Whether `body` parses as the entity of known kind `kind` with id `id` (true for unknown kinds).
template <typename Entity>
bool ParsesWithId(const std::string& body, const std::string& id) {
  Entity e;
  return e.ParseFromString(body) && e.id() == id;
}
bool BodyAcceptable(const std::string& kind, const std::string& id, const std::string& body) {
  namespace c = portico::config::v1;
  if (kind == "services") return ParsesWithId<c::Service>(body, id);
  if (kind == "routes") return ParsesWithId<c::Route>(body, id);
  if (kind == "plugins") return ParsesWithId<c::Plugin>(body, id);
  if (kind == "consumers") return ParsesWithId<c::Consumer>(body, id);
  if (kind == "keyauth_credentials") return ParsesWithId<c::KeyAuthDigest>(body, id);
  if (kind == "basicauth_credentials") return ParsesWithId<c::BasicAuthCredential>(body, id);
  if (kind == "acls") return ParsesWithId<c::Acl>(body, id);
  if (kind == "jwt_secrets") return ParsesWithId<c::JwtSecret>(body, id);
  if (kind == "upstreams") return ParsesWithId<c::Upstream>(body, id);
  if (kind == "targets") return ParsesWithId<c::Target>(body, id);
  if (kind == "certificates") return ParsesWithId<c::Certificate>(body, id);
  if (kind == "snis") return ParsesWithId<c::Sni>(body, id);
  if (kind == "ca_certificates") return ParsesWithId<c::CaCertificate>(body, id);
  return true;
}

template <typename Entity>
bool SameList(const std::vector<Entity>& a, const std::vector<Entity>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].SerializeAsString() != b[i].SerializeAsString()) return false;
  }
  return true;
}
bool SameConfig(const ConfigSet& a, const ConfigSet& b) {
  return SameList(a.services, b.services) && SameList(a.routes, b.routes) && SameList(a.plugins, b.plugins) &&
         SameList(a.consumers, b.consumers) && SameList(a.keyauth_digests, b.keyauth_digests) &&
         SameList(a.basicauth_credentials, b.basicauth_credentials) && SameList(a.acls, b.acls) &&
         SameList(a.jwt_secrets, b.jwt_secrets) && SameList(a.upstreams, b.upstreams) &&
         SameList(a.targets, b.targets) && SameList(a.certificates, b.certificates) && SameList(a.snis, b.snis) &&
         SameList(a.ca_certificates, b.ca_certificates) && a.keyauth_credentials.empty() &&
         b.keyauth_credentials.empty();
}

bool SameResources(const ResourceIndex& a, const ResourceIndex& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].kind != b[i].kind || a[i].id != b[i].id || a[i].hash != b[i].hash || *a[i].body != *b[i].body) {
      return false;
    }
  }
  return true;
}

// The harness's prediction for a parsed delta announced with `base`, bodies aside: the status
// code, and the merged resources when the changes merge.
// REQUIRES: base is the held version.
absl::StatusCode Predict(const portico::sync::v1::ConfigDelta& delta, const ConfigVersion& base, Merged* merged) {
  if (portico::FromVersionRef(delta.base()) != base) return absl::StatusCode::kInvalidArgument;
  for (const portico::ResourceEntry& e : *Held().resources) (*merged)[{e.kind, e.id}] = *e.body;
  for (int i = 0; i < delta.changes_size(); ++i) {
    const auto& c = delta.changes(i);
    if (i > 0) {
      const auto& p = delta.changes(i - 1);
      if (std::make_pair(p.kind(), p.id()) >= std::make_pair(c.kind(), c.id())) {
        return absl::StatusCode::kInvalidArgument;
      }
    }
    if (c.deleted()) {
      if (merged->erase({c.kind(), c.id()}) == 0) return absl::StatusCode::kInvalidArgument;
    } else {
      (*merged)[{c.kind(), c.id()}] = c.body();
    }
  }
  return absl::StatusCode::kOk;
}

// Bodies are parsed after the hash check, which passes (the harness announces its merge's hash).
bool BodiesAcceptable(const portico::sync::v1::ConfigDelta& delta) {
  for (const auto& c : delta.changes()) {
    if (!c.deleted() && !BodyAcceptable(c.kind(), c.id(), c.body())) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  (void)HeldBytes();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool gzip = (data[0] & 1) == 0;
  const bool payload_base = (data[0] & 2) != 0;
  const absl::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const DecodedSnapshot& held = Held();

  std::string raw;
  if (gzip) {
    if (!Inflate(bytes, &raw)) {
      auto decoded = portico::DecodeDelta(bytes, true, raw.size(), held.version, held.version, held);
      FUZZ_CHECK(!decoded.ok(), "delta-status", "corrupt gzip accepted");
      return 0;
    }
  } else {
    raw = std::string(bytes);
  }
  portico::sync::v1::ConfigDelta delta;
  const bool parsed = delta.ParseFromString(raw);
  ConfigVersion base = held.version;
  ConfigVersion target = held.version;
  Merged merged;
  // The order of DecodeDelta's checks: the base, the size caps, the payload.
  if (payload_base) base = parsed ? portico::FromVersionRef(delta.base()) : ConfigVersion{};
  absl::StatusCode want;
  if (base != held.version) {
    want = absl::StatusCode::kFailedPrecondition;
  } else if (gzip && raw.size() > 100 * bytes.size() + (uint64_t{1} << 20)) {
    want = absl::StatusCode::kResourceExhausted;  // the default ratio cap
  } else if (!parsed) {
    want = absl::StatusCode::kInvalidArgument;
  } else {
    want = Predict(delta, base, &merged);
  }
  if (parsed) {
    const bool merges = want == absl::StatusCode::kOk;
    target = ConfigVersion{delta.ref().epoch(), delta.ref().version(), merges ? HashOf(merged) : held.version.hash};
    if (merges && !BodiesAcceptable(delta)) want = absl::StatusCode::kInvalidArgument;
  }
  auto decoded = portico::DecodeDelta(bytes, gzip, raw.size(), base, target, held);
  FUZZ_CHECK(portico::SerializeFullPayload(held.version, *held.resources) == HeldBytes(), "held-untouched",
             "the held resources changed");
  const absl::StatusCode got = decoded.status().code();
  if (got != want) {
    FUZZ_CHECK(false, "delta-status",
               absl::StrCat("predicted ", absl::StatusCodeToString(want), ", got ", decoded.status().ToString()));
    return 0;
  }
  if (!decoded.ok()) return 0;

  // delta-merge
  ResourceIndex expected;
  for (const auto& [key, body] : merged) {
    expected.push_back(portico::ResourceEntry{key.first, key.second, Sha(body), std::make_shared<const std::string>(body)});
  }
  FUZZ_CHECK(decoded->version == target, "delta-merge", "result version is not the announced target");
  FUZZ_CHECK(SameResources(*decoded->resources, expected), "delta-merge",
             absl::StrCat(decoded->resources->size(), " resources, the harness merged ", expected.size()));

  // delta-full: the same as the full snapshot of the result.
  const std::string full = portico::SerializeFullPayload(decoded->version, *decoded->resources);
  auto full_decoded = portico::DecodeSnapshot(full, false, full.size(), decoded->version);
  if (FUZZ_CHECK(full_decoded.ok(), "delta-full", full_decoded.status().ToString())) {
    FUZZ_CHECK(full_decoded->version == decoded->version, "delta-full", "versions differ");
    FUZZ_CHECK(SameResources(*full_decoded->resources, *decoded->resources), "delta-full", "resources differ");
    FUZZ_CHECK(SameConfig(*full_decoded->config, *decoded->config), "delta-full", "entities differ");
  }

  // delta-wrong-hash
  ConfigVersion wrong = target;
  wrong.hash[0] = static_cast<char>(wrong.hash[0] ^ 1);
  auto refused = portico::DecodeDelta(bytes, gzip, raw.size(), base, wrong, held);
  FUZZ_CHECK(refused.status().code() == absl::StatusCode::kDataLoss, "delta-wrong-hash", refused.status().ToString());
  return 0;
}
