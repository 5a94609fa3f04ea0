// The CP sync parts that need no gRPC, each on its own: the snapshot builder (debounce, publish,
// build failures), the data-plane table (outdated, lag), the full-send slots.
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/config/entity_descriptor.h"
#include "common/config/entity_json.h"
#include "common/metrics/metrics.h"
#include "common/snapshot/snapshot.h"
#include "control_plane/sync/dp_status_table.h"
#include "control_plane/sync/full_send_slots.h"
#include "control_plane/sync/snapshot_builder.h"
#include "control_plane/sync/sync_metrics.h"
#include "gtest/gtest.h"

namespace portico::cp {
namespace {

using namespace std::chrono_literals;

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class SnapshotBuilderTest : public ::testing::Test {
 protected:
  SnapshotBuilderTest() {
    stored_.version.epoch = std::string(16, '\x05');
    config::v1::Service s = DefaultService();
    s.set_id("00000000-0000-4000-8000-000000000001");
    s.set_host("10.0.0.1");
    stored_.config.services.push_back(s);
  }

  std::unique_ptr<SnapshotBuilder> Make(bool with_feed = false, absl::Duration quiet = absl::Milliseconds(20),
                                        absl::Duration max = absl::Milliseconds(100),
                                        absl::Duration first = absl::Milliseconds(10)) {
    SnapshotBuilder::Options options;
    options.debounce_quiet = quiet;
    options.debounce_max = max;
    options.debounce_first = first;
    options.quick_delta_bytes = quick_delta_bytes_;
    options.payload_fault_for_test = [this](const BuiltSnapshot& s) -> absl::Status {
      {
        std::lock_guard<std::mutex> lock(mu_);
        payload_attempts_.push_back(s.version.version);
        if (failing_payloads_ > 0) {
          --failing_payloads_;
          return absl::InternalError("disk full");
        }
      }
      std::this_thread::sleep_for(payload_delay_);
      return absl::OkStatus();
    };
    if (with_feed) {
      // The store's change feed: the services changed after `since`, as they are now.
      options.read_changes = [this](uint64_t since) -> absl::StatusOr<StoredChanges> {
        std::lock_guard<std::mutex> lock(mu_);
        ++change_reads_;
        StoredChanges out;
        out.version = stored_.version;
        out.covered = since >= feed_floor_ && since <= stored_.version.version;
        if (!out.covered) return out;
        std::set<std::string> ids;
        for (const auto& [version, id] : changed_) {
          if (version > since) ids.insert(id);
        }
        for (const std::string& id : ids) {
          ConfigChange change;
          change.kind = EntityRegistry::Default().Find("services");
          change.id = id;
          for (const config::v1::Service& s : stored_.config.services) {
            if (s.id() == id) change.entity = std::make_unique<config::v1::Service>(s);
          }
          out.changes.push_back(std::move(change));
        }
        return out;
      };
    }
    return std::make_unique<SnapshotBuilder>(
        options,
        [this]() -> absl::StatusOr<StoredConfig> {
          std::lock_guard<std::mutex> lock(mu_);
          ++reads_;
          if (fail_reads_) return absl::UnavailableError("database is locked");
          return stored_;
        },
        metrics_, clock_, [this](std::shared_ptr<const BuiltSnapshot> s) {
          std::lock_guard<std::mutex> lock(mu_);
          // A version with deltas is published first without its payload, then with it.
          (s->payload_ready() ? published_ : early_).push_back(s->version.version);
          order_.push_back({s->version.version, s->payload_ready()});
        });
  }
  // Changes service `index` (and records it for the change feed).
  void BumpService(size_t index, const std::function<void(config::v1::Service&)>& edit) {
    std::lock_guard<std::mutex> lock(mu_);
    edit(stored_.config.services[index]);
    ++stored_.version.version;
    changed_.emplace_back(stored_.version.version, stored_.config.services[index].id());
  }
  void Bump(const std::function<void(StoredConfig&)>& edit) {
    std::lock_guard<std::mutex> lock(mu_);
    edit(stored_);
    ++stored_.version.version;
  }
  std::vector<uint64_t> Published() {
    std::lock_guard<std::mutex> lock(mu_);
    return published_;
  }
  // 30 more services: a change to one of them is under half the config (it gets a delta).
  void AddServices() {
    for (int i = 10; i < 40; ++i) {
      config::v1::Service s = DefaultService();
      s.set_id(absl::StrCat("00000000-0000-4000-8000-0000000000", i));
      s.set_host(absl::StrCat("10.0.0.", i));
      stored_.config.services.push_back(s);
    }
  }
  std::vector<uint64_t> Early() {
    std::lock_guard<std::mutex> lock(mu_);
    return early_;
  }
  std::vector<std::pair<uint64_t, bool>> Order() {
    std::lock_guard<std::mutex> lock(mu_);
    return order_;
  }

  FakeClock clock_{1700000000};
  Registry registry_;
  SyncMetrics metrics_{registry_};
  std::mutex mu_;
  StoredConfig stored_;
  int reads_ = 0;
  int change_reads_ = 0;
  std::vector<uint64_t> payload_attempts_;  // versions the payload thread started on
  int failing_payloads_ = 0;                // the next N payload builds fail
  std::chrono::milliseconds payload_delay_{0};
  uint64_t quick_delta_bytes_ = uint64_t{1} << 20;
  uint64_t feed_floor_ = 0;  // the feed covers versions after this
  std::vector<std::pair<uint64_t, std::string>> changed_;  // (version, service id)
  bool fail_reads_ = false;
  std::vector<uint64_t> published_;
  std::vector<uint64_t> early_;  // published without the payload (deltas first)
  std::vector<std::pair<uint64_t, bool>> order_;  // (version, payload ready), in order
};

// An isolated change waits debounce_first, not debounce_quiet; changes that keep coming after it
// are coalesced with debounce_quiet (one more build, not one per change).
TEST_F(SnapshotBuilderTest, AnIsolatedChangeWaitsOnlyDebounceFirst) {
  auto builder = Make(/*with_feed=*/false, /*quiet=*/absl::Milliseconds(1500), /*max=*/absl::Seconds(5), /*first=*/absl::Milliseconds(10));
  ASSERT_TRUE(builder->Start().ok());
  Bump([](StoredConfig&) {});
  const auto notified = std::chrono::steady_clock::now();
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return Published().size() == 2; }));
  EXPECT_LT(std::chrono::steady_clock::now() - notified, std::chrono::milliseconds(1000))
      << "an isolated change waited for the quiet time";
  // Five more, 20 ms apart: the first follows the one above within the quiet time, so all five
  // wait for the quiet time and are built once.
  for (int i = 0; i < 5; ++i) {
    Bump([](StoredConfig&) {});
    builder->NotifyConfigChanged();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 6 && builder->latest()->payload_ready(); }));
  EXPECT_EQ(Published(), (std::vector<uint64_t>{0, 1, 6}));
}

TEST_F(SnapshotBuilderTest, PublishesAtStartThenOncePerBurstOfChanges) {
  auto builder = Make();
  ASSERT_TRUE(builder->Start().ok());
  EXPECT_EQ(Published(), std::vector<uint64_t>{0});
  ASSERT_NE(builder->latest(), nullptr);
  for (int i = 0; i < 10; ++i) {
    Bump([](StoredConfig&) {});
    builder->NotifyConfigChanged();
  }
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 10; }));
  EXPECT_LE(Published().size(), 3u);  // debounced: not one build per change
  EXPECT_EQ(builder->Status().store_version, 10u);
  EXPECT_FALSE(builder->Status().failing);
  ASSERT_TRUE(builder->FindPublished(builder->latest()->version).has_value());
  EXPECT_TRUE(builder->FindPublished(builder->latest()->version)->first_change.has_value());
}

TEST_F(SnapshotBuilderTest, EachPublishedVersionCarriesTheDeltasFromTheVersionsBefore) {
  AddServices();  // enough services that one change is a small delta
  auto builder = Make();
  ASSERT_TRUE(builder->Start().ok());
  const std::shared_ptr<const BuiltSnapshot> first = builder->latest();
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(first->deltas.empty());  // nothing published before it
  Bump([](StoredConfig& s) { s.config.services[0].set_host("10.9.9.9"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 1; }));
  Bump([](StoredConfig& s) { s.config.services[1].set_host("10.9.9.8"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 2 && builder->latest()->payload_ready(); }));
  const std::shared_ptr<const BuiltSnapshot> latest = builder->latest();
  ASSERT_EQ(latest->deltas.size(), 2u);
  const std::shared_ptr<const BuiltSnapshot>* from_first = latest->DeltaFrom(first->version);
  ASSERT_NE(from_first, nullptr);
  EXPECT_EQ((*from_first)->change_count, 2u);
  EXPECT_EQ((*from_first)->version, latest->version);
  EXPECT_LT((*from_first)->compressed.size(), latest->compressed.size());
}

// The deltas do not wait for the full payload (serialization and gzip of the whole config): a
// version with deltas is published without it first, then again with it; DPs that need the
// full snapshot wait for the second publication.
TEST_F(SnapshotBuilderTest, AVersionWithDeltasIsPublishedBeforeItsFullPayload) {
  AddServices();  // enough services that one change is a small delta
  auto builder = Make();
  ASSERT_TRUE(builder->Start().ok());
  Bump([](StoredConfig& s) { s.config.services[0].set_host("10.9.9.9"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return Published().size() == 2; }));
  EXPECT_EQ(Early(), std::vector<uint64_t>{1});
  const std::vector<std::pair<uint64_t, bool>> expected = {{0, true}, {1, false}, {1, true}};
  EXPECT_EQ(Order(), expected);  // the start has no delta: published once, with its payload
  const std::shared_ptr<const BuiltSnapshot> latest = builder->latest();
  ASSERT_TRUE(latest->payload_ready());
  EXPECT_EQ(latest->deltas.size(), 1u);
  EXPECT_EQ(builder->published_count(), 2u);  // counted once per version
  ASSERT_TRUE(builder->FindPublished(latest->version).has_value());
}

TEST_F(SnapshotBuilderTest, AVersionThatCannotBeBuiltKeepsTheLastSnapshotAndSaysWhy) {
  auto builder = Make();
  ASSERT_TRUE(builder->Start().ok());
  Bump([](StoredConfig& s) { s.corrupt = {CorruptRow{"routes", "r1", "does not parse"}}; });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->Status().failing; }));
  ConfigBuildStatus status = builder->Status();
  EXPECT_EQ(status.reason, "corrupt_rows");
  EXPECT_EQ(status.store_version, 1u);
  EXPECT_EQ(status.published_version, 0u);
  EXPECT_EQ(status.corrupt_row_count, 1u);
  SnapshotBuilder::LagView lag = builder->Lag();
  EXPECT_TRUE(lag.failing);
  EXPECT_EQ(lag.current.version, 1u);
  EXPECT_EQ(lag.failing_since, 1700000000);
  EXPECT_NE(registry_.Render().find("portico_cp_config_build_failing{reason=\"corrupt_rows\"} 1"), std::string::npos);

  Bump([](StoredConfig& s) { s.corrupt.clear(); });
  builder->NotifyConfigChanged();
  // Its full payload follows the deltas (the payload thread).
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 2 && builder->latest()->payload_ready(); }));
  EXPECT_FALSE(builder->Status().failing);
  EXPECT_EQ(Published(), (std::vector<uint64_t>{0, 2}));
}

// With a change feed, a build reads the changed rows only and publishes what a full build of the
// store's config gives; a feed that does not cover the published version, or a change the mirror
// cannot apply alone, reads the whole config.
TEST_F(SnapshotBuilderTest, WithAChangeFeedABuildReadsOnlyTheChangedRows) {
  AddServices();
  auto builder = Make(/*with_feed=*/true);
  ASSERT_TRUE(builder->Start().ok());
  auto full_hash = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    absl::StatusOr<std::shared_ptr<BuiltSnapshot>> full = BuildSnapshot(stored_, clock_);
    return full.ok() ? (*full)->version.hash : std::string();
  };
  auto reads = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return reads_;
  };
  EXPECT_EQ(reads(), 1);

  BumpService(0, [](config::v1::Service& s) { s.set_host("10.9.9.9"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 1 && builder->latest()->payload_ready(); }));
  EXPECT_EQ(reads(), 1);  // no whole read
  EXPECT_EQ(builder->latest()->version.hash, full_hash());
  ASSERT_EQ(builder->latest()->deltas.size(), 1u);
  EXPECT_EQ(builder->latest()->deltas[0]->change_count, 1u);

  // Invalid in itself: the whole config is read and the version refused with the full set's error.
  BumpService(1, [](config::v1::Service& s) { s.set_host("bad host!"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->Status().failing; }));
  EXPECT_EQ(builder->Status().reason, "invalid_config");
  EXPECT_EQ(reads(), 2);
  EXPECT_EQ(builder->latest()->version.version, 1u);
  BumpService(1, [](config::v1::Service& s) { s.set_host("10.9.9.8"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 3; }));
  EXPECT_FALSE(builder->Status().failing);
  EXPECT_EQ(reads(), 3);  // the mirror was dropped with the refused version: rebuilt from a whole read
  EXPECT_EQ(builder->latest()->version.hash, full_hash());

  // The mirror is back: the next change is incremental again.
  BumpService(2, [](config::v1::Service& s) { s.set_port(8081); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 4; }));
  EXPECT_EQ(reads(), 3);
  EXPECT_EQ(builder->latest()->version.hash, full_hash());

  // A feed that no longer covers the published version: a whole read.
  {
    std::lock_guard<std::mutex> lock(mu_);
    feed_floor_ = 10;
  }
  BumpService(3, [](config::v1::Service& s) { s.set_port(8082); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 5; }));
  EXPECT_EQ(reads(), 4);
  EXPECT_EQ(builder->latest()->version.hash, full_hash());
}

// A version whose deltas went out stays published when its payload fails: the failure shows
// as build_error, the payload thread tries again after 1 s, and the success clears it.
TEST_F(SnapshotBuilderTest, APayloadThatFailsIsRetriedAndTheVersionStaysPublished) {
  AddServices();
  auto builder = Make();
  ASSERT_TRUE(builder->Start().ok());
  {
    std::lock_guard<std::mutex> lock(mu_);
    failing_payloads_ = 1;
  }
  Bump([](StoredConfig& s) { s.config.services[0].set_host("10.9.9.9"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->Status().failing; }));
  EXPECT_EQ(builder->Status().reason, "build_error");
  EXPECT_EQ(builder->latest()->version.version, 1u);  // out, as deltas
  EXPECT_FALSE(builder->latest()->payload_ready());
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->payload_ready(); }, 5000ms));
  EXPECT_FALSE(builder->Status().failing);
  EXPECT_EQ(Published(), (std::vector<uint64_t>{0, 1}));
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(payload_attempts_, (std::vector<uint64_t>{1, 1}));
}

// The payload thread works on the newest version only: a version superseded while its payload
// was waiting or being built is never published with it, and the builder does not wait for it.
TEST_F(SnapshotBuilderTest, ASupersededVersionsPayloadIsDropped) {
  AddServices();
  auto builder = Make();
  ASSERT_TRUE(builder->Start().ok());
  {
    std::lock_guard<std::mutex> lock(mu_);
    payload_delay_ = 400ms;
  }
  Bump([](StoredConfig& s) { s.config.services[0].set_host("10.9.9.9"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 1; }));
  Bump([](StoredConfig& s) { s.config.services[1].set_host("10.9.9.8"); });
  builder->NotifyConfigChanged();
  // Published (with its deltas) while version 1's payload is still being built.
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 2; }, 300ms));
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->payload_ready(); }, 5000ms));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(Published(), (std::vector<uint64_t>{0, 2}));  // 1 never got its payload published
  EXPECT_EQ(builder->latest()->version.version, 2u);
}

// A delta from an older base (over quick_delta_bytes) is built on the payload thread and
// published before the payload: a DP on that base gets it even while the payload keeps failing.
TEST_F(SnapshotBuilderTest, DeltasFromOlderBasesDoNotWaitForThePayload) {
  AddServices();
  quick_delta_bytes_ = 150;  // one service's change, not two
  failing_payloads_ = 1000;
  auto builder = Make();
  ASSERT_TRUE(builder->Start().ok());
  const ConfigVersion v0 = builder->latest()->version;
  Bump([](StoredConfig& s) { s.config.services[0].set_host("10.9.9.9"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 1; }));
  const ConfigVersion v1 = builder->latest()->version;
  Bump([](StoredConfig& s) { s.config.services[1].set_host("10.9.9.8"); });
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->version.version == 2; }));
  EXPECT_NE(builder->latest()->DeltaFrom(v1), nullptr);  // first publication
  ASSERT_TRUE(WaitFor([&] { return builder->latest()->DeltaFrom(v0) != nullptr; }));
  EXPECT_EQ((*builder->latest()->DeltaFrom(v0))->change_count, 2u);
  EXPECT_FALSE(builder->latest()->payload_ready());
  // The payload's failure is recorded after the older-base deltas go out.
  ASSERT_TRUE(WaitFor([&] { return builder->Status().reason == "build_error"; }));
  EXPECT_FALSE(builder->latest()->payload_ready());
}

TEST_F(SnapshotBuilderTest, AReadErrorFailsStartButNotALaterBuild) {
  fail_reads_ = true;
  EXPECT_EQ(Make()->Start().code(), absl::StatusCode::kUnavailable);
  fail_reads_ = false;
  auto builder = Make();
  ASSERT_TRUE(builder->Start().ok());
  {
    std::lock_guard<std::mutex> lock(mu_);
    fail_reads_ = true;
  }
  builder->NotifyConfigChanged();
  ASSERT_TRUE(WaitFor([&] { return builder->Status().failing; }));
  EXPECT_EQ(builder->Status().reason, "read_error");
  builder->Stop();
  builder->Stop();  // idempotent
}

TEST(DataPlaneTableTest, ListDerivesOutdatedAndLagFromTheBuildersView) {
  const std::string epoch(16, '\x01');
  DataPlaneTable table;
  DataPlaneTable::Record& live = table["dp-live"];
  live.status.state = "connected_synced";
  live.serving = ConfigVersion{epoch, 3, "h"};
  live.active_session = 7;
  DataPlaneTable::Record& gone = table["dp-gone"];
  gone.status.state = "disconnected";
  gone.serving = ConfigVersion{std::string(16, '\x02'), 9, "h"};  // another epoch
  EXPECT_EQ(table.connected(), 1u);

  SnapshotBuilder::LagView lag;
  lag.current = ConfigVersion{epoch, 5, ""};
  lag.failing = true;
  lag.failing_since = 1000;
  SnapshotBuilder::Published v4;
  v4.version = ConfigVersion{epoch, 4, "h4"};
  v4.first_change_wall = 900;
  lag.history = {v4};
  std::vector<DataPlaneStatus> rows = table.List(lag, nullptr, 1100);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, "dp-gone");  // sorted by id
  EXPECT_EQ(rows[0].state, "disconnected");
  EXPECT_EQ(rows[0].lag_versions, 5u);  // serves another epoch: the whole current version
  EXPECT_EQ(rows[1].id, "dp-live");
  EXPECT_EQ(rows[1].state, "outdated");  // live, sent nothing, the store's version cannot be built
  EXPECT_EQ(rows[1].lag_versions, 2u);
  EXPECT_EQ(rows[1].lag_seconds, 200);  // the oldest commit it lacks (version 4's)

  // A refusal never overwrites the record of a live stream of that node.
  DataPlaneStatus refused;
  refused.state = "refused";
  table.RecordRejected("dp-live", refused);
  EXPECT_EQ(table.Find("dp-live")->status.state, "connected_synced");
  table.RecordRejected("dp-new", refused);
  EXPECT_EQ(table.Find("dp-new")->status.state, "refused");
  EXPECT_TRUE(table.Find("dp-new")->serving.empty());
}

TEST(FullSendSlotsTest, QueuedSessionsGetFreedSlotsInOrderUnlessTheyNoLongerWantOne) {
  FullSendSlots slots(2);
  EXPECT_TRUE(slots.Acquire(1));
  EXPECT_TRUE(slots.Acquire(2));
  EXPECT_FALSE(slots.Acquire(3));
  EXPECT_FALSE(slots.Acquire(4));
  EXPECT_FALSE(slots.Acquire(5));
  std::vector<uint64_t> granted;
  auto wants = [](uint64_t id) { return id != 3; };  // session 3 ended meanwhile
  slots.Release(wants, [&](uint64_t id) { granted.push_back(id); });
  EXPECT_EQ(granted, std::vector<uint64_t>{4});
  EXPECT_EQ(slots.in_progress(), 2);
  // A granted session with nothing left to send gives the slot back at once: the next one gets it.
  slots.Release(wants, [&](uint64_t id) {
    granted.push_back(id);
    slots.Release(wants, [&](uint64_t next) { granted.push_back(next); });
  });
  EXPECT_EQ(granted, (std::vector<uint64_t>{4, 5}));
  EXPECT_EQ(slots.in_progress(), 1);
  EXPECT_EQ(slots.peak(), 2);
}

}  // namespace
}  // namespace portico::cp

namespace portico::cp {
namespace {

TEST(DataPlaneTableHealth, ListsTheReportsOfLiveStreamsOnly) {
  DataPlaneTable table;
  auto entries = std::make_shared<const std::vector<TargetHealthEntry>>(
      std::vector<TargetHealthEntry>{{"u1", "a.internal", "10.0.0.1:80", "UNHEALTHY"}});
  DataPlaneTable::Record& live = table["dp-b"];
  live.active_session = 7;
  live.status.hostname = "edge-b";
  live.health_reported = true;
  live.health_truncated = true;
  live.health_reported_at = 1700000123;
  live.health = entries;
  DataPlaneTable::Record& gone = table["dp-a"];  // disconnected: its last report is not shown
  gone.health_reported = true;
  gone.health = entries;
  table["dp-c"].active_session = 8;  // live, never reported (an older DP)
  std::vector<DataPlaneTargetHealth> reports = table.TargetHealth();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].node_id, "dp-b");
  EXPECT_EQ(reports[0].hostname, "edge-b");
  EXPECT_EQ(reports[0].reported_at, 1700000123);
  EXPECT_TRUE(reports[0].truncated);
  EXPECT_EQ(reports[0].targets.get(), entries.get());  // shared, not copied
}

}  // namespace
}  // namespace portico::cp
