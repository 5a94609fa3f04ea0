#include "data_plane/sync/snapshot_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/base/log.h"
#include "common/snapshot/snapshot.h"
#include "portico/sync/v1/sync.pb.h"

namespace portico::dp {
namespace {

constexpr char kLog[] = "dp-cache";
// File = magic line + one serialized sync.v1.SnapshotChunk (index 0, count 1, nonce 0) that
// carries the whole compressed payload and its target VersionRef.
constexpr char kMagic[] = "PORTICO-SNAPSHOT-CACHE/1\n";

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

SnapshotCache::SnapshotCache(std::string dir, SnapshotLimits limits)
    : dir_(std::move(dir)), limits_(limits) {}

absl::Status SnapshotCache::Prepare() const {
  struct stat st;
  if (::stat(dir_.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(dir_, " is not a directory"));
    }
    return absl::OkStatus();
  }
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir", dir_);
  return absl::OkStatus();
}

std::string SnapshotCache::Encode(const CachedSnapshot& snapshot) {
  sync::v1::SnapshotChunk chunk;
  chunk.set_nonce(0);
  ToVersionRef(snapshot.version, chunk.mutable_target());
  chunk.set_encoding(snapshot.gzip ? sync::v1::SnapshotChunk::GZIP : sync::v1::SnapshotChunk::NONE);
  chunk.set_compressed_size(snapshot.compressed.size());
  chunk.set_uncompressed_size(snapshot.uncompressed_size);
  chunk.set_index(0);
  chunk.set_count(1);
  chunk.set_data(snapshot.compressed);
  std::string out = kMagic;
  chunk.AppendToString(&out);
  return out;
}

absl::Status SnapshotCache::Store(const CachedSnapshot& snapshot) const {
  const std::string tmp = Path(kTemporary), cur = Path(kCurrent), prev = Path(kPrevious);
  if (absl::Status s = WriteFileDurably(tmp, Encode(snapshot), 0600); !s.ok()) return s;
  if (::rename(cur.c_str(), prev.c_str()) != 0 && errno != ENOENT) return Errno("rename", cur);
  if (::rename(tmp.c_str(), cur.c_str()) != 0) return Errno("rename", tmp);
  return FsyncDirectory(dir_);
}

absl::StatusOr<DecodedSnapshot> SnapshotCache::LoadFile(const std::string& path) const {
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  if (!absl::StartsWith(*bytes, kMagic)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a Portico snapshot cache file"));
  }
  sync::v1::SnapshotChunk chunk;
  if (!chunk.ParseFromArray(bytes->data() + sizeof(kMagic) - 1,
                            static_cast<int>(bytes->size() - (sizeof(kMagic) - 1)))) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is truncated or corrupted"));
  }
  bytes->clear();
  if (chunk.index() != 0 || chunk.count() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has a bad header"));
  }
  SnapshotAssembler assembler(limits_);
  if (absl::Status s = assembler.Add(chunk); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  }
  if (!assembler.complete()) return absl::InvalidArgumentError(absl::StrCat(path, " is incomplete"));
  absl::StatusOr<DecodedSnapshot> decoded = assembler.Finish();
  if (!decoded.ok()) {
    return absl::Status(decoded.status().code(), absl::StrCat(path, ": ", decoded.status().message()));
  }
  return decoded;
}

absl::StatusOr<LoadedSnapshot> SnapshotCache::Load() const {
  for (const char* name : {kCurrent, kPrevious}) {
    const std::string path = Path(name);
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) continue;
    absl::StatusOr<DecodedSnapshot> decoded = LoadFile(path);
    if (!decoded.ok()) {
      PORTICO_LOG(kError, kLog, "snapshot cache file ", path, " is not usable: ",
                  decoded.status().ToString(), "; moved to ", path, ".bad");
      // Out of the rotation: the next Store() must not rename a bad cur over a good prev.
      if (::rename(path.c_str(), (path + ".bad").c_str()) != 0) {
        PORTICO_LOG(kError, kLog, "rename ", path, ": ", std::strerror(errno));
      }
      continue;
    }
    LoadedSnapshot loaded;
    loaded.decoded = *std::move(decoded);
    loaded.file = path;
    return loaded;
  }
  return absl::NotFoundError(absl::StrCat("no usable snapshot in ", dir_));
}

}  // namespace portico::dp
