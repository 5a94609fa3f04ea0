// The CP's config mirror (control_plane/sync/config_mirror.h): applying a version's changed rows
// gives exactly the resource index, config hash, counts, plugin names and diff a full build of
// that version gives (a property test over random change sequences), and the cases it cannot
// handle alone fall back to a full build instead of publishing something else.
#include "control_plane/sync/config_mirror.h"

#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/config/entity_descriptor.h"
#include "common/config/entity_json.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"
#include "gtest/gtest.h"

namespace portico::cp {
namespace {

const std::string kEpoch(16, '\x11');

std::string Uuid(int n) { return absl::StrFormat("00000000-0000-4000-8000-%012d", n); }

// A stored config as maps by id (what a store holds), and its ConfigSet (sorted by id).
struct Model {
  std::map<std::string, config::v1::Service> services;
  std::map<std::string, config::v1::Route> routes;
  std::map<std::string, config::v1::Plugin> plugins;
  std::map<std::string, config::v1::Consumer> consumers;
  std::map<std::string, config::v1::KeyAuthCredential> keyauth;
  std::map<std::string, config::v1::Acl> acls;
  std::map<std::string, config::v1::Upstream> upstreams;
  std::map<std::string, config::v1::Target> targets;

  ConfigSet ToSet() const {
    ConfigSet c;
    for (const auto& [id, e] : services) c.services.push_back(e);
    for (const auto& [id, e] : routes) c.routes.push_back(e);
    for (const auto& [id, e] : plugins) c.plugins.push_back(e);
    for (const auto& [id, e] : consumers) c.consumers.push_back(e);
    for (const auto& [id, e] : keyauth) c.keyauth_credentials.push_back(e);
    for (const auto& [id, e] : acls) c.acls.push_back(e);
    for (const auto& [id, e] : upstreams) c.upstreams.push_back(e);
    for (const auto& [id, e] : targets) c.targets.push_back(e);
    return c;
  }
};

// The rows that differ between two models, as the store's change feed gives them.
template <typename Entity>
void DiffKind(const char* kind, const std::map<std::string, Entity>& before, const std::map<std::string, Entity>& after,
              StoredChanges* out) {
  const EntityDescriptor* descriptor = EntityRegistry::Default().Find(kind);
  ASSERT_NE(descriptor, nullptr) << kind;
  std::map<std::string, const Entity*> ids;
  for (const auto& [id, e] : before) ids[id] = nullptr;
  for (const auto& [id, e] : after) ids[id] = &e;
  for (const auto& [id, now] : ids) {
    auto old = before.find(id);
    if (now != nullptr && old != before.end() && old->second.SerializeAsString() == now->SerializeAsString()) continue;
    ConfigChange change;
    change.kind = descriptor;
    change.id = id;
    if (now != nullptr) change.entity = std::make_unique<Entity>(*now);
    out->changes.push_back(std::move(change));
  }
}

StoredChanges ChangesBetween(const Model& before, const Model& after, uint64_t version) {
  StoredChanges out;
  out.covered = true;
  out.version.epoch = kEpoch;
  out.version.version = version;
  DiffKind("services", before.services, after.services, &out);
  DiffKind("routes", before.routes, after.routes, &out);
  DiffKind("plugins", before.plugins, after.plugins, &out);
  DiffKind("consumers", before.consumers, after.consumers, &out);
  DiffKind("keyauth_credentials", before.keyauth, after.keyauth, &out);
  DiffKind("acls", before.acls, after.acls, &out);
  DiffKind("upstreams", before.upstreams, after.upstreams, &out);
  DiffKind("targets", before.targets, after.targets, &out);
  return out;
}

// What a full build of `model` at `version` gives (the builder's whole path), or its error.
absl::StatusOr<std::shared_ptr<BuiltSnapshot>> FullBuild(const Model& model, uint64_t version, const Clock& clock,
                                                         ConfigSet* exported_out = nullptr) {
  ConfigSet exported = ExportableConfig(model.ToSet(), kEpoch);
  if (absl::Status valid = ValidateConfigSet(exported); !valid.ok()) return valid;
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> built = BuildSnapshotIndex(exported, {kEpoch, version, ""}, clock);
  if (exported_out != nullptr) *exported_out = std::move(exported);
  return built;
}

void ResetMirror(ConfigMirror& mirror, const Model& model, uint64_t version, const Clock& clock) {
  ConfigSet exported;
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> built = FullBuild(model, version, clock, &exported);
  ASSERT_TRUE(built.ok()) << built.status();
  mirror.Reset(model.ToSet(), exported, *std::move(built));
}

void ExpectSameIndex(const BuiltSnapshot& got, const BuiltSnapshot& want) {
  EXPECT_EQ(got.version, want.version);
  EXPECT_EQ(got.service_count, want.service_count);
  EXPECT_EQ(got.route_count, want.route_count);
  EXPECT_EQ(got.plugin_names, want.plugin_names);
  ASSERT_EQ(got.resources->size(), want.resources->size());
  for (size_t i = 0; i < got.resources->size(); ++i) {
    const ResourceEntry& a = (*got.resources)[i];
    const ResourceEntry& b = (*want.resources)[i];
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.hash, b.hash) << a.kind << " " << a.id;
    EXPECT_EQ(*a.body, *b.body) << a.kind << " " << a.id;
  }
}

void ExpectSameDiff(const ChangeList& got, const ChangeList& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].kind, want[i].kind);
    EXPECT_EQ(got[i].id, want[i].id);
    EXPECT_EQ(got[i].hash, want[i].hash);
    EXPECT_EQ(got[i].body == nullptr, want[i].body == nullptr);
    EXPECT_EQ(got[i].existed_before, want[i].existed_before);
    EXPECT_EQ(got[i].hash_before, want[i].hash_before);
  }
}

class Gen {
 public:
  explicit Gen(uint32_t seed) : rng_(seed) {}
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Int(0, 99) < percent; }

 private:
  std::mt19937 rng_;
};

// Ids: services 1xx, routes 2xx, plugins 3xx, consumers 4xx, key-auth 5xx, acls 6xx, upstreams
// 7xx, targets 8xx; a few per kind so that ids are deleted and created again.
constexpr int kIds = 8;
std::string IdOf(int kind, Gen& g) { return Uuid(kind * 100 + g.Int(0, kIds - 1)); }

config::v1::Service MakeService(Gen& g, const std::string& id) {
  config::v1::Service s = DefaultService();
  s.set_id(id);
  s.set_name("svc-" + id.substr(30));
  s.set_protocol("http");
  s.set_host(absl::StrCat("host", g.Int(0, 2), ".example"));
  s.set_port(g.Chance(50) ? 80 : 8080);
  s.set_enabled(g.Chance(80));
  return s;
}
config::v1::Route MakeRoute(Gen& g, const std::string& id, const Model& m) {
  config::v1::Route r = DefaultRoute();
  r.set_id(id);
  if (g.Chance(85)) {
    // Mostly an existing service (a dangling one now and then: invalid, as a full build says).
    r.set_service_id(!m.services.empty() && g.Chance(95) ? std::next(m.services.begin(), g.Int(0, m.services.size() - 1))->first
                                                         : IdOf(1, g));
  }
  r.mutable_paths()->add_values(absl::StrCat("/p", g.Int(0, 3)));
  return r;
}
template <typename Map>
std::string AnyId(Gen& g, const Map& map, int kind) {
  if (map.empty() || g.Chance(3)) return IdOf(kind, g);
  return std::next(map.begin(), g.Int(0, static_cast<int>(map.size()) - 1))->first;
}
config::v1::Plugin MakePlugin(Gen& g, const std::string& id, const Model& m) {
  config::v1::Plugin p;
  p.set_id(id);
  p.set_name(g.Chance(50) ? "key-auth" : "request-termination");
  p.set_config(p.name() == "key-auth" ? "{}" : absl::StrCat(R"({"status_code":)", 400 + g.Int(0, 3), "}"));
  const int scope = g.Int(0, 3);
  if (scope == 1) p.set_service_id(AnyId(g, m.services, 1));
  if (scope == 2) p.set_route_id(AnyId(g, m.routes, 2));
  if (scope == 3) p.set_consumer_id(AnyId(g, m.consumers, 4));
  p.add_protocols("http");
  p.set_enabled(g.Chance(80));
  FieldErrors errors;
  NormalizePlugin(&p, &errors);
  return p;
}
config::v1::Consumer MakeConsumer(Gen& g, const std::string& id) {
  config::v1::Consumer c;
  c.set_id(id);
  c.set_username(absl::StrCat("user-", id.substr(30), "-", g.Int(0, 1)));
  return c;
}
config::v1::KeyAuthCredential MakeKeyAuth(Gen& g, const std::string& id, const Model& m) {
  config::v1::KeyAuthCredential k;
  k.set_id(id);
  k.set_consumer_id(AnyId(g, m.consumers, 4));
  k.set_key(absl::StrCat("key-", id.substr(30), "-", g.Int(0, 1)));
  return k;
}
config::v1::Acl MakeAcl(Gen& g, const std::string& id, const Model& m) {
  config::v1::Acl a;
  a.set_id(id);
  a.set_consumer_id(AnyId(g, m.consumers, 4));
  a.set_group(absl::StrCat("group-", id.substr(30)));
  return a;
}
config::v1::Upstream MakeUpstream(Gen& g, const std::string& id) {
  config::v1::Upstream u;
  u.set_id(id);
  u.set_name("up-" + id.substr(30));
  u.set_algorithm(g.Chance(50) ? "round-robin" : "least-connections");
  u.set_slots(g.Chance(50) ? 10000 : 100);
  u.set_hash_on("none");
  u.set_hash_fallback("none");
  u.set_hash_on_cookie_path("/");
  FieldErrors errors;
  NormalizeUpstream(&u, &errors);
  return u;
}
config::v1::Target MakeTarget(Gen& g, const std::string& id, const Model& m) {
  config::v1::Target t;
  t.set_id(id);
  t.set_upstream_id(AnyId(g, m.upstreams, 7));
  t.set_target(absl::StrCat("10.0.0.", id.substr(34), ":8000"));
  t.set_weight(g.Chance(80) ? 100 : 0);
  NormalizeTarget(&t);
  return t;
}

// The store's cascades (ON DELETE CASCADE): what deleting one entity also deletes.
void DeleteWithCascades(Model& m, int kind, const std::string& id) {
  auto erase_if = [](auto& map, auto pred) {
    for (auto it = map.begin(); it != map.end();) it = pred(it->second) ? map.erase(it) : std::next(it);
  };
  switch (kind) {
    case 1:
      // ON DELETE RESTRICT: a store refuses to delete a service its routes reference (now and
      // then it is done anyway here, as a full build must then refuse the set).
      for (const auto& [route_id, r] : m.routes) {
        if (r.service_id() == id && std::hash<std::string>()(route_id + id) % 10 != 0) return;
      }
      m.services.erase(id);
      erase_if(m.plugins, [&](const config::v1::Plugin& p) { return p.service_id() == id; });
      break;
    case 2:
      m.routes.erase(id);
      erase_if(m.plugins, [&](const config::v1::Plugin& p) { return p.route_id() == id; });
      break;
    case 3: m.plugins.erase(id); break;
    case 4:
      m.consumers.erase(id);
      erase_if(m.plugins, [&](const config::v1::Plugin& p) { return p.consumer_id() == id; });
      erase_if(m.keyauth, [&](const config::v1::KeyAuthCredential& k) { return k.consumer_id() == id; });
      erase_if(m.acls, [&](const config::v1::Acl& a) { return a.consumer_id() == id; });
      break;
    case 5: m.keyauth.erase(id); break;
    case 6: m.acls.erase(id); break;
    case 7:
      m.upstreams.erase(id);
      erase_if(m.targets, [&](const config::v1::Target& t) { return t.upstream_id() == id; });
      break;
    case 8: m.targets.erase(id); break;
  }
}

void Mutate(Gen& g, Model& m) {
  const int kind = g.Int(1, 8);
  const std::string id = IdOf(kind, g);
  if (g.Chance(25)) {
    DeleteWithCascades(m, kind, id);
    return;
  }
  // A credential, ACL or target needs its parent (a store refuses a dangling foreign key).
  if ((kind == 5 || kind == 6) && m.consumers.empty()) return;
  if (kind == 8 && m.upstreams.empty()) return;
  switch (kind) {
    case 1: m.services[id] = MakeService(g, id); break;
    case 2: m.routes[id] = MakeRoute(g, id, m); break;
    case 3: m.plugins[id] = MakePlugin(g, id, m); break;
    case 4: m.consumers[id] = MakeConsumer(g, id); break;
    case 5: m.keyauth[id] = MakeKeyAuth(g, id, m); break;
    case 6: m.acls[id] = MakeAcl(g, id, m); break;
    case 7: m.upstreams[id] = MakeUpstream(g, id); break;
    case 8: m.targets[id] = MakeTarget(g, id, m); break;
  }
}

// A uniqueness rule: the store's UNIQUE columns refuse such a write, so it never reaches a build.
bool IsUniquenessError(const absl::Status& status) {
  const std::string text(status.message());
  return text.find("duplicate") != std::string::npos || text.find("a second") != std::string::npos;
}

TEST(ConfigMirrorTest, RandomChangesGiveWhatAFullBuildGives) {
  const FakeClock clock(1700000000);
  int incremental = 0, fallbacks = 0, invalid = 0, steps = 0;
  for (uint32_t seed = 1; seed <= 150; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    Gen g(seed);
    Model model;
    for (int i = 0; i < 3; ++i) model.services[Uuid(100 + i)] = MakeService(g, Uuid(100 + i));
    for (int i = 0; i < 30; ++i) Mutate(g, model);
    uint64_t version = 1;
    // Start from a valid model (drop what a full build refuses).
    while (!FullBuild(model, version, clock).ok()) model = Model{};
    ConfigMirror mirror;
    ResetMirror(mirror, model, version, clock);
    std::shared_ptr<const BuiltSnapshot> published = mirror.built();
    for (int step = 0; step < 40; ++step) {
      Model next = model;
      const int ops = g.Int(1, 4);
      for (int i = 0; i < ops; ++i) Mutate(g, next);
      absl::StatusOr<std::shared_ptr<BuiltSnapshot>> full = FullBuild(next, version + 1, clock);
      if (!full.ok() && IsUniquenessError(full.status())) continue;  // the store refuses it
      ++steps;
      absl::StatusOr<ConfigMirror::Next> got = mirror.Apply(ChangesBetween(model, next, version + 1), clock);
      if (!got.ok()) {
        EXPECT_FALSE(mirror.valid());
        if (absl::IsInvalidArgument(got.status())) {
          // Only what a full build refuses too.
          EXPECT_FALSE(full.ok()) << got.status();
          ++invalid;
        } else {
          EXPECT_TRUE(absl::IsFailedPrecondition(got.status())) << got.status();
          ++fallbacks;
        }
        // The builder reads the whole config then: the mirror starts again from the last good one.
        if (full.ok()) {
          model = next;
          ++version;
        }
        ResetMirror(mirror, model, version, clock);
        published = mirror.built();
        continue;
      }
      ASSERT_TRUE(full.ok()) << "the mirror accepted what a full build refuses: " << full.status();
      ++incremental;
      ExpectSameIndex(*got->indexed, **full);
      ExpectSameDiff(got->diff, DiffResources(*published->resources, *(*full)->resources));
      std::shared_ptr<const BuiltSnapshot> built = got->indexed;
      mirror.Commit(built);
      ASSERT_TRUE(mirror.valid());
      published = built;
      model = std::move(next);
      ++version;
      if (HasFailure()) return;
    }
  }
  std::cout << "incremental " << incremental << ", fallbacks " << fallbacks << ", invalid " << invalid << " of "
            << steps << " steps\n";
  // Most steps are built incrementally; the rest are the documented fallbacks.
  EXPECT_GT(incremental, (steps - invalid) * 3 / 4) << "incremental " << incremental << ", fallbacks " << fallbacks << ", invalid "
                                    << invalid << " of " << steps;
  EXPECT_GT(fallbacks, 0);
  EXPECT_GT(invalid, 0);
}

class ConfigMirrorCases : public ::testing::Test {
 protected:
  void SetUp() override {
    Gen g(7);
    for (int i = 0; i < 2; ++i) {
      config::v1::Service s = MakeService(g, Uuid(100 + i));
      s.set_enabled(true);
      model_.services[s.id()] = s;
    }
    for (int i = 0; i < 50; ++i) {
      config::v1::Route r = DefaultRoute();
      r.set_id(Uuid(2000 + i));
      r.set_service_id(Uuid(100 + i % 2));
      r.mutable_paths()->add_values(absl::StrCat("/r", i));
      model_.routes[r.id()] = r;
    }
    ResetMirror(mirror_, model_, 1, clock_);
  }

  absl::StatusOr<ConfigMirror::Next> ApplyTo(const Model& next) {
    return mirror_.Apply(ChangesBetween(model_, next, 2), clock_);
  }

  const FakeClock clock_{1700000000};
  Model model_;
  ConfigMirror mirror_;
};

TEST_F(ConfigMirrorCases, OneAddedRouteIsOneUpsertWithTheFullBuildsHash) {
  Model next = model_;
  config::v1::Route r = model_.routes.begin()->second;
  r.set_id(Uuid(2999));
  r.mutable_paths()->set_values(0, "/new");
  next.routes[r.id()] = r;
  absl::StatusOr<ConfigMirror::Next> got = ApplyTo(next);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->diff.size(), 1u);
  EXPECT_EQ(got->diff[0].id, r.id());
  EXPECT_FALSE(got->diff[0].existed_before);
  EXPECT_EQ(got->validated, 1u);
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> full = FullBuild(next, 2, clock_);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(got->indexed->version.hash, (*full)->version.hash);
  EXPECT_EQ(got->indexed->route_count, 51u);
}

TEST_F(ConfigMirrorCases, AServiceDisabledTakesTheWholeConfig) {
  Model next = model_;
  next.services.begin()->second.set_enabled(false);
  absl::StatusOr<ConfigMirror::Next> got = ApplyTo(next);
  EXPECT_TRUE(absl::IsFailedPrecondition(got.status())) << got.status();
  EXPECT_FALSE(mirror_.valid());
}

TEST_F(ConfigMirrorCases, ADeletedServiceStillReferencedTakesTheWholeConfig) {
  Model next = model_;
  next.services.erase(next.services.begin());  // its routes stay (a store would refuse this)
  absl::StatusOr<ConfigMirror::Next> got = ApplyTo(next);
  EXPECT_TRUE(absl::IsFailedPrecondition(got.status())) << got.status();
  EXPECT_FALSE(mirror_.valid());
}

TEST_F(ConfigMirrorCases, ARouteOfAMissingServiceIsInvalid) {
  Model next = model_;
  config::v1::Route& r = next.routes.begin()->second;
  r.set_service_id(Uuid(199));
  absl::StatusOr<ConfigMirror::Next> got = ApplyTo(next);
  EXPECT_TRUE(absl::IsInvalidArgument(got.status())) << got.status();
  EXPECT_NE(got.status().message().find("does not exist"), std::string::npos) << got.status();
}

TEST_F(ConfigMirrorCases, ARouteBrokenByItsOwnRulesIsInvalid) {
  Model next = model_;
  next.routes.begin()->second.mutable_paths()->set_values(0, "no-slash");
  absl::StatusOr<ConfigMirror::Next> got = ApplyTo(next);
  EXPECT_TRUE(absl::IsInvalidArgument(got.status())) << got.status();
}

TEST_F(ConfigMirrorCases, AnUncoveredOrOtherEpochReadFallsBack) {
  StoredChanges changes = ChangesBetween(model_, model_, 2);
  changes.covered = false;
  EXPECT_TRUE(absl::IsFailedPrecondition(mirror_.Apply(std::move(changes), clock_).status()));
  ResetMirror(mirror_, model_, 1, clock_);
  StoredChanges other = ChangesBetween(model_, model_, 2);
  other.version.epoch = std::string(16, '\x22');
  EXPECT_TRUE(absl::IsFailedPrecondition(mirror_.Apply(std::move(other), clock_).status()));
}

TEST_F(ConfigMirrorCases, CommitOfAnotherVersionLeavesTheMirrorInvalid) {
  Model next = model_;
  next.routes.erase(next.routes.begin());
  absl::StatusOr<ConfigMirror::Next> got = ApplyTo(next);
  ASSERT_TRUE(got.ok()) << got.status();
  auto other = std::make_shared<BuiltSnapshot>(*got->indexed);
  other->version.version = 3;
  mirror_.Commit(other);
  EXPECT_FALSE(mirror_.valid());
}

}  // namespace
}  // namespace portico::cp
