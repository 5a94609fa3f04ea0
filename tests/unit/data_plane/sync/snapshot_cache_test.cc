// SnapshotCache: atomic store (cur/prev rotation), verified load, corrupted files refused.
#include "data_plane/sync/snapshot_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/base/clock.h"
#include "common/tls/tls_files.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico::dp {
namespace {

using test_support::TempDir;

// A built snapshot of `routes` routes at `version`, as the CP would send it.
CachedSnapshot MakeSnapshot(uint64_t version, int routes) {
  StoredConfig stored;
  stored.version.epoch = std::string(16, '\x11');
  stored.version.version = version;
  config::v1::Service s;
  s.set_id("00000000-0000-4000-8000-000000000001");
  s.set_name("svc");
  s.set_protocol("http");
  s.set_host("127.0.0.1");
  s.set_port(80);
  s.set_enabled(true);
  stored.config.services.push_back(s);
  for (int i = 0; i < routes; ++i) {
    config::v1::Route r;
    r.set_id("10000000-0000-4000-8000-" + std::string(12 - std::to_string(i).size(), '0') +
             std::to_string(i));
    r.set_name("route-" + std::to_string(i));
    r.set_service_id(s.id());
    r.add_protocols("http");
    r.mutable_paths()->add_values("/r" + std::to_string(i));
    stored.config.routes.push_back(r);
  }
  FakeClock clock;
  auto built = BuildSnapshot(stored, clock);
  EXPECT_TRUE(built.ok()) << built.status();
  CachedSnapshot out;
  out.version = (*built)->version;
  out.gzip = true;
  out.uncompressed_size = (*built)->uncompressed_size;
  out.compressed = (*built)->compressed;
  return out;
}

std::string ReadAll(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFileToString(path);
  return s.ok() ? *s : std::string();
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

TEST(SnapshotCacheTest, EmptyDirectoryHasNothingToLoad) {
  TempDir tmp;
  SnapshotCache cache(tmp.path() + "/cache");
  ASSERT_TRUE(cache.Prepare().ok());
  EXPECT_EQ(cache.Load().status().code(), absl::StatusCode::kNotFound);
}

TEST(SnapshotCacheTest, PrepareRefusesAFile) {
  TempDir tmp;
  WriteAll(tmp.path() + "/file", "x");
  EXPECT_EQ(SnapshotCache(tmp.path() + "/file").Prepare().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SnapshotCacheTest, StoreThenLoadGivesTheVerifiedConfigAndRotatesCurToPrev) {
  TempDir tmp;
  SnapshotCache cache(tmp.path());
  CachedSnapshot v1 = MakeSnapshot(1, 3);
  CachedSnapshot v2 = MakeSnapshot(2, 5);
  ASSERT_TRUE(cache.Store(v1).ok());
  ASSERT_TRUE(cache.Store(v2).ok());
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/snapshot.tmp"));
  EXPECT_EQ(ReadAll(tmp.path() + "/snapshot.cur"), SnapshotCache::Encode(v2));
  EXPECT_EQ(ReadAll(tmp.path() + "/snapshot.prev"), SnapshotCache::Encode(v1));
  struct stat st;
  ASSERT_EQ(::stat((tmp.path() + "/snapshot.cur").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  absl::StatusOr<LoadedSnapshot> loaded = cache.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->file, tmp.path() + "/snapshot.cur");
  EXPECT_EQ(loaded->decoded.version, v2.version);
  EXPECT_EQ(loaded->decoded.config->routes.size(), 5u);
  EXPECT_EQ(loaded->decoded.config->routes[4].name(), "route-4");
}

TEST(SnapshotCacheTest, FlippedByteInCurIsDetectedAndPrevIsUsed) {
  TempDir tmp;
  SnapshotCache cache(tmp.path());
  CachedSnapshot v1 = MakeSnapshot(1, 3);
  CachedSnapshot v2 = MakeSnapshot(2, 200);
  ASSERT_TRUE(cache.Store(v1).ok());
  ASSERT_TRUE(cache.Store(v2).ok());
  const std::string cur = tmp.path() + "/snapshot.cur";
  std::string bytes = ReadAll(cur);
  // Every byte position of the payload must be protected; flip a few spread over the file.
  for (size_t pos : {bytes.size() / 3, bytes.size() / 2, bytes.size() - 10}) {
    std::string corrupted = bytes;
    corrupted[pos] = static_cast<char>(corrupted[pos] ^ 0x5a);
    WriteAll(cur, corrupted);
    EXPECT_FALSE(cache.LoadFile(cur).ok()) << "flip at " << pos << " of " << bytes.size();
    absl::StatusOr<LoadedSnapshot> loaded = cache.Load();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->file, tmp.path() + "/snapshot.prev");
    EXPECT_EQ(loaded->decoded.version, v1.version);
    EXPECT_FALSE(std::filesystem::exists(cur)) << "a bad cur stays in the rotation";
    EXPECT_TRUE(std::filesystem::exists(cur + ".bad"));
  }
}

TEST(SnapshotCacheTest, StoreAfterLoadingPrevKeepsTheGoodPrev) {
  TempDir tmp;
  SnapshotCache cache(tmp.path());
  CachedSnapshot v1 = MakeSnapshot(1, 3);
  CachedSnapshot v2 = MakeSnapshot(2, 4);
  CachedSnapshot v3 = MakeSnapshot(3, 5);
  ASSERT_TRUE(cache.Store(v1).ok());
  ASSERT_TRUE(cache.Store(v2).ok());
  WriteAll(tmp.path() + "/snapshot.cur", "garbage");
  absl::StatusOr<LoadedSnapshot> loaded = cache.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->decoded.version, v1.version);
  ASSERT_TRUE(cache.Store(v3).ok());
  // cur = v3, prev still the last good file (v1), never the garbage.
  EXPECT_EQ(ReadAll(tmp.path() + "/snapshot.cur"), SnapshotCache::Encode(v3));
  EXPECT_EQ(ReadAll(tmp.path() + "/snapshot.prev"), SnapshotCache::Encode(v1));
}

TEST(SnapshotCacheTest, TruncatedAndForeignFilesAreRefused) {
  TempDir tmp;
  SnapshotCache cache(tmp.path());
  ASSERT_TRUE(cache.Store(MakeSnapshot(4, 50)).ok());
  const std::string cur = tmp.path() + "/snapshot.cur";
  std::string bytes = ReadAll(cur);
  WriteAll(cur, bytes.substr(0, bytes.size() / 2));
  EXPECT_FALSE(cache.LoadFile(cur).ok());
  WriteAll(cur, "hello, not a snapshot");
  EXPECT_EQ(cache.LoadFile(cur).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.Load().status().code(), absl::StatusCode::kNotFound);  // no prev either
}

TEST(SnapshotCacheTest, WrongAnnouncedHashIsAHashMismatch) {
  TempDir tmp;
  SnapshotCache cache(tmp.path());
  CachedSnapshot lying = MakeSnapshot(3, 4);
  lying.version.hash = MakeSnapshot(3, 5).version.hash;  // a hash of other content
  ASSERT_TRUE(cache.Store(lying).ok());
  EXPECT_EQ(cache.LoadFile(tmp.path() + "/snapshot.cur").status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace portico::dp
