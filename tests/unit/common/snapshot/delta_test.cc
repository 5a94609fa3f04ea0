// Delta codec (common/snapshot): change lists (DiffResources, ComposeChanges), delta payloads
// (BuildDeltaSnapshot) and their application by a DP (DecodeDelta, SnapshotAssembler::FinishDelta).
// The property test checks that a delta applied to any earlier version gives exactly what the
// full snapshot of the target decodes to.
#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/base/sha256.h"
#include "common/snapshot/snapshot.h"
#include "gtest/gtest.h"
#include "portico/sync/v1/sync.pb.h"

namespace portico {
namespace {

const std::string kEpoch(16, '\x42');

// ---------------------------------------------------------------------------------------------
// A random config, kept as one map per kind (id -> entity), mutated version after version.

struct Model {
  std::map<std::string, config::v1::Service> services;
  std::map<std::string, config::v1::Route> routes;
  std::map<std::string, config::v1::Plugin> plugins;
  std::map<std::string, config::v1::Consumer> consumers;
  std::map<std::string, config::v1::KeyAuthCredential> keyauth;
  std::map<std::string, config::v1::BasicAuthCredential> basicauth;
  std::map<std::string, config::v1::Acl> acls;
  std::map<std::string, config::v1::JwtSecret> jwts;
  std::map<std::string, config::v1::Upstream> upstreams;
  std::map<std::string, config::v1::Target> targets;
  std::map<std::string, config::v1::Certificate> certificates;
  std::map<std::string, config::v1::Sni> snis;
  std::map<std::string, config::v1::CaCertificate> cas;
};

class Gen {
 public:
  explicit Gen(uint32_t seed) : rng_(seed) {}
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Int(0, 99) < percent; }
  // Small value spaces on purpose: an update sometimes restores an earlier body (A -> B -> A).
  std::string Pick(const char* prefix, int n) { return std::string(prefix) + std::to_string(Int(0, n - 1)); }

 private:
  std::mt19937 rng_;
};

constexpr int kIds = 6;  // ids per kind: small, so that ids are deleted and created again

config::v1::Service MakeService(Gen& g, const std::string& id) {
  config::v1::Service s;
  s.set_id(id);
  s.set_name("svc-" + id);
  s.set_protocol(g.Chance(50) ? "http" : "https");
  s.set_host(g.Pick("host", 3) + ".example");
  s.set_port(g.Chance(50) ? 80 : 8080);
  s.set_enabled(g.Chance(80));
  return s;
}
config::v1::Route MakeRoute(Gen& g, const std::string& id) {
  config::v1::Route r;
  r.set_id(id);
  if (g.Chance(85)) r.set_service_id(g.Pick("s", kIds));
  r.add_protocols("http");
  r.mutable_paths()->add_values("/" + g.Pick("p", 3));
  return r;
}
config::v1::Plugin MakePlugin(Gen& g, const std::string& id) {
  config::v1::Plugin p;
  p.set_id(id);
  p.set_name(g.Chance(50) ? "key-auth" : "rate-limiting");
  p.set_config(g.Chance(50) ? "{}" : "{\"minute\":" + std::to_string(g.Int(1, 3)) + "}");
  const int scope = g.Int(0, 3);
  if (scope == 1) p.set_service_id(g.Pick("s", kIds));
  if (scope == 2) p.set_route_id(g.Pick("r", kIds));
  if (scope == 3) p.set_consumer_id(g.Pick("c", kIds));
  p.set_enabled(g.Chance(80));
  return p;
}
config::v1::Consumer MakeConsumer(Gen& g, const std::string& id) {
  config::v1::Consumer c;
  c.set_id(id);
  c.set_username(g.Pick("user", 3));
  return c;
}
config::v1::KeyAuthCredential MakeKeyAuth(Gen& g, const std::string& id) {
  config::v1::KeyAuthCredential k;
  k.set_id(id);
  k.set_consumer_id(g.Pick("c", kIds));
  k.set_key(g.Pick("key", 3));
  return k;
}
config::v1::BasicAuthCredential MakeBasicAuth(Gen& g, const std::string& id) {
  config::v1::BasicAuthCredential b;
  b.set_id(id);
  b.set_consumer_id(g.Pick("c", kIds));
  b.set_username(g.Pick("u", 3));
  b.set_password(g.Pick("hash", 3));
  return b;
}
config::v1::Acl MakeAcl(Gen& g, const std::string& id) {
  config::v1::Acl a;
  a.set_id(id);
  a.set_consumer_id(g.Pick("c", kIds));
  a.set_group(g.Pick("group", 3));
  return a;
}
config::v1::JwtSecret MakeJwt(Gen& g, const std::string& id) {
  config::v1::JwtSecret j;
  j.set_id(id);
  j.set_consumer_id(g.Pick("c", kIds));
  j.set_key("iss-" + id);
  j.set_secret(g.Pick("secret", 3));
  j.set_algorithm("HS256");
  return j;
}
config::v1::Upstream MakeUpstream(Gen& g, const std::string& id) {
  config::v1::Upstream u;
  u.set_id(id);
  u.set_name("up-" + id);
  u.set_algorithm(g.Chance(50) ? "round-robin" : "least-connections");
  u.set_slots(g.Chance(50) ? 10000 : 100);
  return u;
}
config::v1::Target MakeTarget(Gen& g, const std::string& id) {
  config::v1::Target t;
  t.set_id(id);
  t.set_upstream_id(g.Pick("u", kIds));
  t.set_target(g.Pick("10.0.0.", 3) + ":8000");
  t.set_weight(g.Chance(80) ? 100 : 0);
  return t;
}
config::v1::Certificate MakeCertificate(Gen& g, const std::string& id) {
  config::v1::Certificate c;
  c.set_id(id);
  c.set_cert(g.Pick("cert pem ", 3));
  c.set_key(g.Pick("key pem ", 3));
  return c;
}
config::v1::Sni MakeSni(Gen& g, const std::string& id) {
  config::v1::Sni n;
  n.set_id(id);
  n.set_name(id + ".example.com");
  n.set_certificate_id(g.Pick("t", kIds));
  return n;
}
config::v1::CaCertificate MakeCa(Gen& g, const std::string& id) {
  config::v1::CaCertificate c;
  c.set_id(id);
  c.set_cert(g.Pick("ca pem ", 3));
  return c;
}

// One create, update or delete of a random id of `map`'s kind.
template <typename Entity>
void MutateOne(Gen& g, const char* prefix, std::map<std::string, Entity>& map,
               Entity (*make)(Gen&, const std::string&), bool hot) {
  const std::string id = g.Pick(prefix, hot ? 2 : kIds);  // hot: the same few ids again and again
  auto it = map.find(id);
  if (it == map.end()) {
    map[id] = make(g, id);  // create (or re-create after a delete)
  } else if (g.Chance(50)) {
    map.erase(it);  // delete
  } else {
    it->second = make(g, id);  // update (sometimes to the same body)
  }
}

// Mutates kind `kind` (0..12); `hot`: one of its first two ids.
void MutateKind(Gen& g, Model& m, int kind, bool hot) {
  switch (kind) {
    case 0: return MutateOne(g, "s", m.services, &MakeService, hot);
    case 1: return MutateOne(g, "r", m.routes, &MakeRoute, hot);
    case 2: return MutateOne(g, "p", m.plugins, &MakePlugin, hot);
    case 3: return MutateOne(g, "c", m.consumers, &MakeConsumer, hot);
    case 4: return MutateOne(g, "k", m.keyauth, &MakeKeyAuth, hot);
    case 5: return MutateOne(g, "b", m.basicauth, &MakeBasicAuth, hot);
    case 6: return MutateOne(g, "a", m.acls, &MakeAcl, hot);
    case 7: return MutateOne(g, "j", m.jwts, &MakeJwt, hot);
    case 8: return MutateOne(g, "u", m.upstreams, &MakeUpstream, hot);
    case 9: return MutateOne(g, "g", m.targets, &MakeTarget, hot);
    case 10: return MutateOne(g, "t", m.certificates, &MakeCertificate, hot);
    case 11: return MutateOne(g, "n", m.snis, &MakeSni, hot);
    default: return MutateOne(g, "x", m.cas, &MakeCa, hot);
  }
}

template <typename Entity>
std::vector<Entity> Values(const std::map<std::string, Entity>& map) {
  std::vector<Entity> out;
  for (const auto& [id, e] : map) out.push_back(e);
  return out;
}

StoredConfig ToStored(const Model& m, uint64_t version) {
  StoredConfig stored;
  stored.version.epoch = kEpoch;
  stored.version.version = version;
  ConfigSet& c = stored.config;
  c.services = Values(m.services);
  c.routes = Values(m.routes);
  c.plugins = Values(m.plugins);
  c.consumers = Values(m.consumers);
  c.keyauth_credentials = Values(m.keyauth);
  c.basicauth_credentials = Values(m.basicauth);
  c.acls = Values(m.acls);
  c.jwt_secrets = Values(m.jwts);
  c.upstreams = Values(m.upstreams);
  c.targets = Values(m.targets);
  c.certificates = Values(m.certificates);
  c.snis = Values(m.snis);
  c.ca_certificates = Values(m.cas);
  return stored;
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

template <typename Entity>
void ExpectSameList(const std::vector<Entity>& a, const std::vector<Entity>& b, const char* what,
                    const std::string& where) {
  ASSERT_EQ(a.size(), b.size()) << what << " " << where;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].SerializeAsString(), b[i].SerializeAsString()) << what << "[" << i << "] " << where;
  }
}

void ExpectSameConfig(const ConfigSet& a, const ConfigSet& b, const std::string& where) {
  ExpectSameList(a.services, b.services, "services", where);
  ExpectSameList(a.routes, b.routes, "routes", where);
  ExpectSameList(a.plugins, b.plugins, "plugins", where);
  ExpectSameList(a.consumers, b.consumers, "consumers", where);
  ExpectSameList(a.keyauth_credentials, b.keyauth_credentials, "keyauth_credentials", where);
  ExpectSameList(a.keyauth_digests, b.keyauth_digests, "keyauth_digests", where);
  ExpectSameList(a.basicauth_credentials, b.basicauth_credentials, "basicauth_credentials", where);
  ExpectSameList(a.acls, b.acls, "acls", where);
  ExpectSameList(a.jwt_secrets, b.jwt_secrets, "jwt_secrets", where);
  ExpectSameList(a.upstreams, b.upstreams, "upstreams", where);
  ExpectSameList(a.targets, b.targets, "targets", where);
  ExpectSameList(a.certificates, b.certificates, "certificates", where);
  ExpectSameList(a.snis, b.snis, "snis", where);
  ExpectSameList(a.ca_certificates, b.ca_certificates, "ca_certificates", where);
}

void ExpectSameResources(const ResourceIndex& a, const ResourceIndex& b, const std::string& where) {
  ASSERT_EQ(a.size(), b.size()) << where;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].kind, b[i].kind) << i << " " << where;
    EXPECT_EQ(a[i].id, b[i].id) << i << " " << where;
    EXPECT_EQ(a[i].hash, b[i].hash) << i << " " << where;
    ASSERT_NE(a[i].body, nullptr);
    ASSERT_NE(b[i].body, nullptr);
    EXPECT_EQ(*a[i].body, *b[i].body) << i << " " << where;
  }
}

void ExpectSameDecoded(const DecodedSnapshot& a, const DecodedSnapshot& b, const std::string& where) {
  EXPECT_EQ(a.version, b.version) << where;
  ASSERT_NE(a.config, nullptr);
  ASSERT_NE(b.config, nullptr);
  ExpectSameConfig(*a.config, *b.config, where);
  ASSERT_NE(a.resources, nullptr);
  ASSERT_NE(b.resources, nullptr);
  ExpectSameResources(*a.resources, *b.resources, where);
}

// Change lists compared field by field (existed_before only when `with_existed`).
void ExpectSameChanges(const ChangeList& a, const ChangeList& b, bool with_existed, const std::string& where) {
  ASSERT_EQ(a.size(), b.size()) << where;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].kind, b[i].kind) << i << " " << where;
    EXPECT_EQ(a[i].id, b[i].id) << i << " " << where;
    EXPECT_EQ(a[i].hash, b[i].hash) << i << " " << where;
    EXPECT_EQ(a[i].body == nullptr, b[i].body == nullptr) << i << " " << where;
    if (a[i].body != nullptr && b[i].body != nullptr) {
      EXPECT_EQ(*a[i].body, *b[i].body) << i << " " << where;
    }
    if (with_existed) {
      EXPECT_EQ(a[i].existed_before, b[i].existed_before) << i << " " << where;
      EXPECT_EQ(a[i].hash_before, b[i].hash_before) << i << " " << where;
    }
  }
}

DecodedSnapshot DecodeFull(const BuiltSnapshot& snap) {
  auto decoded = DecodeSnapshot(snap.compressed, true, snap.uncompressed_size, snap.version);
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return decoded.ok() ? *std::move(decoded) : DecodedSnapshot{};
}

absl::StatusOr<DecodedSnapshot> Apply(const BuiltSnapshot& delta, const DecodedSnapshot& held,
                                      const SnapshotLimits& limits = {}) {
  return DecodeDelta(delta.compressed, delta.gzip, delta.uncompressed_size, delta.base, delta.version, held, limits);
}

std::vector<sync::v1::SnapshotChunk> ChunksOf(const BuiltSnapshot& snap, uint64_t nonce) {
  std::vector<sync::v1::SnapshotChunk> out(snap.chunk_count());
  for (size_t i = 0; i < snap.chunk_count(); ++i) FillSnapshotChunk(snap, i, nonce, &out[i]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The property test.

struct Versions {
  std::vector<std::shared_ptr<BuiltSnapshot>> built;  // built[k]: version k + 1
  std::vector<DecodedSnapshot> decoded;
  std::vector<ChangeList> steps;  // steps[k]: DiffResources(built[k - 1], built[k]); steps[0] empty
};

Versions MakeVersions(uint32_t seed, const Clock& clock) {
  Gen g(seed);
  Model m;
  const int initial = g.Int(0, 60);
  for (int i = 0; i < initial; ++i) MutateKind(g, m, g.Int(0, 12), false);
  // Most changes hit a few kinds and ids, so that ids are deleted and re-created, created and
  // deleted, and updated back to an earlier body within one sequence.
  const int hot_kinds[3] = {g.Int(0, 12), g.Int(0, 12), g.Int(0, 12)};
  const int count = g.Int(2, 9);
  Versions v;
  for (int k = 0; k < count; ++k) {
    if (k > 0) {
      const int ops = g.Int(0, 4);  // 0: a new version with the same content
      for (int i = 0; i < ops; ++i) {
        if (g.Chance(75)) {
          MutateKind(g, m, hot_kinds[g.Int(0, 2)], true);
        } else {
          MutateKind(g, m, g.Int(0, 12), false);
        }
      }
    }
    auto built = BuildSnapshot(ToStored(m, static_cast<uint64_t>(k + 1)), clock);
    EXPECT_TRUE(built.ok()) << built.status();
    if (!built.ok()) return v;
    v.built.push_back(*built);
    v.decoded.push_back(DecodeFull(**built));
    v.steps.push_back(k == 0 ? ChangeList{} : DiffResources(*v.built[k - 1]->resources, *(*built)->resources));
  }
  return v;
}

TEST(DeltaPropertyTest, DeltaFromAnyEarlierVersionEqualsTheFullSnapshot) {
  FakeClock clock(1000);
  // What the generator exercised, checked at the end (not only empty or create-only deltas).
  int pairs = 0, non_empty = 0, deletes = 0, assembled = 0;
  int creates = 0, updates = 0, recreated = 0, created_then_deleted = 0, cancelled = 0, in_place = 0;
  for (uint32_t seed = 1; seed <= 400; ++seed) {
    Versions v = MakeVersions(seed, clock);
    ASSERT_GE(v.built.size(), 2u) << "seed " << seed;
    const size_t n = v.built.size();
    std::set<std::pair<std::string, std::string>> deleted_earlier, created_earlier;
    for (size_t k = 1; k < n; ++k) {
      for (const ResourceChange& c : v.steps[k]) {
        EXPECT_EQ(c.body == nullptr, c.hash.empty());
        EXPECT_EQ(c.existed_before, !c.hash_before.empty());
        const auto key = std::make_pair(c.kind, c.id);
        if (c.body == nullptr) {
          created_then_deleted += created_earlier.count(key) != 0 ? 1 : 0;
          deleted_earlier.insert(key);
        } else if (!c.existed_before) {
          ++creates;
          recreated += deleted_earlier.count(key) != 0 ? 1 : 0;
          created_earlier.insert(key);
        } else {
          ++updates;
        }
      }
    }
    for (size_t b = 0; b < n; ++b) {
      for (size_t t = b + 1; t < n; ++t) {
        const std::string where = "seed " + std::to_string(seed) + " base " + std::to_string(b + 1) + " target " +
                                  std::to_string(t + 1);
        // The CP's change log: the steps composed, oldest first (and newest first: same result).
        ChangeList composed;
        for (size_t k = b + 1; k <= t; ++k) composed = ComposeChanges(composed, v.steps[k]);
        ChangeList composed_right;
        for (size_t k = t; k > b; --k) composed_right = ComposeChanges(v.steps[k], composed_right);
        const ChangeList direct = DiffResources(*v.built[b]->resources, *v.built[t]->resources);
        ExpectSameChanges(composed, direct, /*with_existed=*/true, where + " (composed)");
        ExpectSameChanges(composed_right, direct, /*with_existed=*/true, where + " (composed right)");
        for (const ResourceChange& c : composed) deletes += c.body == nullptr ? 1 : 0;
        std::set<std::pair<std::string, std::string>> touched;
        for (size_t k = b + 1; k <= t; ++k) {
          for (const ResourceChange& c : v.steps[k]) touched.insert({c.kind, c.id});
        }
        cancelled += static_cast<int>(touched.size() - direct.size());

        auto delta = BuildDeltaSnapshot(*v.built[t], v.built[b]->version, composed, clock);
        ASSERT_TRUE(delta.ok()) << delta.status() << " " << where;
        EXPECT_TRUE((*delta)->is_delta());
        EXPECT_EQ((*delta)->base, v.built[b]->version);
        EXPECT_EQ((*delta)->version, v.built[t]->version);
        EXPECT_EQ((*delta)->change_count, composed.size());
        EXPECT_EQ((*delta)->route_count, v.built[t]->route_count);
        EXPECT_EQ((*delta)->plugin_names, v.built[t]->plugin_names);
        EXPECT_EQ((*delta)->resources, nullptr);

        auto applied = Apply(**delta, v.decoded[b]);
        ASSERT_TRUE(applied.ok()) << applied.status() << " " << where;
        ExpectSameDecoded(*applied, v.decoded[t], where);
        ++pairs;
        if (!composed.empty()) ++non_empty;

        // Through the chunks, as a DP receives it (small chunks: several per delta).
        if ((b + t + seed) % 4 == 0) {
          SnapshotBuildOptions options;
          options.chunk_bytes = 7;
          auto chunked = BuildDeltaSnapshot(*v.built[t], v.built[b]->version, composed, clock, options);
          ASSERT_TRUE(chunked.ok());
          SnapshotAssembler assembler;
          for (const sync::v1::SnapshotChunk& chunk : ChunksOf(**chunked, 3)) {
            ASSERT_TRUE(chunk.has_base());
            ASSERT_TRUE(assembler.Add(chunk).ok()) << where;
          }
          ASSERT_TRUE(assembler.complete());
          ASSERT_TRUE(assembler.delta());
          EXPECT_EQ(assembler.base(), v.built[b]->version);
          auto finished = assembler.FinishDelta(v.decoded[b]);
          ASSERT_TRUE(finished.ok()) << finished.status() << " " << where;
          ExpectSameDecoded(*finished, v.decoded[t], where + " (assembled)");
          EXPECT_FALSE(assembler.complete());
          ++assembled;
        }
      }
    }
    // A DP that follows every version by one-step deltas ends where the full snapshots are, and
    // what it would persist is the target's full payload byte for byte.
    DecodedSnapshot held = v.decoded[0];
    for (size_t k = 1; k < n; ++k) {
      auto delta = BuildDeltaSnapshot(*v.built[k], held.version, v.steps[k], clock);
      ASSERT_TRUE(delta.ok());
      auto next = Apply(**delta, held);
      ASSERT_TRUE(next.ok()) << next.status() << " seed " << seed << " step " << k;
      held = *std::move(next);
      ExpectSameDecoded(held, v.decoded[k], "seed " + std::to_string(seed) + " chain " + std::to_string(k));
    }
    // The same, as portico-dp's sync client does it: the version before the held one is kept and
    // brought forward in place when nothing else holds it (from the second step on; the first
    // base is shared with `v`).
    {
      DecodedSnapshot chained = v.decoded[0];
      RecycledBase previous;
      for (size_t k = 1; k < n; ++k) {
        auto delta = BuildDeltaSnapshot(*v.built[k], chained.version, v.steps[k], clock);
        ASSERT_TRUE(delta.ok());
        const ConfigSet* recyclable = previous.snapshot.config.get();
        auto next = DecodeDelta((*delta)->compressed, (*delta)->gzip, (*delta)->uncompressed_size, (*delta)->base,
                                (*delta)->version, chained, {}, &previous);
        ASSERT_TRUE(next.ok()) << next.status() << " seed " << seed << " step " << k;
        EXPECT_FALSE(previous.spoiled);
        if (recyclable != nullptr && next->config.get() == recyclable) {
          ++in_place;
          EXPECT_EQ(previous.snapshot.config, nullptr);  // taken
        }
        ASSERT_NE(next->changes, nullptr);
        EXPECT_EQ(next->changes->size(), v.steps[k].size());
        previous = RecycledBase();
        previous.snapshot = std::exchange(chained, *std::move(next));
        previous.to_held = chained.changes;
        ExpectSameDecoded(chained, v.decoded[k], "seed " + std::to_string(seed) + " in place " + std::to_string(k));
      }
    }
    auto reserialized = DecodeSnapshot(SerializeFullPayload(held.version, *held.resources), false,
                                       SerializeFullPayload(held.version, *held.resources).size(), held.version);
    ASSERT_TRUE(reserialized.ok()) << reserialized.status();
    ExpectSameDecoded(*reserialized, v.decoded[n - 1], "seed " + std::to_string(seed) + " persisted");
    if (HasFatalFailure() || HasFailure()) return;  // one seed's report is enough
  }
  RecordProperty("pairs", pairs);
  RecordProperty("cancelled", cancelled);
  EXPECT_GT(pairs, 3000);
  EXPECT_GT(non_empty, pairs / 2);
  EXPECT_GT(deletes, 500);
  EXPECT_GT(creates, 300);
  EXPECT_GT(updates, 300);
  EXPECT_GT(recreated, 50);
  EXPECT_GT(created_then_deleted, 50);
  EXPECT_GT(cancelled, 100);  // keys changed in between but back as they were at the base
  EXPECT_GT(assembled, 500);
  EXPECT_GT(in_place, 800);
  std::cout << pairs << " pairs (" << non_empty << " non-empty), " << creates << " creates, " << updates
            << " updates, " << recreated << " re-created, " << created_then_deleted << " created then deleted, "
            << cancelled << " cancelled out, " << assembled << " assembled, " << in_place << " applied in place\n";
}

// Delete then re-create with the same body, and an update undone by the next version: the composed
// change list is empty (nothing to send), exactly as the direct diff.
TEST(DeltaChangesTest, UndoneChangesCancelOut) {
  FakeClock clock;
  Gen g(7);
  Model m;
  m.services["s1"] = MakeService(g, "s1");
  m.routes["r1"] = MakeRoute(g, "r1");
  auto v1 = BuildSnapshot(ToStored(m, 1), clock);
  Model deleted = m;
  deleted.services.erase("s1");
  Model updated = m;
  updated.routes["r1"].set_name("renamed");
  auto v2 = BuildSnapshot(ToStored(deleted, 2), clock);
  auto v3 = BuildSnapshot(ToStored(updated, 3), clock);
  auto v4 = BuildSnapshot(ToStored(m, 4), clock);
  ASSERT_TRUE(v1.ok() && v2.ok() && v3.ok() && v4.ok());
  const ChangeList d12 = DiffResources(*(*v1)->resources, *(*v2)->resources);
  const ChangeList d23 = DiffResources(*(*v2)->resources, *(*v3)->resources);
  const ChangeList d34 = DiffResources(*(*v3)->resources, *(*v4)->resources);
  ASSERT_EQ(d12.size(), 1u);
  ASSERT_EQ(d23.size(), 2u);  // s1 re-created, r1 renamed
  ASSERT_EQ(d34.size(), 1u);
  EXPECT_EQ((*v1)->version.hash, (*v4)->version.hash);
  EXPECT_TRUE(DiffResources(*(*v1)->resources, *(*v4)->resources).empty());
  const ChangeList composed = ComposeChanges(ComposeChanges(d12, d23), d34);
  EXPECT_TRUE(composed.empty()) << composed.size() << " changes, first " << composed[0].kind << "/"
                                << composed[0].id;
  EXPECT_EQ(ChangeBytes(composed), 0u);

  // Created then deleted: nothing either.
  Model created = m;
  created.consumers["c9"] = MakeConsumer(g, "c9");
  auto v5 = BuildSnapshot(ToStored(created, 5), clock);
  auto v6 = BuildSnapshot(ToStored(m, 6), clock);
  ASSERT_TRUE(v5.ok() && v6.ok());
  EXPECT_TRUE(ComposeChanges(DiffResources(*(*v4)->resources, *(*v5)->resources),
                             DiffResources(*(*v5)->resources, *(*v6)->resources))
                  .empty());
}

// ---------------------------------------------------------------------------------------------
// Refusals.

class DeltaRefusalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Gen g(11);
    for (int i = 0; i < 4; ++i) {
      const std::string n = std::to_string(i);
      model_.services["s" + n] = MakeService(g, "s" + n);
      model_.services["s" + n].set_enabled(true);
      model_.routes["r" + n] = MakeRoute(g, "r" + n);
      model_.consumers["c" + n] = MakeConsumer(g, "c" + n);
    }
    Model next = model_;
    next.services["s1"].set_host("changed.example");
    next.routes.erase("r2");
    next.consumers["c9"] = MakeConsumer(g, "c9");
    auto base = BuildSnapshot(ToStored(model_, 1), clock_);
    auto target = BuildSnapshot(ToStored(next, 2), clock_);
    ASSERT_TRUE(base.ok() && target.ok());
    base_ = *base;
    target_ = *target;
    held_ = DecodeFull(*base_);
    want_ = DecodeFull(*target_);
    changes_ = DiffResources(*base_->resources, *target_->resources);
    ASSERT_EQ(changes_.size(), 3u);
    held_before_ = SerializeFullPayload(held_.version, *held_.resources);
  }

  std::shared_ptr<const BuiltSnapshot> Delta(const ChangeList& changes) {
    auto delta = BuildDeltaSnapshot(*target_, base_->version, changes, clock_);
    EXPECT_TRUE(delta.ok()) << delta.status();
    return delta.ok() ? *delta : nullptr;
  }

  // The held snapshot is what it was (a refused delta leaves the served config alone).
  void ExpectHeldUntouched() {
    EXPECT_EQ(held_.version, base_->version);
    EXPECT_EQ(SerializeFullPayload(held_.version, *held_.resources), held_before_);
    ExpectSameDecoded(held_, DecodeFull(*base_), "held");
  }

  // A ConfigDelta written by hand (uncompressed: encoding NONE), for what BuildDeltaSnapshot refuses.
  absl::StatusOr<DecodedSnapshot> DecodeRaw(const sync::v1::ConfigDelta& delta, const ConfigVersion& target) {
    const std::string raw = delta.SerializeAsString();
    return DecodeDelta(raw, false, raw.size(), base_->version, target, held_);
  }
  sync::v1::ConfigDelta RawDelta(const ChangeList& changes) {
    sync::v1::ConfigDelta delta;
    ToVersionRef(base_->version, delta.mutable_base());
    ToVersionRef(target_->version, delta.mutable_ref());
    for (const ResourceChange& c : changes) {
      sync::v1::ResourceChange* out = delta.add_changes();
      out->set_kind(c.kind);
      out->set_id(c.id);
      if (c.body != nullptr) {
        out->set_body(*c.body);
      } else {
        out->set_deleted(true);
      }
    }
    return delta;
  }

  FakeClock clock_{100};
  Model model_;
  std::shared_ptr<BuiltSnapshot> base_, target_;
  DecodedSnapshot held_, want_;
  ChangeList changes_;
  std::string held_before_;
};

TEST_F(DeltaRefusalTest, TheGoodDeltaApplies) {
  auto applied = Apply(*Delta(changes_), held_);
  ASSERT_TRUE(applied.ok()) << applied.status();
  ExpectSameDecoded(*applied, want_, "good");
  ExpectHeldUntouched();
  // The uncompressed form decodes the same.
  auto raw = DecodeRaw(RawDelta(changes_), target_->version);
  ASSERT_TRUE(raw.ok()) << raw.status();
  ExpectSameDecoded(*raw, want_, "raw");
}

// A delta up to max_plain_delta_bytes goes out as is (chunk encoding NONE), a larger one gzipped;
// the assembler applies both.
TEST_F(DeltaRefusalTest, SmallDeltasGoUncompressed) {
  for (size_t max_plain : {size_t{8192}, size_t{0}}) {
    SnapshotBuildOptions options;
    options.max_plain_delta_bytes = max_plain;
    auto delta = BuildDeltaSnapshot(*target_, base_->version, changes_, clock_, options);
    ASSERT_TRUE(delta.ok()) << delta.status();
    const BuiltSnapshot& d = **delta;
    ASSERT_LE(d.uncompressed_size, 8192u);
    const bool plain = max_plain > 0;
    EXPECT_EQ(d.gzip, !plain) << max_plain;
    if (plain) {
      EXPECT_EQ(d.compressed.size(), d.uncompressed_size);
      sync::v1::ConfigDelta parsed;
      EXPECT_TRUE(parsed.ParseFromString(d.compressed));
      EXPECT_EQ(parsed.changes_size(), static_cast<int>(changes_.size()));
    } else {
      EXPECT_EQ(d.compressed.substr(0, 2), std::string("\x1f\x8b"));  // gzip magic
    }
    SnapshotAssembler assembler;
    for (const sync::v1::SnapshotChunk& chunk : ChunksOf(d, 7)) {
      EXPECT_EQ(chunk.encoding(), plain ? sync::v1::SnapshotChunk::NONE : sync::v1::SnapshotChunk::GZIP);
      ASSERT_TRUE(assembler.Add(chunk).ok());
    }
    ASSERT_TRUE(assembler.complete());
    auto applied = assembler.FinishDelta(held_);
    ASSERT_TRUE(applied.ok()) << applied.status();
    ExpectSameDecoded(*applied, want_, plain ? "plain" : "gzip");
  }
  ExpectHeldUntouched();
}

TEST_F(DeltaRefusalTest, TamperedDeltasFailTheHashCheck) {
  // A body changed (still a valid Service with the right id).
  {
    ChangeList tampered = changes_;
    ResourceChange* service = nullptr;
    for (ResourceChange& c : tampered) {
      if (c.kind == "services") service = &c;
    }
    ASSERT_NE(service, nullptr);
    config::v1::Service s;
    ASSERT_TRUE(s.ParseFromString(*service->body));
    s.set_host("evil.example");
    service->body = std::make_shared<const std::string>(s.SerializeAsString());
    auto applied = Apply(*Delta(tampered), held_);
    EXPECT_EQ(applied.status().code(), absl::StatusCode::kDataLoss) << applied.status();
    EXPECT_EQ(NackCodeFor(applied.status()), sync::v1::Nack::HASH_MISMATCH);
  }
  // A body replaced by bytes that do not even parse: still the hash that refuses it.
  {
    ChangeList tampered = changes_;
    for (ResourceChange& c : tampered) {
      if (c.body != nullptr) c.body = std::make_shared<const std::string>("\xff\xff\xff");
    }
    EXPECT_EQ(Apply(*Delta(tampered), held_).status().code(), absl::StatusCode::kDataLoss);
  }
  // Each change dropped in turn.
  for (size_t drop = 0; drop < changes_.size(); ++drop) {
    ChangeList tampered = changes_;
    tampered.erase(tampered.begin() + static_cast<std::ptrdiff_t>(drop));
    auto applied = Apply(*Delta(tampered), held_);
    EXPECT_EQ(applied.status().code(), absl::StatusCode::kDataLoss) << "dropped " << drop << ": " << applied.status();
  }
  // An extra upsert (a new resource; a rewrite of an unchanged one with other bytes).
  {
    ChangeList tampered = changes_;
    config::v1::Consumer extra;
    extra.set_id("c5");
    tampered.push_back(ResourceChange{"consumers", "c5", std::make_shared<const std::string>(extra.SerializeAsString()),
                                      "", false});
    std::sort(tampered.begin(), tampered.end(),
              [](const ResourceChange& a, const ResourceChange& b) { return std::tie(a.kind, a.id) < std::tie(b.kind, b.id); });
    EXPECT_EQ(Apply(*Delta(tampered), held_).status().code(), absl::StatusCode::kDataLoss);
  }
  // An extra delete of a resource the DP holds.
  {
    ChangeList tampered = changes_;
    tampered.push_back(ResourceChange{"services", "s3", nullptr, "", true});
    std::sort(tampered.begin(), tampered.end(),
              [](const ResourceChange& a, const ResourceChange& b) { return std::tie(a.kind, a.id) < std::tie(b.kind, b.id); });
    EXPECT_EQ(Apply(*Delta(tampered), held_).status().code(), absl::StatusCode::kDataLoss);
  }
  // Right changes, wrong announced target hash.
  {
    auto delta = Delta(changes_);
    ConfigVersion target = delta->version;
    target.hash[0] = static_cast<char>(target.hash[0] ^ 1);
    auto applied = DecodeDelta(delta->compressed, delta->gzip, delta->uncompressed_size, delta->base, target, held_);
    EXPECT_EQ(applied.status().code(), absl::StatusCode::kDataLoss);
  }
  ExpectHeldUntouched();
}

// The version before the held one (RecycledBase) is brought forward in place only when nothing
// else holds it; a delta refused after it was modified leaves it spoiled and `held` untouched.
TEST_F(DeltaRefusalTest, TheVersionBeforeIsBroughtForwardInPlaceOnlyWhenNothingElseHoldsIt) {
  Gen g(12);
  Model before = model_;
  before.consumers["c0"].set_username("earlier");
  before.routes.erase("r3");
  auto v0 = BuildSnapshot(ToStored(before, 1), clock_);
  ASSERT_TRUE(v0.ok());
  auto recyclable = [&] {
    RecycledBase r;
    r.snapshot = DecodeFull(**v0);
    r.to_held = std::make_shared<const ChangeList>(DiffResources(*(*v0)->resources, *base_->resources));
    EXPECT_EQ(r.to_held->size(), 2u);
    return r;
  };
  auto delta = Delta(changes_);
  ASSERT_NE(delta, nullptr);
  auto decode = [&](RecycledBase* r, const ConfigVersion& target) {
    return DecodeDelta(delta->compressed, delta->gzip, delta->uncompressed_size, delta->base, target, held_, {}, r);
  };

  // Still held by something else (the runtime that served it): the delta is applied to a copy.
  RecycledBase r = recyclable();
  std::shared_ptr<const ConfigSet> runtime_holds = r.snapshot.config;
  auto copied = decode(&r, target_->version);
  ASSERT_TRUE(copied.ok()) << copied.status();
  ExpectSameDecoded(*copied, want_, "copied");
  EXPECT_EQ(r.snapshot.config, runtime_holds);
  EXPECT_FALSE(r.spoiled);

  // Released: brought forward and changed in place.
  runtime_holds.reset();
  const ConfigSet* recycled = r.snapshot.config.get();
  auto in_place = decode(&r, target_->version);
  ASSERT_TRUE(in_place.ok()) << in_place.status();
  EXPECT_EQ(in_place->config.get(), recycled);
  EXPECT_EQ(r.snapshot.config, nullptr);
  ExpectSameDecoded(*in_place, want_, "in place");
  ASSERT_NE(in_place->changes, nullptr);
  EXPECT_EQ(in_place->changes->size(), changes_.size());
  ExpectHeldUntouched();

  // The target hash does not match after the changes: refused, and the recycled version (now
  // neither the old one nor the target) is marked spoiled.
  RecycledBase spoiled = recyclable();
  ConfigVersion wrong = target_->version;
  wrong.hash[0] = static_cast<char>(wrong.hash[0] ^ 1);
  auto refused = decode(&spoiled, wrong);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss) << refused.status();
  EXPECT_TRUE(spoiled.spoiled);
  ExpectHeldUntouched();

  // More changes than kMaxChangesInPlace: copied, the recycled version left as it was.
  RecycledBase many = recyclable();
  auto padded = std::make_shared<ChangeList>(*many.to_held);
  while (padded->size() + changes_.size() <= kMaxChangesInPlace) padded->push_back(padded->back());
  many.to_held = padded;  // (never replayed: over the cap)
  const ConfigSet* kept = many.snapshot.config.get();
  auto over = decode(&many, target_->version);
  ASSERT_TRUE(over.ok()) << over.status();
  EXPECT_EQ(many.snapshot.config.get(), kept);
  EXPECT_FALSE(many.spoiled);
  ExpectSameDecoded(*over, want_, "over the cap");
}

TEST_F(DeltaRefusalTest, DeleteOfAResourceNotHeldIsInvalid) {
  for (const std::string& id : {std::string("c7"), std::string("r2x"), std::string("")}) {
    ChangeList tampered = changes_;
    tampered.push_back(ResourceChange{"consumers", id, nullptr, "", true});
    std::sort(tampered.begin(), tampered.end(),
              [](const ResourceChange& a, const ResourceChange& b) { return std::tie(a.kind, a.id) < std::tie(b.kind, b.id); });
    auto applied = Apply(*Delta(tampered), held_);
    EXPECT_EQ(applied.status().code(), absl::StatusCode::kInvalidArgument) << id << ": " << applied.status();
    EXPECT_EQ(NackCodeFor(applied.status()), sync::v1::Nack::DECODE);
  }
  // Of an unknown kind too: the DP holds no such resource.
  ChangeList tampered = changes_;
  tampered.push_back(ResourceChange{"zzz_future", "f1", nullptr, "", true});
  EXPECT_EQ(Apply(*Delta(tampered), held_).status().code(), absl::StatusCode::kInvalidArgument);
  ExpectHeldUntouched();
}

TEST_F(DeltaRefusalTest, WrongBaseIsAFailedPrecondition) {
  auto delta = Delta(changes_);
  // The DP serves another version number, or the same number with other content.
  DecodedSnapshot other_version = held_;
  other_version.version.version = 5;
  DecodedSnapshot other_hash = held_;
  other_hash.version.hash[3] = static_cast<char>(other_hash.version.hash[3] ^ 0x10);
  DecodedSnapshot other_epoch = held_;
  other_epoch.version.epoch = std::string(16, '\x43');
  DecodedSnapshot nothing;
  for (const DecodedSnapshot* held : {&other_version, &other_hash, &other_epoch, &nothing}) {
    auto applied = Apply(*delta, *held);
    EXPECT_EQ(applied.status().code(), absl::StatusCode::kFailedPrecondition) << applied.status();
  }
  // The DP serves the target already: a delta from the base does not apply to it either.
  EXPECT_EQ(Apply(*delta, want_).status().code(), absl::StatusCode::kFailedPrecondition);

  // The payload's base or target differs from what the chunks announced.
  sync::v1::ConfigDelta raw = RawDelta(changes_);
  raw.mutable_base()->set_version(0);
  EXPECT_EQ(DecodeRaw(raw, target_->version).status().code(), absl::StatusCode::kInvalidArgument);
  raw = RawDelta(changes_);
  raw.mutable_base()->set_hash(std::string(32, 'x'));
  EXPECT_EQ(DecodeRaw(raw, target_->version).status().code(), absl::StatusCode::kInvalidArgument);
  raw = RawDelta(changes_);
  raw.mutable_ref()->set_version(3);
  EXPECT_EQ(DecodeRaw(raw, target_->version).status().code(), absl::StatusCode::kInvalidArgument);

  // A base is required to build one.
  EXPECT_EQ(BuildDeltaSnapshot(*target_, ConfigVersion{}, changes_, clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
  ExpectHeldUntouched();
}

TEST_F(DeltaRefusalTest, UnsortedOrDuplicateChangesAreInvalid) {
  ChangeList reversed(changes_.rbegin(), changes_.rend());
  EXPECT_EQ(BuildDeltaSnapshot(*target_, base_->version, reversed, clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
  ChangeList duplicated = changes_;
  duplicated.insert(duplicated.begin() + 1, changes_[1]);
  EXPECT_EQ(BuildDeltaSnapshot(*target_, base_->version, duplicated, clock_).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Written by hand (a CP that does not use BuildDeltaSnapshot): the DP refuses them.
  auto reversed_raw = DecodeRaw(RawDelta(reversed), target_->version);
  EXPECT_EQ(reversed_raw.status().code(), absl::StatusCode::kInvalidArgument) << reversed_raw.status();
  auto duplicated_raw = DecodeRaw(RawDelta(duplicated), target_->version);
  EXPECT_EQ(duplicated_raw.status().code(), absl::StatusCode::kInvalidArgument) << duplicated_raw.status();
  // Every other order of the three changes.
  ChangeList order = changes_;
  int permutations = 0;
  while (std::next_permutation(order.begin(), order.end(), [](const ResourceChange& a, const ResourceChange& b) {
    return std::tie(a.kind, a.id) < std::tie(b.kind, b.id);
  })) {
    EXPECT_EQ(DecodeRaw(RawDelta(order), target_->version).status().code(), absl::StatusCode::kInvalidArgument);
    ++permutations;
  }
  EXPECT_EQ(permutations, 5);
  // Not a ConfigDelta at all.
  const std::string junk = "\x0a\xff\xff\xff\xff\x0f";
  EXPECT_EQ(DecodeDelta(junk, false, junk.size(), base_->version, target_->version, held_).status().code(),
            absl::StatusCode::kInvalidArgument);
  ExpectHeldUntouched();
}

std::string Sha(absl::string_view data) {
  uint8_t digest[Sha256::kDigestBytes];
  Sha256 sha;
  sha.Update(data);
  sha.Final(digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// `index` with `changes` applied (the test's own merge, to compute target hashes of hand-made deltas).
ResourceIndex Merged(const ResourceIndex& index, const ChangeList& changes) {
  std::map<std::pair<std::string, std::string>, ResourceEntry> all;
  for (const ResourceEntry& e : index) all[{e.kind, e.id}] = e;
  for (const ResourceChange& c : changes) {
    if (c.body == nullptr) {
      all.erase({c.kind, c.id});
    } else {
      all[{c.kind, c.id}] = ResourceEntry{c.kind, c.id, Sha(*c.body), c.body};
    }
  }
  ResourceIndex out;
  for (auto& [key, e] : all) out.push_back(std::move(e));
  return out;
}

ResourceChange Upsert(const std::string& kind, const std::string& id, const std::string& body) {
  auto shared = std::make_shared<const std::string>(body);
  return ResourceChange{kind, id, shared, Sha(body), false};
}

// A BuiltSnapshot standing for a target the test made by hand (only what BuildDeltaSnapshot reads).
BuiltSnapshot TargetFor(const ConfigVersion& base, const ResourceIndex& resources) {
  BuiltSnapshot target;
  target.version = ConfigVersion{base.epoch, base.version + 1, ConfigHashOf(resources)};
  return target;
}

// A body whose id differs from the change's: the hash matches (a CP bug, not corruption), the
// parse refuses it.
TEST_F(DeltaRefusalTest, BodyWithAnotherIdIsInvalid) {
  config::v1::Consumer wrong;
  wrong.set_id("c0");  // sent as c8
  const ChangeList changes = {Upsert("consumers", "c8", wrong.SerializeAsString())};
  const BuiltSnapshot target = TargetFor(base_->version, Merged(*base_->resources, changes));
  auto delta = BuildDeltaSnapshot(target, base_->version, changes, clock_);
  ASSERT_TRUE(delta.ok());
  auto applied = Apply(**delta, held_);
  EXPECT_EQ(applied.status().code(), absl::StatusCode::kInvalidArgument) << applied.status();

  // The same change with the right id applies, and hashes as the test's merge says.
  config::v1::Consumer right;
  right.set_id("c8");
  const ChangeList good = {Upsert("consumers", "c8", right.SerializeAsString())};
  const BuiltSnapshot good_target = TargetFor(base_->version, Merged(*base_->resources, good));
  auto good_delta = BuildDeltaSnapshot(good_target, base_->version, good, clock_);
  ASSERT_TRUE(good_delta.ok());
  auto good_applied = Apply(**good_delta, held_);
  ASSERT_TRUE(good_applied.ok()) << good_applied.status();
  ASSERT_EQ(good_applied->config->consumers.size(), held_.config->consumers.size() + 1);
  EXPECT_EQ(good_applied->config->consumers.back().id(), "c8");
  ExpectHeldUntouched();
}

TEST_F(DeltaRefusalTest, SizeCapsApplyToDeltas) {
  // A delta that carries one large body (4 letters at random: about 4:1 under gzip).
  config::v1::Consumer big;
  big.set_id("c0");
  std::string name(2u << 20, 'a');
  std::mt19937 rng(1);
  for (char& ch : name) ch = static_cast<char>('a' + rng() % 4);
  big.set_username(name);
  const ChangeList changes = {Upsert("consumers", "c0", big.SerializeAsString())};
  const BuiltSnapshot target = TargetFor(base_->version, Merged(*base_->resources, changes));
  auto delta = BuildDeltaSnapshot(target, base_->version, changes, clock_);
  ASSERT_TRUE(delta.ok());
  const BuiltSnapshot& d = **delta;
  ASSERT_GT(d.uncompressed_size, 2u << 20);
  ASSERT_LT(d.compressed.size(), d.uncompressed_size / 2);
  // Within the default caps it applies.
  auto applied = Apply(d, held_);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->config->consumers[0].username(), name);

  // Over max_resources (counted before parsing).
  SnapshotLimits few;
  few.max_resources = 0;
  auto too_many = Apply(d, held_, few);
  EXPECT_EQ(NackCodeFor(too_many.status()), sync::v1::Nack::TOO_LARGE) << too_many.status();
  few.max_resources = 1;
  EXPECT_TRUE(Apply(d, held_, few).ok());
  // Over max_snapshot_bytes.
  SnapshotLimits small;
  small.max_snapshot_bytes = 1u << 20;
  auto too_big = Apply(d, held_, small);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted) << too_big.status();
  EXPECT_EQ(NackCodeFor(too_big.status()), sync::v1::Nack::TOO_LARGE);
  // Over the compression ratio cap (1:1 + 64 KiB).
  SnapshotLimits ratio;
  ratio.max_ratio = 1;
  ratio.ratio_slack_bytes = 64u << 10;
  EXPECT_EQ(Apply(d, held_, ratio).status().code(), absl::StatusCode::kResourceExhausted);
  // A declared size below the real one: inflate stops at the declared size.
  auto lied = DecodeDelta(d.compressed, d.gzip, d.uncompressed_size / 2, d.base, d.version, held_);
  EXPECT_EQ(lied.status().code(), absl::StatusCode::kResourceExhausted) << lied.status();
  // Above the real one: the payload is short.
  auto longer = DecodeDelta(d.compressed, d.gzip, d.uncompressed_size + 1, d.base, d.version, held_);
  EXPECT_EQ(longer.status().code(), absl::StatusCode::kInvalidArgument) << longer.status();
  // The assembler refuses the announced sizes at chunk 0.
  SnapshotAssembler assembler(small);
  EXPECT_EQ(assembler.Add(ChunksOf(d, 1)[0]).code(), absl::StatusCode::kResourceExhausted);
  // Corrupt gzip.
  std::string corrupt = d.compressed;
  corrupt[corrupt.size() / 2] = static_cast<char>(corrupt[corrupt.size() / 2] ^ 0x55);
  auto bad = DecodeDelta(corrupt, true, d.uncompressed_size, d.base, d.version, held_);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().code(), absl::StatusCode::kOk);
  ExpectHeldUntouched();
}

TEST_F(DeltaRefusalTest, AssemblerKeepsDeltasAndFullSnapshotsApart) {
  SnapshotBuildOptions options;
  options.chunk_bytes = 32;
  auto delta = BuildDeltaSnapshot(*target_, base_->version, changes_, clock_, options);
  ASSERT_TRUE(delta.ok());
  const std::vector<sync::v1::SnapshotChunk> delta_chunks = ChunksOf(**delta, 4);
  ASSERT_GE(delta_chunks.size(), 3u);
  auto full = BuildSnapshot(ToStored(model_, 1), clock_, options);
  ASSERT_TRUE(full.ok());
  const std::vector<sync::v1::SnapshotChunk> full_chunks = ChunksOf(**full, 5);
  ASSERT_GE(full_chunks.size(), 2u);
  for (const auto& c : full_chunks) EXPECT_FALSE(c.has_base());

  // Finish() on a delta fails; FinishDelta() on a full snapshot fails.
  {
    SnapshotAssembler assembler;
    for (const auto& c : delta_chunks) ASSERT_TRUE(assembler.Add(c).ok());
    ASSERT_TRUE(assembler.delta());
    EXPECT_EQ(assembler.Finish().status().code(), absl::StatusCode::kFailedPrecondition);
  }
  {
    SnapshotAssembler assembler;
    for (const auto& c : full_chunks) ASSERT_TRUE(assembler.Add(c).ok());
    ASSERT_FALSE(assembler.delta());
    EXPECT_EQ(assembler.FinishDelta(held_).status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(assembler.Finish().ok()) << "the refused call did not consume the snapshot";
  }
  // FinishDelta before the last chunk.
  {
    SnapshotAssembler assembler;
    ASSERT_TRUE(assembler.Add(delta_chunks[0]).ok());
    EXPECT_EQ(assembler.FinishDelta(held_).status().code(), absl::StatusCode::kFailedPrecondition);
  }
  // A later chunk whose base differs from chunk 0's (other version, other hash, none) is refused.
  for (int variant = 0; variant < 3; ++variant) {
    SnapshotAssembler assembler;
    ASSERT_TRUE(assembler.Add(delta_chunks[0]).ok());
    sync::v1::SnapshotChunk odd = delta_chunks[1];
    if (variant == 0) odd.mutable_base()->set_version(odd.base().version() + 1);
    if (variant == 1) odd.mutable_base()->set_hash(std::string(32, 'z'));
    if (variant == 2) odd.clear_base();
    absl::Status s = assembler.Add(odd);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << variant << ": " << s;
    EXPECT_FALSE(assembler.complete());
  }
  // A full snapshot's chunk 0, then a chunk that claims a base.
  {
    SnapshotAssembler assembler;
    ASSERT_TRUE(assembler.Add(full_chunks[0]).ok());
    sync::v1::SnapshotChunk odd = full_chunks[1];
    ToVersionRef(base_->version, odd.mutable_base());
    EXPECT_EQ(assembler.Add(odd).code(), absl::StatusCode::kInvalidArgument);
  }
  // A delta's chunk 0 in the middle of a full snapshot starts over with the delta.
  {
    SnapshotAssembler assembler;
    ASSERT_TRUE(assembler.Add(full_chunks[0]).ok());
    for (const auto& c : delta_chunks) ASSERT_TRUE(assembler.Add(c).ok());
    auto applied = assembler.FinishDelta(held_);
    ASSERT_TRUE(applied.ok()) << applied.status();
    ExpectSameDecoded(*applied, want_, "restarted");
    // And a full snapshot after a delta is a full snapshot again (base cleared on reset).
    for (const auto& c : full_chunks) ASSERT_TRUE(assembler.Add(c).ok());
    EXPECT_FALSE(assembler.delta());
    EXPECT_TRUE(assembler.Finish().ok());
  }
  ExpectHeldUntouched();
}

// Kinds this DP does not know (from a newer CP minor) are in the resource index and the hash,
// not in the ConfigSet: a delta may create, change and delete them.
TEST(DeltaUnknownKindsTest, CoveredByTheHashAndIgnoredInTheConfig) {
  FakeClock clock;
  Gen g(3);
  config::v1::Service s1 = MakeService(g, "s1");
  config::v1::Route r1 = MakeRoute(g, "r1");
  // Kinds sorting before, between and after the known ones.
  ResourceIndex base_index = {
      ResourceEntry{"aaa_new", "a1", Sha("opaque a1"), std::make_shared<const std::string>("opaque a1")},
      ResourceEntry{"routes", "r1", Sha(r1.SerializeAsString()), std::make_shared<const std::string>(r1.SerializeAsString())},
      ResourceEntry{"routes_v2", "x1", Sha("\xff\xfe not a proto"), std::make_shared<const std::string>("\xff\xfe not a proto")},
      ResourceEntry{"services", "s1", Sha(s1.SerializeAsString()), std::make_shared<const std::string>(s1.SerializeAsString())},
      ResourceEntry{"zzz_future", "z1", Sha("z1"), std::make_shared<const std::string>("z1")},
  };
  const ConfigVersion base{kEpoch, 10, ConfigHashOf(base_index)};
  const std::string base_payload = SerializeFullPayload(base, base_index);
  auto held = DecodeSnapshot(base_payload, false, base_payload.size(), base);
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_EQ(held->resources->size(), 5u);
  ASSERT_EQ(held->config->services.size(), 1u);
  ASSERT_EQ(held->config->routes.size(), 1u);

  config::v1::Service s1b = s1;
  s1b.set_host("moved.example");
  const ChangeList changes = {
      ResourceChange{"aaa_new", "a1", nullptr, "", true},
      Upsert("aaa_new", "a2", "opaque a2"),
      Upsert("routes_v2", "x1", "another opaque body"),
      Upsert("services", "s1", s1b.SerializeAsString()),
      Upsert("zzz_future", "z0", "z0"),
  };
  const ResourceIndex target_index = Merged(base_index, changes);
  const BuiltSnapshot target = TargetFor(base, target_index);
  auto delta = BuildDeltaSnapshot(target, base, changes, clock);
  ASSERT_TRUE(delta.ok());
  auto applied = Apply(**delta, *held);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->version, target.version);
  // The same as the target's full snapshot decodes to.
  const std::string target_payload = SerializeFullPayload(target.version, target_index);
  auto full = DecodeSnapshot(target_payload, false, target_payload.size(), target.version);
  ASSERT_TRUE(full.ok()) << full.status();
  ExpectSameDecoded(*applied, *full, "unknown kinds");
  ASSERT_EQ(applied->resources->size(), 6u);
  EXPECT_EQ((*applied->resources)[0].id, "a2");
  EXPECT_EQ((*applied->resources)[5].id, "z1");
  ASSERT_EQ(applied->config->services.size(), 1u);
  EXPECT_EQ(applied->config->services[0].host(), "moved.example");
  EXPECT_EQ(applied->config->routes[0].SerializeAsString(), r1.SerializeAsString());

  // An unknown kind's body is covered by the hash: changed in transit, the delta is refused.
  ChangeList tampered = changes;
  tampered[2] = Upsert("routes_v2", "x1", "another opaque bodY");
  auto bad = BuildDeltaSnapshot(target, base, tampered, clock);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(Apply(**bad, *held).status().code(), absl::StatusCode::kDataLoss);
  // So is the change's presence.
  ChangeList dropped = changes;
  dropped.erase(dropped.begin() + 4);
  auto short_delta = BuildDeltaSnapshot(target, base, dropped, clock);
  ASSERT_TRUE(short_delta.ok());
  EXPECT_EQ(Apply(**short_delta, *held).status().code(), absl::StatusCode::kDataLoss);
}

// Edge cases: no change at all, everything deleted, everything created from an empty config.
TEST(DeltaEdgeTest, EmptyDeltaAndEmptyConfigs) {
  FakeClock clock;
  Gen g(5);
  Model m;
  for (int i = 0; i < 3; ++i) {
    m.services["s" + std::to_string(i)] = MakeService(g, "s" + std::to_string(i));
    m.services["s" + std::to_string(i)].set_enabled(true);
    m.keyauth["k" + std::to_string(i)] = MakeKeyAuth(g, "k" + std::to_string(i));
    m.targets["g" + std::to_string(i)] = MakeTarget(g, "g" + std::to_string(i));
  }
  auto empty1 = BuildSnapshot(ToStored(Model{}, 1), clock);
  auto full2 = BuildSnapshot(ToStored(m, 2), clock);
  auto same3 = BuildSnapshot(ToStored(m, 3), clock);
  auto empty4 = BuildSnapshot(ToStored(Model{}, 4), clock);
  ASSERT_TRUE(empty1.ok() && full2.ok() && same3.ok() && empty4.ok());
  const std::vector<std::shared_ptr<BuiltSnapshot>> v = {*empty1, *full2, *same3, *empty4};
  for (size_t b = 0; b < v.size(); ++b) {
    for (size_t t = b + 1; t < v.size(); ++t) {
      const ChangeList changes = DiffResources(*v[b]->resources, *v[t]->resources);
      auto delta = BuildDeltaSnapshot(*v[t], v[b]->version, changes, clock);
      ASSERT_TRUE(delta.ok());
      auto applied = Apply(**delta, DecodeFull(*v[b]));
      ASSERT_TRUE(applied.ok()) << applied.status() << " " << b << "->" << t;
      ExpectSameDecoded(*applied, DecodeFull(*v[t]), std::to_string(b) + "->" + std::to_string(t));
    }
  }
  EXPECT_TRUE(DiffResources(*v[1]->resources, *v[2]->resources).empty());
  EXPECT_EQ(DiffResources(*v[1]->resources, *v[3]->resources).size(), 9u);
}

}  // namespace
}  // namespace portico
