// The CP's change log (control_plane/sync/change_log.h): which bases get a delta (the window of
// versions, the byte budget, the half-size rule, gaps and epochs), and that every delta it builds
// applies to its base's full snapshot giving exactly the latest full snapshot.
#include "control_plane/sync/change_log.h"

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/snapshot/snapshot.h"
#include "gtest/gtest.h"

namespace portico::cp {
namespace {

using config::v1::Route;
using config::v1::Service;

const std::string kEpoch(16, '\x11');
const std::string kOtherEpoch(16, '\x22');

Service MakeService(const std::string& id, const std::string& host) {
  Service s;
  s.set_id(id);
  s.set_name("svc-" + id);
  s.set_protocol("http");
  s.set_host(host);
  s.set_port(80);
  s.set_enabled(true);
  return s;
}

Route MakeRoute(const std::string& id, const std::string& service_id, const std::string& path) {
  Route r;
  r.set_id(id);
  r.set_name("route-" + id);
  r.set_service_id(service_id);
  r.add_protocols("http");
  r.mutable_paths()->add_values(path);
  return r;
}

std::string RouteId(int i) { return absl::StrCat("r", 10000 + i); }

// Builds the full snapshots of successive versions of one config, as the builder does, and keeps
// every one (a delta is checked against its base's full snapshot).
class History {
 public:
  explicit History(int routes = 200) {
    stored_.version.epoch = kEpoch;
    stored_.version.version = 1;
    for (int s = 0; s < 4; ++s) stored_.config.services.push_back(MakeService(absl::StrCat("s", s), "h.example"));
    for (int i = 0; i < routes; ++i) {
      stored_.config.routes.push_back(MakeRoute(RouteId(i), absl::StrCat("s", i % 4), absl::StrCat("/p/", i)));
    }
  }

  StoredConfig& stored() { return stored_; }
  Route* FindRoute(const std::string& id) {
    for (Route& r : stored_.config.routes) {
      if (r.id() == id) return &r;
    }
    return nullptr;
  }
  void DeleteRoute(const std::string& id) {
    auto& routes = stored_.config.routes;
    for (auto it = routes.begin(); it != routes.end(); ++it) {
      if (it->id() == id) {
        routes.erase(it);
        return;
      }
    }
    ADD_FAILURE() << "no route " << id;
  }

  // Builds the current config as the next version (the first call builds version 1).
  std::shared_ptr<BuiltSnapshot> Build() {
    if (!built_.empty()) ++stored_.version.version;
    absl::StatusOr<std::shared_ptr<BuiltSnapshot>> built = BuildSnapshot(stored_, clock_);
    EXPECT_TRUE(built.ok()) << built.status();
    if (!built.ok()) return nullptr;
    built_[stored_.version.version] = *built;
    return *built;
  }
  // Builds the next version and records it in `log` against the previous one.
  std::shared_ptr<BuiltSnapshot> Publish(ChangeLog& log) {
    std::shared_ptr<BuiltSnapshot> previous = latest_;
    latest_ = Build();
    log.Record(previous.get(), *latest_);
    return latest_;
  }
  const BuiltSnapshot& at(uint64_t version) { return *built_.at(version); }
  const FakeClock& clock() const { return clock_; }

 private:
  FakeClock clock_;
  StoredConfig stored_;
  std::map<uint64_t, std::shared_ptr<BuiltSnapshot>> built_;
  std::shared_ptr<BuiltSnapshot> latest_;
};

std::vector<uint64_t> Bases(const std::vector<std::shared_ptr<const BuiltSnapshot>>& deltas) {
  std::vector<uint64_t> bases;
  for (const auto& d : deltas) bases.push_back(d->base.version);
  return bases;
}

DecodedSnapshot DecodeFull(const BuiltSnapshot& full) {
  absl::StatusOr<DecodedSnapshot> decoded =
      DecodeSnapshot(full.compressed, /*gzip=*/true, full.uncompressed_size, full.version);
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return decoded.ok() ? *std::move(decoded) : DecodedSnapshot{};
}

// Applies `delta` to the full snapshot of its base, as a DP does, and checks that the result is
// exactly `latest`: same version and hash, same resources (kind, id, body hash), same entities.
void ExpectAppliesTo(const BuiltSnapshot& delta, const BuiltSnapshot& base_full, const BuiltSnapshot& latest) {
  SCOPED_TRACE(absl::StrCat("delta ", delta.base.version, " -> ", delta.version.version));
  ASSERT_TRUE(delta.is_delta());
  ASSERT_EQ(delta.base, base_full.version);
  ASSERT_EQ(delta.version, latest.version);
  DecodedSnapshot held = DecodeFull(base_full);
  ASSERT_NE(held.resources, nullptr);
  absl::StatusOr<DecodedSnapshot> applied = DecodeDelta(delta.compressed, delta.gzip, delta.uncompressed_size,
                                                        delta.base, delta.version, held);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->version, latest.version);
  EXPECT_EQ(ConfigHashOf(*applied->resources), latest.version.hash);
  ASSERT_EQ(applied->resources->size(), latest.resources->size());
  for (size_t i = 0; i < latest.resources->size(); ++i) {
    const ResourceEntry& got = (*applied->resources)[i];
    const ResourceEntry& want = (*latest.resources)[i];
    EXPECT_EQ(got.kind, want.kind);
    EXPECT_EQ(got.id, want.id);
    EXPECT_EQ(got.hash, want.hash);
    EXPECT_EQ(*got.body, *want.body);
  }
  DecodedSnapshot expected = DecodeFull(latest);
  ASSERT_NE(expected.config, nullptr);
  ASSERT_EQ(applied->config->routes.size(), expected.config->routes.size());
  for (size_t i = 0; i < expected.config->routes.size(); ++i) {
    EXPECT_EQ(applied->config->routes[i].SerializeAsString(), expected.config->routes[i].SerializeAsString());
  }
  ASSERT_EQ(applied->config->services.size(), expected.config->services.size());
  for (size_t i = 0; i < expected.config->services.size(); ++i) {
    EXPECT_EQ(applied->config->services[i].SerializeAsString(), expected.config->services[i].SerializeAsString());
  }
}

void ExpectAllApply(History& history, const BuiltSnapshot& latest) {
  for (const auto& delta : latest.deltas) ExpectAppliesTo(*delta, history.at(delta->base.version), latest);
}

// The builder builds the small deltas first and the rest later (on its payload thread): the two
// stages give exactly the deltas one walk gives, in the same order.
TEST(ChangeLogTest, DeltasBuiltInTwoStagesEqualOneWalk) {
  History h(200);
  ChangeLog log;
  h.Publish(log);
  std::shared_ptr<BuiltSnapshot> latest;
  for (int v = 0; v < 6; ++v) {  // each version changes 10 routes of its own
    for (int i = v * 10; i < v * 10 + 10; ++i) {
      h.FindRoute(RouteId(i))->mutable_paths()->set_values(0, absl::StrCat("/v", v, "/", i));
    }
    latest = h.Publish(log);
  }
  const std::vector<std::shared_ptr<const BuiltSnapshot>> all = log.BuildDeltas(*latest, h.clock(), {});
  ASSERT_GE(all.size(), 4u);
  const std::vector<ChangeLog::Step> steps = log.StepsTo(*latest);
  size_t next = 0;
  // Stop once a delta carries more than the two newest steps' changes.
  const uint64_t stop = ChangeBytes(ComposeChanges(*steps[1].changes, *steps[0].changes));
  std::vector<std::shared_ptr<const BuiltSnapshot>> staged =
      ChangeLog::BuildDeltasFrom(steps, *latest, h.clock(), {}, 0, stop, &next);
  EXPECT_EQ(next, 2u);
  EXPECT_EQ(staged.size(), 2u);
  std::vector<std::shared_ptr<const BuiltSnapshot>> rest = ChangeLog::BuildDeltasFrom(steps, *latest, h.clock(), {}, next);
  staged.insert(staged.end(), rest.begin(), rest.end());
  EXPECT_EQ(Bases(staged), Bases(all));
  for (size_t i = 0; i < staged.size() && i < all.size(); ++i) {
    EXPECT_EQ(staged[i]->compressed, all[i]->compressed) << i;
    ExpectAppliesTo(*staged[i], h.at(staged[i]->base.version), *latest);
  }
}

TEST(ChangeLogTest, EveryBaseInTheWindowGetsADeltaThatGivesExactlyTheLatest) {
  History history;
  ChangeLog log;
  history.Publish(log);  // v1: nothing to diff against
  EXPECT_EQ(log.size(), 0u);
  history.FindRoute(RouteId(3))->mutable_paths()->set_values(0, "/changed");
  history.Publish(log);  // v2: one route modified
  history.stored().config.routes.push_back(MakeRoute("r-new", "s1", "/new"));
  history.Publish(log);  // v3: one route added
  history.DeleteRoute(RouteId(7));
  history.Publish(log);  // v4: one route deleted
  history.stored().config.services.push_back(MakeService("s9", "nine.example"));
  history.stored().config.routes.push_back(MakeRoute("r-nine", "s9", "/nine"));
  history.Publish(log);  // v5: a service and its route
  std::shared_ptr<BuiltSnapshot> latest = history.Publish(log);  // v6: no change at all
  EXPECT_EQ(log.size(), 5u);
  EXPECT_EQ(log.oldest(), history.at(1).version);

  latest->deltas = log.BuildDeltas(*latest, history.clock(), {});
  EXPECT_EQ(Bases(latest->deltas), (std::vector<uint64_t>{5, 4, 3, 2, 1}));
  EXPECT_EQ(latest->deltas[0]->change_count, 0u);  // v5 -> v6 changed nothing
  EXPECT_EQ(latest->deltas[4]->change_count, 5u);  // route modified, added, deleted; service + route added
  for (uint64_t base = 1; base <= 5; ++base) {
    const std::shared_ptr<const BuiltSnapshot>* delta = latest->DeltaFrom(history.at(base).version);
    ASSERT_NE(delta, nullptr) << "no delta from version " << base;
    EXPECT_LT((*delta)->compressed.size(), latest->compressed.size());
  }
  ExpectAllApply(history, *latest);

  // The base must match exactly: the same version number with another hash gets none.
  ConfigVersion other = history.at(5).version;
  other.hash[0] ^= 1;
  EXPECT_EQ(latest->DeltaFrom(other), nullptr);
}

TEST(ChangeLogTest, BasesOlderThanMaxVersionsGetNone) {
  History history;
  ChangeLog log(ChangeLog::Options{.max_versions = 3});
  std::shared_ptr<BuiltSnapshot> latest;
  for (int v = 1; v <= 6; ++v) {
    history.FindRoute(RouteId(v))->mutable_paths()->set_values(0, absl::StrCat("/v", v));
    latest = history.Publish(log);
  }
  EXPECT_EQ(log.size(), 3u);
  EXPECT_EQ(log.oldest(), history.at(3).version);
  latest->deltas = log.BuildDeltas(*latest, history.clock(), {});
  EXPECT_EQ(Bases(latest->deltas), (std::vector<uint64_t>{5, 4, 3}));
  EXPECT_EQ(latest->DeltaFrom(history.at(2).version), nullptr);
  EXPECT_EQ(latest->DeltaFrom(history.at(1).version), nullptr);
  ExpectAllApply(history, *latest);
}

TEST(ChangeLogTest, TheByteBudgetEvictsTheOldestSteps) {
  History history;
  history.Build();  // measure one step: one route's body replaced by one of the same size
  Route* r = history.FindRoute(RouteId(0));
  r->set_name("route-A");
  std::shared_ptr<BuiltSnapshot> a = history.Build();
  r->set_name("route-B");
  std::shared_ptr<BuiltSnapshot> b = history.Build();
  const uint64_t step = ChangeLog::EntryBytes(DiffResources(*a->resources, *b->resources));
  ASSERT_GT(step, 0u);

  History h2;
  ChangeLog log(ChangeLog::Options{.max_bytes = step * 5 / 2});  // room for two steps
  std::shared_ptr<BuiltSnapshot> latest = h2.Publish(log);
  for (int v = 2; v <= 6; ++v) {
    h2.FindRoute(RouteId(0))->set_name(std::string("route-") + static_cast<char>('A' + v));
    latest = h2.Publish(log);
  }
  EXPECT_EQ(log.size(), 2u);
  EXPECT_LE(log.bytes(), step * 5 / 2);
  latest->deltas = log.BuildDeltas(*latest, h2.clock(), {});
  EXPECT_EQ(Bases(latest->deltas), (std::vector<uint64_t>{5, 4}));
  ExpectAllApply(h2, *latest);

  // A single step larger than the whole budget is not kept at all.
  ChangeLog tiny(ChangeLog::Options{.max_bytes = step / 2});
  tiny.Record(a.get(), *b);
  EXPECT_EQ(tiny.size(), 0u);
  EXPECT_EQ(tiny.bytes(), 0u);
}

// The builder records a step before the version's payload is built; when that payload fails and
// the version is built again, the same step comes again and must not read as a gap.
TEST(ChangeLogTest, TheSameStepRecordedAgainIsKeptOnce) {
  History history;
  std::shared_ptr<BuiltSnapshot> a = history.Build();
  history.FindRoute(RouteId(0))->set_name("route-A");
  std::shared_ptr<BuiltSnapshot> b = history.Build();
  history.FindRoute(RouteId(0))->set_name("route-B");
  std::shared_ptr<BuiltSnapshot> c = history.Build();
  ChangeLog log;
  log.Record(a.get(), *b);
  log.Record(a.get(), *b);
  EXPECT_EQ(log.size(), 1u);
  log.Record(b.get(), *c);
  EXPECT_EQ(log.size(), 2u);
  EXPECT_EQ(log.oldest(), a->version);
  log.Record(a.get(), *c);  // a real gap (the log ends at c, not a) still clears it
  EXPECT_EQ(log.size(), 1u);
}

TEST(ChangeLogTest, ABaseWhoseChangesExceedHalfTheFullSnapshotGetsTheFullSnapshot) {
  History history;
  ChangeLog log;
  history.Publish(log);  // v1
  for (int i = 0; i < 150; ++i) history.FindRoute(RouteId(i))->set_name(absl::StrCat("renamed-", i));
  history.Publish(log);  // v2: three quarters of the config changed
  history.FindRoute(RouteId(199))->set_name("last");
  std::shared_ptr<BuiltSnapshot> latest = history.Publish(log);  // v3: one route
  EXPECT_EQ(log.size(), 2u);
  latest->deltas = log.BuildDeltas(*latest, history.clock(), {});
  EXPECT_EQ(Bases(latest->deltas), (std::vector<uint64_t>{2}));
  EXPECT_EQ(latest->DeltaFrom(history.at(1).version), nullptr);
  ExpectAllApply(history, *latest);
}

TEST(ChangeLogTest, AnEpochChangeOrAGapClearsTheLog) {
  History history;
  ChangeLog log;
  history.Publish(log);
  history.FindRoute(RouteId(1))->set_name("x");
  std::shared_ptr<BuiltSnapshot> v2 = history.Publish(log);
  EXPECT_EQ(log.size(), 1u);

  // A new epoch (a CP restart on another store, a restore): nothing older applies.
  history.stored().version.epoch = kOtherEpoch;
  history.FindRoute(RouteId(2))->set_name("y");
  std::shared_ptr<BuiltSnapshot> v3 = history.Publish(log);
  EXPECT_EQ(log.size(), 0u);
  EXPECT_TRUE(log.BuildDeltas(*v3, history.clock(), {}).empty());
  history.FindRoute(RouteId(3))->set_name("z");
  std::shared_ptr<BuiltSnapshot> v4 = history.Publish(log);
  v4->deltas = log.BuildDeltas(*v4, history.clock(), {});
  EXPECT_EQ(Bases(v4->deltas), (std::vector<uint64_t>{3}));
  EXPECT_EQ(v4->deltas[0]->base.epoch, kOtherEpoch);
  ExpectAllApply(history, *v4);

  // A step that does not start where the log ends (a gap) drops the older steps.
  history.FindRoute(RouteId(4))->set_name("w");
  std::shared_ptr<BuiltSnapshot> v5 = history.Build();
  history.FindRoute(RouteId(5))->set_name("u");
  std::shared_ptr<BuiltSnapshot> v6 = history.Build();
  log.Record(v5.get(), *v6);  // the log ended at v4
  EXPECT_EQ(log.size(), 1u);
  EXPECT_EQ(log.oldest(), v5->version);

  // No previous snapshot (the first publication) clears it too.
  log.Record(nullptr, *v6);
  EXPECT_EQ(log.size(), 0u);
}

TEST(ChangeLogTest, NoDeltasForASnapshotTheLogDoesNotEndAt) {
  History history;
  ChangeLog log;
  history.Publish(log);
  history.FindRoute(RouteId(1))->set_name("x");
  std::shared_ptr<BuiltSnapshot> v2 = history.Publish(log);
  history.FindRoute(RouteId(2))->set_name("y");
  std::shared_ptr<BuiltSnapshot> v3 = history.Build();  // built but not recorded
  EXPECT_TRUE(log.BuildDeltas(*v3, history.clock(), {}).empty());
  EXPECT_EQ(log.BuildDeltas(*v2, history.clock(), {}).size(), 1u);
}

TEST(ChangeLogTest, ARouteCreatedThenDeletedIsNotInTheComposedDelta) {
  History history;
  ChangeLog log;
  history.Publish(log);  // v1
  history.stored().config.routes.push_back(MakeRoute("r-temp", "s0", "/temp"));
  history.FindRoute(RouteId(0))->set_name("kept-change");
  history.Publish(log);  // v2: r-temp created, r0 modified
  history.DeleteRoute("r-temp");
  std::shared_ptr<BuiltSnapshot> latest = history.Publish(log);  // v3: r-temp deleted
  latest->deltas = log.BuildDeltas(*latest, history.clock(), {});
  ASSERT_EQ(Bases(latest->deltas), (std::vector<uint64_t>{2, 1}));
  EXPECT_EQ(latest->deltas[0]->change_count, 1u);  // v2 -> v3: the delete
  // v1 -> v3: only r0's change; a delete of r-temp would be refused by a DP at v1 (not held).
  EXPECT_EQ(latest->deltas[1]->change_count, 1u);
  ExpectAllApply(history, *latest);
}

// Random edit sequences: whatever the window keeps, each delta built at each version applies to
// its base and gives exactly the latest full snapshot; the previous version always gets one when
// the step is small.
TEST(ChangeLogTest, RandomSequencesEveryDeltaReconstructsTheLatest) {
  for (uint32_t seed = 1; seed <= 25; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937 rng(seed);
    History history(60);
    ChangeLog log(ChangeLog::Options{.max_versions = 6});
    std::shared_ptr<BuiltSnapshot> latest = history.Publish(log);
    int next_id = 1000;
    for (int step = 0; step < 15; ++step) {
      const int edits = static_cast<int>(rng() % 4);  // 0..3 edits per version
      for (int e = 0; e < edits; ++e) {
        auto& routes = history.stored().config.routes;
        switch (rng() % 4) {
          case 0:
            routes.push_back(MakeRoute(RouteId(next_id), absl::StrCat("s", rng() % 4),
                                       absl::StrCat("/n/", next_id)));
            ++next_id;
            break;
          case 1:
            if (!routes.empty()) routes.erase(routes.begin() + static_cast<long>(rng() % routes.size()));
            break;
          case 2:
            if (!routes.empty()) routes[rng() % routes.size()].set_name(absl::StrCat("n", rng()));
            break;
          default:
            history.stored().config.services[rng() % 4].set_port(static_cast<int>(1000 + rng() % 1000));
            break;
        }
      }
      latest = history.Publish(log);
      latest->deltas = log.BuildDeltas(*latest, history.clock(), {});
      ASSERT_FALSE(latest->deltas.empty());  // at most 3 edits of a 60-route config: small
      EXPECT_EQ(latest->deltas[0]->base.version, latest->version.version - 1);
      EXPECT_LE(latest->deltas.size(), 6u);
      for (size_t i = 0; i < latest->deltas.size(); ++i) {
        EXPECT_EQ(latest->deltas[i]->base.version, latest->version.version - 1 - i);  // newest first, no hole
      }
      ExpectAllApply(history, *latest);
    }
  }
}

}  // namespace
}  // namespace portico::cp
