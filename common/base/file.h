#pragma once
// Whole-file reads and durable writes, shared by the certificate tooling and the DP snapshot cache.
#include <sys/types.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace portico {

// NotFound / PermissionDenied / Internal with the path in the message.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);
// The same, refusing (ResourceExhausted, before reading more than `max_bytes`) a longer file,
// device or pipe.
absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes);

// Creates or truncates `path` with permission bits `mode` (also applied when the file existed),
// writes `data`, fsyncs and closes it. Not atomic: a crash can leave a partial file.
absl::Status WriteFileDurably(const std::string& path, absl::string_view data, mode_t mode);

// Writes `data` to `path` + ".tmp" durably, renames it over `path` and fsyncs the directory, so
// `path` holds either its old content or all of `data`, never a mix.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view data, mode_t mode);

// fsync of a directory, making renames and creations in it durable.
absl::Status FsyncDirectory(const std::string& dir);

// Creates `dir` and any missing parent, each new folder with permission bits `mode` (existing
// folders are left as they are). FailedPrecondition if a path component is not a folder;
// PermissionDenied / Internal with the folder that could not be made.
absl::Status EnsureDirectories(const std::string& dir, mode_t mode);

// True if something exists at `path` (any file type; a dangling symlink counts).
bool PathExists(const std::string& path);

}  // namespace portico
