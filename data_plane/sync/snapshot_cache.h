#pragma once
// The DP's opt-in on-disk copy of its last good snapshot (SYNC-PROTOCOL.md §5.6 steps 7 and 9).
//
// Layout in `dir`: snapshot.cur (last good), snapshot.prev (the one before), snapshot.tmp (being
// written). Store() writes tmp, fsyncs it, renames cur -> prev, tmp -> cur, then fsyncs the
// directory, so a crash at any point leaves a complete cur or prev. A file holds the exact
// compressed bytes received from the CP plus their VersionRef; Load() runs them through the same
// decoder as the stream (size caps, hash recomputed), so a corrupted or torn file is refused.
//
// Not thread-safe: one owner (the sync client thread). No gRPC types here.
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config/config_set.h"
#include "common/snapshot/snapshot.h"

namespace portico::dp {

// One snapshot exactly as the CP sent it (all chunks concatenated).
struct CachedSnapshot {
  ConfigVersion version;            // the announced target (epoch, version, hash)
  bool gzip = true;                 // encoding of `compressed`: gzip, else none
  uint64_t uncompressed_size = 0;   // as announced by the CP
  std::string compressed;
};

struct LoadedSnapshot {
  DecodedSnapshot decoded;  // verified: hash recomputed from the bodies
  std::string file;         // the file it came from (".../snapshot.cur" or ".../snapshot.prev")
};

class SnapshotCache {
 public:
  static constexpr char kCurrent[] = "snapshot.cur";
  static constexpr char kPrevious[] = "snapshot.prev";
  static constexpr char kTemporary[] = "snapshot.tmp";

  explicit SnapshotCache(std::string dir, SnapshotLimits limits = {});

  const std::string& dir() const { return dir_; }

  // Creates the directory (0700) if it is missing. FailedPrecondition if it is not a directory.
  absl::Status Prepare() const;

  // Atomically replaces cur with `snapshot` (the old cur becomes prev).
  absl::Status Store(const CachedSnapshot& snapshot) const;

  // Loads and verifies cur, else prev. A file that fails (unreadable, bad format, decode or hash
  // error) is logged at error level and renamed to `<file>.bad`, out of the rotation. NotFound if
  // neither file gives a snapshot.
  absl::StatusOr<LoadedSnapshot> Load() const;

  // Verifies one file (for Load() and tests).
  absl::StatusOr<DecodedSnapshot> LoadFile(const std::string& path) const;

  // The file bytes Store() writes for `snapshot` (exposed for tests).
  static std::string Encode(const CachedSnapshot& snapshot);

 private:
  std::string Path(const char* name) const { return dir_ + "/" + name; }
  std::string dir_;
  SnapshotLimits limits_;
};

}  // namespace portico::dp
