#include "common/snapshot/snapshot.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/base/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"
#include "portico/sync/v1/sync.pb.h"

namespace portico {
namespace {

constexpr char kServices[] = "services";
constexpr char kRoutes[] = "routes";
constexpr char kPlugins[] = "plugins";
constexpr char kConsumers[] = "consumers";
constexpr char kKeyAuthCredentials[] = "keyauth_credentials";
constexpr char kBasicAuthCredentials[] = "basicauth_credentials";
constexpr char kAcls[] = "acls";
constexpr char kJwtSecrets[] = "jwt_secrets";
constexpr char kUpstreams[] = "upstreams";
constexpr char kTargets[] = "targets";
constexpr char kCertificates[] = "certificates";
constexpr char kSnis[] = "snis";
constexpr char kCaCertificates[] = "ca_certificates";

std::string Sha256Of(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// Incremental config hash over (kind, id, body) triples fed in (kind, id) order.
class ConfigHasher {
 public:
  ConfigHasher() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~ConfigHasher() { EVP_MD_CTX_free(ctx_); }
  ConfigHasher(const ConfigHasher&) = delete;
  ConfigHasher& operator=(const ConfigHasher&) = delete;

  void Add(absl::string_view kind, absl::string_view id, absl::string_view body) {
    AddHashed(kind, id, Sha256Of(body));
  }
  void AddHashed(absl::string_view kind, absl::string_view id, absl::string_view resource_hash) {
    static const char kZero = '\0';
    EVP_DigestUpdate(ctx_, kind.data(), kind.size());
    EVP_DigestUpdate(ctx_, &kZero, 1);
    EVP_DigestUpdate(ctx_, id.data(), id.size());
    EVP_DigestUpdate(ctx_, &kZero, 1);
    EVP_DigestUpdate(ctx_, resource_hash.data(), resource_hash.size());
  }
  std::string Finish() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, digest, &len);
    return std::string(reinterpret_cast<const char*>(digest), len);
  }

 private:
  EVP_MD_CTX* ctx_;
};

struct Entry {
  std::string kind;
  std::string id;
  std::string body;
};

// A resource body: map entries in key order (protobuf's own map order depends on a seed drawn per
// map instance), so the same config gives the same bytes and hash in every build, on every CP.
std::string Body(const google::protobuf::MessageLite& message) {
  std::string out;
  out.reserve(message.ByteSizeLong());
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

// Serialized, sorted resources of the exportable config.
std::vector<Entry> SerializeSorted(const ConfigSet& exported) {
  std::vector<Entry> entries;
  entries.reserve(exported.services.size() + exported.routes.size() + exported.plugins.size() +
                  exported.consumers.size() + exported.keyauth_digests.size() +
                  exported.basicauth_credentials.size() + exported.acls.size() + exported.jwt_secrets.size() +
                  exported.upstreams.size() + exported.targets.size() + exported.certificates.size() +
                  exported.snis.size() + exported.ca_certificates.size());
  for (const config::v1::Service& s : exported.services) {
    entries.push_back({kServices, s.id(), Body(s)});
  }
  for (const config::v1::Route& r : exported.routes) {
    entries.push_back({kRoutes, r.id(), Body(r)});
  }
  for (const config::v1::Plugin& p : exported.plugins) {
    entries.push_back({kPlugins, p.id(), Body(p)});
  }
  for (const config::v1::Consumer& c : exported.consumers) {
    entries.push_back({kConsumers, c.id(), Body(c)});
  }
  for (const config::v1::KeyAuthDigest& d : exported.keyauth_digests) {
    entries.push_back({kKeyAuthCredentials, d.id(), Body(d)});
  }
  for (const config::v1::BasicAuthCredential& b : exported.basicauth_credentials) {
    entries.push_back({kBasicAuthCredentials, b.id(), Body(b)});
  }
  for (const config::v1::Acl& a : exported.acls) {
    entries.push_back({kAcls, a.id(), Body(a)});
  }
  for (const config::v1::JwtSecret& j : exported.jwt_secrets) {
    entries.push_back({kJwtSecrets, j.id(), Body(j)});
  }
  for (const config::v1::Upstream& u : exported.upstreams) {
    entries.push_back({kUpstreams, u.id(), Body(u)});
  }
  for (const config::v1::Target& t : exported.targets) {
    entries.push_back({kTargets, t.id(), Body(t)});
  }
  for (const config::v1::Certificate& c : exported.certificates) {
    entries.push_back({kCertificates, c.id(), Body(c)});
  }
  for (const config::v1::Sni& n : exported.snis) {
    entries.push_back({kSnis, n.id(), Body(n)});
  }
  for (const config::v1::CaCertificate& c : exported.ca_certificates) {
    entries.push_back({kCaCertificates, c.id(), Body(c)});
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.kind != b.kind ? a.kind < b.kind : a.id < b.id;
  });
  return entries;
}

absl::StatusOr<std::string> Gzip(absl::string_view input, int level) {
  z_stream z{};
  if (deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError("deflateInit2 failed");
  }
  std::string out(deflateBound(&z, input.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  z.avail_in = static_cast<uInt>(input.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  size_t produced = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::InternalError(absl::StrCat("deflate failed: ", rc));
  out.resize(produced);
  return out;
}

// Inflates gzip `input`, producing at most `cap` bytes; more -> ResourceExhausted.
absl::StatusOr<std::string> Gunzip(absl::string_view input, uint64_t cap) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return absl::InternalError("inflateInit2 failed");
  std::string out;
  out.resize(static_cast<size_t>(std::min<uint64_t>(cap, uint64_t{1} << 20)) + 1);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  z.avail_in = static_cast<uInt>(input.size());
  int rc = Z_OK;
  while (true) {
    if (z.total_out >= out.size()) {
      if (out.size() > cap) break;  // produced more than cap
      out.resize(static_cast<size_t>(std::min<uint64_t>(out.size() * 2, cap + 1)));
    }
    z.next_out = reinterpret_cast<Bytef*>(out.data() + z.total_out);
    z.avail_out = static_cast<uInt>(out.size() - z.total_out);
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && !(rc == Z_BUF_ERROR && z.avail_out == 0)) break;
  }
  uint64_t produced = z.total_out;
  bool trailing = z.avail_in != 0;
  inflateEnd(&z);
  if (produced > cap) {
    return absl::ResourceExhaustedError(
        absl::StrCat("snapshot decompresses to more than ", cap, " bytes"));
  }
  if (rc != Z_STREAM_END) return absl::InvalidArgumentError(absl::StrCat("gzip data is corrupt (zlib ", rc, ")"));
  if (trailing) return absl::InvalidArgumentError("trailing bytes after the gzip stream");
  out.resize(static_cast<size_t>(produced));
  return out;
}


// Gzips `raw` into snapshot->compressed (with `gzip` false: moves it there as is) and cuts it
// into chunks.
absl::Status CompressInto(std::string raw, const SnapshotBuildOptions& options, BuiltSnapshot* snapshot,
                          bool gzip = true) {
  if (options.chunk_bytes == 0) return absl::InvalidArgumentError("chunk_bytes must be > 0");
  snapshot->uncompressed_size = raw.size();
  snapshot->gzip = gzip;
  if (gzip) {
    absl::StatusOr<std::string> compressed = Gzip(raw, options.gzip_level);
    if (!compressed.ok()) return compressed.status();
    snapshot->compressed = std::move(*compressed);
  } else {
    snapshot->compressed = std::move(raw);
  }
  snapshot->chunks.clear();
  for (size_t off = 0; off < snapshot->compressed.size(); off += options.chunk_bytes) {
    snapshot->chunks.emplace_back(off, std::min(options.chunk_bytes, snapshot->compressed.size() - off));
  }
  if (snapshot->chunks.empty()) snapshot->chunks.emplace_back(0, 0);  // never: a payload carries its version
  return absl::OkStatus();
}

// The payload bytes of a received snapshot or delta, inflated under the caps.
absl::StatusOr<std::string> InflatePayload(absl::string_view compressed, bool gzip, uint64_t declared_uncompressed_size,
                                           const SnapshotLimits& limits) {
  if (declared_uncompressed_size > limits.max_snapshot_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("snapshot of ", declared_uncompressed_size,
                                                     " bytes exceeds max_snapshot_bytes ",
                                                     limits.max_snapshot_bytes));
  }
  if (gzip && declared_uncompressed_size >
                  limits.max_ratio * compressed.size() + limits.ratio_slack_bytes) {
    return absl::ResourceExhaustedError("snapshot compression ratio exceeds the cap");
  }
  std::string raw;
  if (gzip) {
    absl::StatusOr<std::string> inflated = Gunzip(compressed, declared_uncompressed_size);
    if (!inflated.ok()) return inflated.status();
    raw = std::move(*inflated);
  } else {
    raw = std::string(compressed);
  }
  if (raw.size() != declared_uncompressed_size) {
    return absl::InvalidArgumentError(absl::StrCat("payload is ", raw.size(), " bytes, announced ",
                                                   declared_uncompressed_size));
  }
  return raw;
}

// Refuses, before anything is parsed, a payload whose top-level repeated field `field` (its
// resources or changes) has more than limits.max_resources elements, or whose fields (top level
// and inside those elements, unknown ones included) number more than kFieldsPerResource times
// that: parsing costs some bytes per field and a few hundred per element, however small they are
// on the wire.
constexpr uint64_t kFieldsPerResource = 8;
absl::Status CheckResourceCount(const std::string& raw, int field, const SnapshotLimits& limits) {
  using google::protobuf::internal::WireFormatLite;
  auto too_many = [&] {
    return absl::ResourceExhaustedError(
        absl::StrCat("payload has more than max_resources ", limits.max_resources, " resources (or its fields)"));
  };
  if (raw.size() > static_cast<size_t>(std::numeric_limits<int>::max())) return too_many();
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(raw.data()),
                                                static_cast<int>(raw.size()));
  input.SetTotalBytesLimit(std::numeric_limits<int>::max());
  const uint64_t max_fields = limits.max_resources * kFieldsPerResource + 16;
  uint64_t elements = 0, fields = 0;
  while (true) {
    const uint32_t tag = input.ReadTag();
    if (tag == 0) break;  // the end (or a malformed tag: the parse reports it)
    if (++fields > max_fields) return too_many();
    if (static_cast<int>(tag >> 3) != field ||
        WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      if (!WireFormatLite::SkipField(&input, tag)) break;
      continue;
    }
    if (++elements > limits.max_resources) return too_many();
    uint32_t length = 0;
    if (!input.ReadVarint32(&length)) break;
    const google::protobuf::io::CodedInputStream::Limit limit = input.PushLimit(static_cast<int>(length));
    while (true) {
      const uint32_t inner = input.ReadTag();
      if (inner == 0) break;
      if (++fields > max_fields) return too_many();
      if (!WireFormatLite::SkipField(&input, inner)) break;
    }
    input.PopLimit(limit);
  }
  return absl::OkStatus();
}

bool KeyLess(absl::string_view kind_a, absl::string_view id_a, absl::string_view kind_b, absl::string_view id_b) {
  return kind_a != kind_b ? kind_a < kind_b : id_a < id_b;
}

// Calls f(kind, what, member) for every kind a DP parses (the same set DecodeSnapshot parses).
template <typename F>
void ForEachKnownKind(F&& f) {
  f(kServices, "service", &ConfigSet::services);
  f(kRoutes, "route", &ConfigSet::routes);
  f(kPlugins, "plugin", &ConfigSet::plugins);
  f(kConsumers, "consumer", &ConfigSet::consumers);
  f(kKeyAuthCredentials, "key-auth credential", &ConfigSet::keyauth_digests);
  f(kBasicAuthCredentials, "basic-auth credential", &ConfigSet::basicauth_credentials);
  f(kAcls, "acl", &ConfigSet::acls);
  f(kJwtSecrets, "jwt credential", &ConfigSet::jwt_secrets);
  f(kUpstreams, "upstream", &ConfigSet::upstreams);
  f(kTargets, "target", &ConfigSet::targets);
  f(kCertificates, "certificate", &ConfigSet::certificates);
  f(kSnis, "sni", &ConfigSet::snis);
  f(kCaCertificates, "ca_certificate", &ConfigSet::ca_certificates);
}

// Parses `body` onto the end of `list`: it must parse and carry `id` (a full snapshot's resource
// and a delta's upsert alike).
template <typename Entity>
absl::Status ParseEntity(const std::string& body, absl::string_view id, absl::string_view what, Entity* entity) {
  if (!entity->ParseFromString(body) || entity->id() != id) {
    return absl::InvalidArgumentError(absl::StrCat("bad ", what, " body ", id));
  }
  return absl::OkStatus();
}
template <typename Entity>
absl::Status ParseBody(const std::string& body, absl::string_view id, absl::string_view what, std::vector<Entity>* list) {
  Entity entity;
  if (absl::Status parsed = ParseEntity(body, id, what, &entity); !parsed.ok()) return parsed;
  list->push_back(std::move(entity));
  return absl::OkStatus();
}

// `old` (sorted by id) with `changes` (the changes of its kind, sorted by id) applied, into `out`.
template <typename Entity>
absl::Status MergeKind(const std::vector<Entity>& old, const ResourceChange* begin, const ResourceChange* end,
                       absl::string_view what, std::vector<Entity>* out) {
  out->reserve(old.size() + static_cast<size_t>(end - begin));
  size_t i = 0;
  for (const ResourceChange* c = begin; c != end; ++c) {
    while (i < old.size() && old[i].id() < c->id) out->push_back(old[i++]);
    const bool present = i < old.size() && old[i].id() == c->id;
    if (present) ++i;
    if (c->body == nullptr) continue;  // deleted (presence was checked on the index)
    if (absl::Status parsed = ParseBody(*c->body, c->id, what, out); !parsed.ok()) return parsed;
  }
  while (i < old.size()) out->push_back(old[i++]);
  return absl::OkStatus();
}

// `list` (sorted by id) with the changes of its kind applied in place: per change, a
// replacement, an insertion or an erase.
template <typename Entity>
absl::Status ApplyKindInPlace(std::vector<Entity>& list, const ResourceChange* begin, const ResourceChange* end,
                              absl::string_view what) {
  for (const ResourceChange* c = begin; c != end; ++c) {
    auto at = std::lower_bound(list.begin(), list.end(), c->id,
                               [](const Entity& e, const std::string& id) { return e.id() < id; });
    const bool present = at != list.end() && at->id() == c->id;
    if (c->body == nullptr) {
      if (present) list.erase(at);  // (presence was checked on the index)
      continue;
    }
    Entity entity;
    if (absl::Status parsed = ParseEntity(*c->body, c->id, what, &entity); !parsed.ok()) return parsed;
    if (present) {
      *at = std::move(entity);
    } else {
      list.insert(at, std::move(entity));
    }
  }
  return absl::OkStatus();
}

// For every kind a DP parses: f(what, member, first, last), [first, last) its changes in
// `changes` (sorted by kind, then id).
template <typename F>
absl::Status ForEachKindsChanges(const ChangeList& changes, F&& f) {
  absl::Status status = absl::OkStatus();
  ForEachKnownKind([&](const char* kind, const char* what, auto member) {
    if (!status.ok()) return;
    auto first = std::lower_bound(changes.begin(), changes.end(), kind,
                                  [](const ResourceChange& c, absl::string_view k) { return c.kind < k; });
    auto last = std::upper_bound(first, changes.end(), kind,
                                 [](absl::string_view k, const ResourceChange& c) { return k < c.kind; });
    const ResourceChange* begin = changes.data() + (first - changes.begin());
    status = f(what, member, begin, begin + (last - first));
  });
  return status;
}

ResourceIndex::const_iterator FindKey(const ResourceIndex& index, absl::string_view kind, absl::string_view id) {
  return std::lower_bound(index.begin(), index.end(), std::make_pair(kind, id),
                          [](const ResourceEntry& e, const std::pair<absl::string_view, absl::string_view>& key) {
                            return KeyLess(e.kind, e.id, key.first, key.second);
                          });
}

bool HasKey(const ResourceIndex& index, absl::string_view kind, absl::string_view id) {
  auto at = FindKey(index, kind, id);
  return at != index.end() && at->kind == kind && at->id == id;
}

// `changes` applied in place to a version's index and config (both sorted). A delete must find
// its resource in the index.
absl::Status ApplyInPlace(const ChangeList& changes, ResourceIndex& index, ConfigSet& config) {
  for (const ResourceChange& c : changes) {
    auto at = index.begin() + (FindKey(index, c.kind, c.id) - index.cbegin());
    const bool present = at != index.end() && at->kind == c.kind && at->id == c.id;
    if (c.body == nullptr) {
      if (!present) return absl::InvalidArgumentError(absl::StrCat("delete of ", c.kind, "/", c.id, ", which is not held"));
      index.erase(at);
    } else if (present) {
      at->hash = c.hash;
      at->body = c.body;
    } else {
      index.insert(at, ResourceEntry{c.kind, c.id, c.hash, c.body});
    }
  }
  return ForEachKindsChanges(changes, [&](const char* what, auto member, const ResourceChange* first,
                                          const ResourceChange* last) {
    return ApplyKindInPlace(config.*member, first, last, what);
  });
}

}  // namespace

std::string KeyAuthSalt(absl::string_view epoch) {
  return Sha256Of(absl::StrCat("portico key-auth salt v1", absl::string_view("\0", 1), epoch)).substr(0, 16);
}

std::string KeyAuthKeyDigest(absl::string_view salt, absl::string_view key) {
  uint8_t digest[portico::Sha256::kDigestBytes];
  portico::Sha256 sha;
  sha.Update(salt);
  sha.Update(key);
  sha.Final(digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

ConfigSet ExportableConfig(const ConfigSet& config, absl::string_view epoch) {
  return ExportableConfig(ConfigSet(config), epoch);
}

ConfigSet ExportableConfig(ConfigSet&& config, absl::string_view epoch) {
  ConfigSet out;
  std::set<std::string> disabled;
  out.services.reserve(config.services.size());
  for (config::v1::Service& s : config.services) {
    if (s.enabled()) {
      out.services.push_back(std::move(s));
    } else {
      disabled.insert(s.id());
    }
  }
  out.routes.reserve(config.routes.size());
  std::set<std::string> dropped_routes;
  for (config::v1::Route& r : config.routes) {
    if (r.has_service_id() && disabled.count(r.service_id()) != 0) {
      dropped_routes.insert(r.id());
      continue;
    }
    out.routes.push_back(std::move(r));
  }
  // Disabled plugins, and plugins of a disabled service or of its routes, never reach a DP.
  for (config::v1::Plugin& p : config.plugins) {
    if (!p.enabled()) continue;
    if (p.has_service_id() && disabled.count(p.service_id()) != 0) continue;
    if (p.has_route_id() && dropped_routes.count(p.route_id()) != 0) continue;
    out.plugins.push_back(std::move(p));
  }
  out.consumers = std::move(config.consumers);
  // Keys never leave the CP: each credential goes out as its digest.
  const std::string salt = KeyAuthSalt(epoch);
  out.keyauth_digests = std::move(config.keyauth_digests);  // already digests (a DP's config)
  for (const config::v1::KeyAuthCredential& k : config.keyauth_credentials) {
    config::v1::KeyAuthDigest& d = out.keyauth_digests.emplace_back();
    d.set_id(k.id());
    d.set_consumer_id(k.consumer_id());
    d.set_salt(salt);
    d.set_key_sha256(KeyAuthKeyDigest(salt, k.key()));
  }
  out.basicauth_credentials = std::move(config.basicauth_credentials);  // passwords are hashes
  out.acls = std::move(config.acls);
  // JWT credentials go as they are: a DP verifies HMAC signatures with the secret itself.
  out.jwt_secrets = std::move(config.jwt_secrets);
  // Upstreams and targets go as they are (targets of weight 0 included: they take no traffic).
  out.upstreams = std::move(config.upstreams);
  out.targets = std::move(config.targets);
  // TLS material goes as it is: data planes serve certificates with their keys (the stream is
  // mTLS; nothing logs a resource body), and verify upstreams against the CA certificates.
  out.certificates = std::move(config.certificates);
  out.snis = std::move(config.snis);
  out.ca_certificates = std::move(config.ca_certificates);
  return out;
}

std::string ComputeConfigHash(const ConfigSet& config, absl::string_view epoch) {
  ConfigHasher hasher;
  for (const Entry& e : SerializeSorted(ExportableConfig(config, epoch))) hasher.Add(e.kind, e.id, e.body);
  return hasher.Finish();
}

absl::StatusOr<std::shared_ptr<BuiltSnapshot>> BuildSnapshot(
    const StoredConfig& stored, const Clock& clock, const SnapshotBuildOptions& options) {
  return BuildSnapshotOfExported(ExportableConfig(stored.config, stored.version.epoch), stored.version, clock,
                                 options);
}

absl::StatusOr<std::shared_ptr<BuiltSnapshot>> BuildSnapshotIndex(const ConfigSet& exported, const ConfigVersion& version,
                                                                  const Clock& clock) {
  std::vector<Entry> entries = SerializeSorted(exported);
  ConfigHasher hasher;
  auto resources = std::make_shared<ResourceIndex>();
  resources->reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0 && entries[i].kind == entries[i - 1].kind && entries[i].id == entries[i - 1].id) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate ", entries[i].kind, " id ", entries[i].id));
    }
  }
  for (Entry& e : entries) {
    std::string resource_hash = Sha256Of(e.body);
    hasher.AddHashed(e.kind, e.id, resource_hash);
    resources->push_back(ResourceEntry{std::move(e.kind), std::move(e.id), std::move(resource_hash),
                                       std::make_shared<const std::string>(std::move(e.body))});
  }
  auto snapshot = std::make_shared<BuiltSnapshot>();
  snapshot->version = version;
  snapshot->version.hash = hasher.Finish();
  snapshot->resources = std::move(resources);
  snapshot->service_count = exported.services.size();
  snapshot->route_count = exported.routes.size();
  for (const config::v1::Plugin& plugin : exported.plugins) snapshot->plugin_names.push_back(plugin.name());
  std::sort(snapshot->plugin_names.begin(), snapshot->plugin_names.end());
  snapshot->plugin_names.erase(std::unique(snapshot->plugin_names.begin(), snapshot->plugin_names.end()),
                               snapshot->plugin_names.end());
  snapshot->built_at = clock.NowSeconds();
  return snapshot;
}

absl::StatusOr<std::shared_ptr<BuiltSnapshot>> CompleteSnapshotPayload(const BuiltSnapshot& indexed,
                                                                       const SnapshotBuildOptions& options) {
  if (indexed.resources == nullptr || indexed.is_delta()) {
    return absl::InvalidArgumentError("only a full snapshot with its resources gets a payload");
  }
  if (options.chunk_bytes == 0) return absl::InvalidArgumentError("chunk_bytes must be > 0");
  auto snapshot = std::make_shared<BuiltSnapshot>(indexed);
  std::string raw = SerializeFullPayload(snapshot->version, *snapshot->resources);
  if (raw.empty()) return absl::InternalError("cannot serialize the full payload");
  if (absl::Status s = CompressInto(std::move(raw), options, snapshot.get()); !s.ok()) return s;
  return snapshot;
}

uint64_t ResourceBytes(const ResourceIndex& resources) {
  uint64_t bytes = 0;
  for (const ResourceEntry& r : resources) bytes += r.kind.size() + r.id.size() + r.body->size();
  return bytes;
}

absl::StatusOr<std::shared_ptr<BuiltSnapshot>> BuildSnapshotOfExported(
    const ConfigSet& exported, const ConfigVersion& version, const Clock& clock,
    const SnapshotBuildOptions& options) {
  if (options.chunk_bytes == 0) return absl::InvalidArgumentError("chunk_bytes must be > 0");
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> indexed = BuildSnapshotIndex(exported, version, clock);
  if (!indexed.ok()) return indexed.status();
  return CompleteSnapshotPayload(**indexed, options);
}

std::string ConfigHashOf(const ResourceIndex& resources) {
  ConfigHasher hasher;
  for (const ResourceEntry& r : resources) hasher.AddHashed(r.kind, r.id, r.hash);
  return hasher.Finish();
}

ChangeList DiffResources(const ResourceIndex& from, const ResourceIndex& to) {
  ChangeList changes;
  size_t i = 0, j = 0;
  while (i < from.size() || j < to.size()) {
    if (j == to.size() || (i < from.size() && KeyLess(from[i].kind, from[i].id, to[j].kind, to[j].id))) {
      changes.push_back(ResourceChange{from[i].kind, from[i].id, nullptr, "", true, from[i].hash});
      ++i;
    } else if (i == from.size() || KeyLess(to[j].kind, to[j].id, from[i].kind, from[i].id)) {
      changes.push_back(ResourceChange{to[j].kind, to[j].id, to[j].body, to[j].hash, false, ""});
      ++j;
    } else {
      if (from[i].hash != to[j].hash) {
        changes.push_back(ResourceChange{to[j].kind, to[j].id, to[j].body, to[j].hash, true, from[i].hash});
      }
      ++i;
      ++j;
    }
  }
  return changes;
}

ChangeList ComposeChanges(const ChangeList& older, const ChangeList& newer) {
  ChangeList out;
  out.reserve(older.size() + newer.size());
  size_t i = 0, j = 0;
  while (i < older.size() || j < newer.size()) {
    if (j == newer.size() ||
        (i < older.size() && KeyLess(older[i].kind, older[i].id, newer[j].kind, newer[j].id))) {
      out.push_back(older[i++]);
    } else if (i == older.size() || KeyLess(newer[j].kind, newer[j].id, older[i].kind, older[i].id)) {
      out.push_back(newer[j++]);
    } else {
      ResourceChange merged = newer[j];
      merged.existed_before = older[i].existed_before;
      merged.hash_before = older[i].hash_before;
      ++i;
      ++j;
      if (merged.body == nullptr && !merged.existed_before) continue;  // created, then deleted
      if (merged.body != nullptr && merged.existed_before && merged.hash == merged.hash_before) {
        continue;  // back to the body it had: deleted then re-created as it was, or A -> B -> A
      }
      out.push_back(std::move(merged));
    }
  }
  return out;
}

absl::StatusOr<std::shared_ptr<ResourceIndex>> MergeChanges(const ResourceIndex& base, const ChangeList& changes) {
  auto merged = std::make_shared<ResourceIndex>();
  merged->reserve(base.size() + changes.size());
  size_t i = 0;
  for (const ResourceChange& c : changes) {
    while (i < base.size() && KeyLess(base[i].kind, base[i].id, c.kind, c.id)) merged->push_back(base[i++]);
    const bool present = i < base.size() && base[i].kind == c.kind && base[i].id == c.id;
    if (present) ++i;
    if (c.body == nullptr) {
      if (!present) return absl::InvalidArgumentError(absl::StrCat("delete of ", c.kind, "/", c.id, ", which is not held"));
      continue;
    }
    merged->push_back(ResourceEntry{c.kind, c.id, c.hash, c.body});
  }
  while (i < base.size()) merged->push_back(base[i++]);
  return merged;
}

uint64_t ChangeBytes(const ChangeList& changes) {
  uint64_t bytes = 0;
  for (const ResourceChange& c : changes) {
    bytes += c.kind.size() + c.id.size() + (c.body != nullptr ? c.body->size() : 0);
  }
  return bytes;
}

absl::StatusOr<std::shared_ptr<const BuiltSnapshot>> BuildDeltaSnapshot(const BuiltSnapshot& target,
                                                                        const ConfigVersion& base,
                                                                        const ChangeList& changes, const Clock& clock,
                                                                        const SnapshotBuildOptions& options) {
  if (base.empty()) return absl::InvalidArgumentError("a delta needs a base version");
  sync::v1::ConfigDelta delta;
  ToVersionRef(base, delta.mutable_base());
  ToVersionRef(target.version, delta.mutable_ref());
  for (size_t i = 0; i < changes.size(); ++i) {
    const ResourceChange& c = changes[i];
    if (i > 0 && !KeyLess(changes[i - 1].kind, changes[i - 1].id, c.kind, c.id)) {
      return absl::InvalidArgumentError(absl::StrCat("changes not strictly sorted at ", c.kind, "/", c.id));
    }
    sync::v1::ResourceChange* out = delta.add_changes();
    out->set_kind(c.kind);
    out->set_id(c.id);
    if (c.body != nullptr) {
      out->set_body(*c.body);
    } else {
      out->set_deleted(true);
    }
  }
  std::string raw;
  if (!delta.SerializeToString(&raw)) return absl::InternalError("cannot serialize delta");
  auto snapshot = std::make_shared<BuiltSnapshot>();
  snapshot->version = target.version;
  snapshot->base = base;
  const bool gzip = raw.size() > options.max_plain_delta_bytes;
  if (absl::Status s = CompressInto(std::move(raw), options, snapshot.get(), gzip); !s.ok()) return s;
  snapshot->service_count = target.service_count;
  snapshot->route_count = target.route_count;
  snapshot->plugin_names = target.plugin_names;
  snapshot->change_count = changes.size();
  snapshot->built_at = clock.NowSeconds();
  return std::shared_ptr<const BuiltSnapshot>(std::move(snapshot));
}

std::string SerializeFullPayload(const ConfigVersion& version, const ResourceIndex& resources) {
  sync::v1::ConfigPayload payload;
  ToVersionRef(version, payload.mutable_ref());
  payload.mutable_resources()->Reserve(static_cast<int>(resources.size()));
  for (const ResourceEntry& r : resources) {
    sync::v1::Resource* out = payload.add_resources();
    out->set_kind(r.kind);
    out->set_id(r.id);
    out->set_body(*r.body);
  }
  std::string raw;
  if (!payload.SerializeToString(&raw)) return "";  // over protobuf's 2 GiB
  return raw;
}

absl::StatusOr<DecodedSnapshot> DecodeDelta(absl::string_view compressed, bool gzip,
                                            uint64_t declared_uncompressed_size, const ConfigVersion& base,
                                            const ConfigVersion& target, const DecodedSnapshot& held,
                                            const SnapshotLimits& limits, RecycledBase* recycle) {
  if (held.config == nullptr || held.resources == nullptr || held.version != base) {
    return absl::FailedPreconditionError(absl::StrCat("delta from version ", base.version,
                                                      " does not apply to the served version ", held.version.version));
  }
  absl::StatusOr<std::string> raw = InflatePayload(compressed, gzip, declared_uncompressed_size, limits);
  if (!raw.ok()) return raw.status();
  if (absl::Status count = CheckResourceCount(*raw, sync::v1::ConfigDelta::kChangesFieldNumber, limits); !count.ok()) {
    return count;
  }
  sync::v1::ConfigDelta delta;
  if (!delta.ParseFromString(*raw)) return absl::InvalidArgumentError("payload is not a ConfigDelta");
  if (FromVersionRef(delta.base()) != base || delta.ref().epoch() != target.epoch ||
      delta.ref().version() != target.version) {
    return absl::InvalidArgumentError("delta versions do not match the announced base and target");
  }

  // The changes, checked for order, with their resource hashes.
  ChangeList changes;
  changes.reserve(static_cast<size_t>(delta.changes_size()));
  for (sync::v1::ResourceChange& c : *delta.mutable_changes()) {
    if (!changes.empty() && !KeyLess(changes.back().kind, changes.back().id, c.kind(), c.id())) {
      return absl::InvalidArgumentError(absl::StrCat("delta changes not strictly sorted at ", c.kind(), "/", c.id()));
    }
    ResourceChange change;
    change.kind = c.kind();
    change.id = c.id();
    if (!c.deleted()) {
      change.hash = Sha256Of(c.body());
      change.body = std::make_shared<const std::string>(std::move(*c.mutable_body()));
    }
    changes.push_back(std::move(change));
  }

  auto upserted = std::make_shared<ChangedEntities>();
  for (const ResourceChange& c : changes) {
    if (c.body != nullptr) {
      upserted->Add(c.kind, c.id);
    } else {
      upserted->AddDeleted(c.kind, c.id);
    }
  }
  upserted->MarkListsDeletes();  // every change of the delta is listed

  DecodedSnapshot decoded;
  decoded.version = target;
  decoded.upserted = std::move(upserted);
  decoded.change_count = changes.size();

  // In place: the version before `held` brought forward (its changes to `held` replayed), then
  // this delta's changes. Only when nothing else holds that version's config and index: the
  // count read is the last holder's release (an acq_rel decrement on another thread), and the
  // fence orders it before the writes below. Both were created non-const (make_shared of
  // ConfigSet and ResourceIndex, by DecodeSnapshot, MergeChanges and this function).
  if (recycle != nullptr && !recycle->spoiled && recycle->to_held != nullptr &&
      recycle->snapshot.config != nullptr && recycle->snapshot.resources != nullptr &&
      recycle->to_held->size() + changes.size() <= kMaxChangesInPlace &&
      recycle->snapshot.config.use_count() == 1 && recycle->snapshot.resources.use_count() == 1) {
    std::atomic_thread_fence(std::memory_order_acquire);
    for (const ResourceChange& c : changes) {  // before anything is modified
      if (c.body == nullptr && !HasKey(*held.resources, c.kind, c.id)) {
        return absl::InvalidArgumentError(absl::StrCat("delete of ", c.kind, "/", c.id, ", which is not held"));
      }
    }
    auto& index = const_cast<ResourceIndex&>(*recycle->snapshot.resources);
    auto& config = const_cast<ConfigSet&>(*recycle->snapshot.config);
    recycle->spoiled = true;
    if (absl::Status s = ApplyInPlace(*recycle->to_held, index, config); !s.ok()) return s;
    if (absl::Status s = ApplyInPlace(changes, index, config); !s.ok()) return s;
    decoded.version.hash = ConfigHashOf(index);
    if (decoded.version.hash != target.hash) {
      return absl::DataLossError("config hash after applying the delta does not match the target hash");
    }
    decoded.config = std::move(recycle->snapshot.config);
    decoded.resources = std::move(recycle->snapshot.resources);
    *recycle = RecycledBase();
    decoded.changes = std::make_shared<const ChangeList>(std::move(changes));
    return decoded;
  }

  // The new resource index: the held one with the changes merged in.
  absl::StatusOr<std::shared_ptr<ResourceIndex>> resources = MergeChanges(*held.resources, changes);
  if (!resources.ok()) return resources.status();
  decoded.version.hash = ConfigHashOf(**resources);
  if (decoded.version.hash != target.hash) {
    return absl::DataLossError("config hash after applying the delta does not match the target hash");
  }

  // The new config: kinds without changes are copied, the others merged (only changed bodies
  // are parsed). Kinds this DP does not know are covered by the hash and ignored.
  auto config = std::make_shared<ConfigSet>();
  absl::Status status = ForEachKindsChanges(
      changes, [&](const char* what, auto member, const ResourceChange* first, const ResourceChange* last) {
        if (first == last) {
          (*config).*member = (*held.config).*member;
          return absl::OkStatus();
        }
        return MergeKind((*held.config).*member, first, last, what, &((*config).*member));
      });
  if (!status.ok()) return status;
  decoded.config = std::move(config);
  decoded.resources = *std::move(resources);
  decoded.changes = std::make_shared<const ChangeList>(std::move(changes));
  return decoded;
}

void FillSnapshotChunk(const BuiltSnapshot& snapshot, size_t index, uint64_t nonce,
                       sync::v1::SnapshotChunk* out) {
  out->Clear();
  out->set_nonce(nonce);
  ToVersionRef(snapshot.version, out->mutable_target());
  if (snapshot.is_delta()) ToVersionRef(snapshot.base, out->mutable_base());
  out->set_encoding(snapshot.gzip ? sync::v1::SnapshotChunk::GZIP : sync::v1::SnapshotChunk::NONE);
  out->set_compressed_size(snapshot.compressed.size());
  out->set_uncompressed_size(snapshot.uncompressed_size);
  out->set_index(static_cast<uint32_t>(index));
  out->set_count(static_cast<uint32_t>(snapshot.chunk_count()));
  absl::string_view data = snapshot.chunk_data(index);
  out->set_data(data.data(), data.size());
}

absl::StatusOr<DecodedSnapshot> DecodeSnapshot(absl::string_view compressed, bool gzip,
                                               uint64_t declared_uncompressed_size,
                                               const ConfigVersion& target,
                                               const SnapshotLimits& limits) {
  absl::StatusOr<std::string> inflated = InflatePayload(compressed, gzip, declared_uncompressed_size, limits);
  if (!inflated.ok()) return inflated.status();
  std::string raw = *std::move(inflated);
  if (absl::Status count = CheckResourceCount(raw, sync::v1::ConfigPayload::kResourcesFieldNumber, limits);
      !count.ok()) {
    return count;
  }
  sync::v1::ConfigPayload payload;
  if (!payload.ParseFromString(raw)) return absl::InvalidArgumentError("payload is not a ConfigPayload");
  if (payload.ref().epoch() != target.epoch || payload.ref().version() != target.version) {
    return absl::InvalidArgumentError("payload version does not match the announced target");
  }

  auto config = std::make_shared<ConfigSet>();
  auto resources = std::make_shared<ResourceIndex>();
  resources->reserve(static_cast<size_t>(payload.resources_size()));
  ConfigHasher hasher;
  const sync::v1::Resource* previous = nullptr;
  for (const sync::v1::Resource& r : payload.resources()) {
    if (previous != nullptr &&
        std::make_pair(previous->kind(), previous->id()) >= std::make_pair(r.kind(), r.id())) {
      return absl::InvalidArgumentError(
          absl::StrCat("resources not strictly sorted at ", r.kind(), "/", r.id()));
    }
    previous = &r;
    std::string resource_hash = Sha256Of(r.body());
    hasher.AddHashed(r.kind(), r.id(), resource_hash);
    resources->push_back(
        ResourceEntry{r.kind(), r.id(), std::move(resource_hash), std::make_shared<const std::string>(r.body())});
  }
  DecodedSnapshot decoded;
  decoded.version = target;
  decoded.version.hash = hasher.Finish();
  if (decoded.version.hash != target.hash) {
    return absl::DataLossError("config hash of the received resources does not match the target hash");
  }
  decoded.resources = std::move(resources);
  for (const sync::v1::Resource& r : payload.resources()) {
    absl::Status parsed = absl::OkStatus();
    ForEachKnownKind([&](const char* kind, const char* what, auto member) {
      if (r.kind() == kind) parsed = ParseBody(r.body(), r.id(), what, &((*config).*member));
    });
    // Other kinds come from a newer CP minor: covered by the hash, ignored here.
    if (!parsed.ok()) return parsed;
  }
  decoded.config = std::move(config);
  return decoded;
}

SnapshotAssembler::SnapshotAssembler(SnapshotLimits limits) : limits_(limits) {}
SnapshotAssembler::~SnapshotAssembler() = default;

void SnapshotAssembler::Reset() {
  active_ = false;
  base_ = ConfigVersion{};
  count_ = 0;
  next_index_ = 0;
  buffer_.clear();
  buffer_.shrink_to_fit();
}

bool SnapshotAssembler::complete() const { return active_ && count_ > 0 && next_index_ == count_; }

absl::Status SnapshotAssembler::Add(const sync::v1::SnapshotChunk& chunk) {
  if (chunk.index() == 0) {
    Reset();
    active_ = true;
    nonce_ = chunk.nonce();
    target_ = FromVersionRef(chunk.target());
    base_ = chunk.has_base() ? FromVersionRef(chunk.base()) : ConfigVersion{};
    encoding_ = chunk.encoding();
    compressed_size_ = chunk.compressed_size();
    uncompressed_size_ = chunk.uncompressed_size();
    count_ = chunk.count();
    if (count_ == 0 || count_ > limits_.max_chunks) {
      Reset();
      return absl::InvalidArgumentError(absl::StrCat("bad chunk count ", chunk.count()));
    }
    if (encoding_ != sync::v1::SnapshotChunk::GZIP && encoding_ != sync::v1::SnapshotChunk::NONE) {
      Reset();
      return absl::InvalidArgumentError(absl::StrCat("unsupported encoding ", encoding_));
    }
    if (compressed_size_ > limits_.max_snapshot_bytes || uncompressed_size_ > limits_.max_snapshot_bytes) {
      Reset();
      return absl::ResourceExhaustedError(absl::StrCat(
          "snapshot sizes ", compressed_size_, "/", uncompressed_size_,
          " exceed max_snapshot_bytes ", limits_.max_snapshot_bytes));
    }
    buffer_.reserve(static_cast<size_t>(compressed_size_));
  } else {
    if (!active_) {
      nonce_ = chunk.nonce();
      target_ = FromVersionRef(chunk.target());
      return absl::InvalidArgumentError(absl::StrCat("chunk ", chunk.index(), " without chunk 0"));
    }
    if (chunk.nonce() != nonce_ || chunk.index() != next_index_ || chunk.count() != count_ ||
        chunk.compressed_size() != compressed_size_ ||
        chunk.uncompressed_size() != uncompressed_size_ || chunk.encoding() != encoding_ ||
        FromVersionRef(chunk.target()) != target_ ||
        (chunk.has_base() ? FromVersionRef(chunk.base()) : ConfigVersion{}) != base_) {
      std::string why = absl::StrCat("unexpected chunk nonce=", chunk.nonce(), " index=",
                                     chunk.index(), "; expected nonce=", nonce_, " index=",
                                     next_index_);
      Reset();
      return absl::InvalidArgumentError(why);
    }
  }
  if (buffer_.size() + chunk.data().size() > compressed_size_) {
    Reset();
    return absl::InvalidArgumentError("chunks exceed the announced compressed size");
  }
  buffer_.append(chunk.data());
  ++next_index_;
  if (next_index_ == count_ && buffer_.size() != compressed_size_) {
    Reset();
    return absl::InvalidArgumentError("chunks are shorter than the announced compressed size");
  }
  return absl::OkStatus();
}

absl::StatusOr<DecodedSnapshot> SnapshotAssembler::FinishDelta(const DecodedSnapshot& held, RecycledBase* recycle) {
  if (!complete()) return absl::FailedPreconditionError("snapshot is not complete");
  if (!delta()) return absl::FailedPreconditionError("the chunks carry a full snapshot, not a delta");
  absl::StatusOr<DecodedSnapshot> decoded =
      DecodeDelta(buffer_, encoding_ == sync::v1::SnapshotChunk::GZIP, uncompressed_size_, base_, target_, held,
                  limits_, recycle);
  Reset();
  return decoded;
}

absl::StatusOr<DecodedSnapshot> SnapshotAssembler::Finish() {
  if (!complete()) return absl::FailedPreconditionError("snapshot is not complete");
  if (delta()) return absl::FailedPreconditionError("the chunks carry a delta, not a full snapshot");
  absl::StatusOr<DecodedSnapshot> decoded =
      DecodeSnapshot(buffer_, encoding_ == sync::v1::SnapshotChunk::GZIP, uncompressed_size_,
                     target_, limits_);
  Reset();
  return decoded;
}

int NackCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument: return sync::v1::Nack::DECODE;
    case absl::StatusCode::kDataLoss: return sync::v1::Nack::HASH_MISMATCH;
    case absl::StatusCode::kResourceExhausted: return sync::v1::Nack::TOO_LARGE;
    default: return sync::v1::Nack::INTERNAL;
  }
}

void ToVersionRef(const ConfigVersion& version, sync::v1::VersionRef* ref) {
  ref->set_epoch(version.epoch);
  ref->set_version(version.version);
  ref->set_hash(version.hash);
}

ConfigVersion FromVersionRef(const sync::v1::VersionRef& ref) {
  return ConfigVersion{ref.epoch(), ref.version(), ref.hash()};
}

}  // namespace portico
