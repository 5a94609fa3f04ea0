#include "common/base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace portico {
namespace {

absl::Status ErrnoStatus(absl::string_view what, const std::string& path, int err) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  return ReadFileToString(path, std::numeric_limits<size_t>::max());
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": no such file"));
    if (err == EACCES) return absl::PermissionDeniedError(absl::StrCat("cannot open ", path, ": permission denied"));
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(err)));
  }
  std::string out;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    if (static_cast<uint64_t>(st.st_size) > max_bytes) {
      ::close(fd);
      return absl::ResourceExhaustedError(
          absl::StrCat(path, " is ", st.st_size, " bytes, over the limit of ", max_bytes));
    }
    out.reserve(static_cast<size_t>(st.st_size));
  }
  char buffer[64 * 1024];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot read ", path, ": ", std::strerror(err)));
    }
    if (n == 0) break;
    if (static_cast<size_t>(n) > max_bytes - out.size()) {  // not a regular file, or it grew
      ::close(fd);
      return absl::ResourceExhaustedError(absl::StrCat(path, " is over the limit of ", max_bytes, " bytes"));
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status WriteFileDurably(const std::string& path, absl::string_view data, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  auto fail = [fd, &path](absl::string_view what) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(what, path, err);
  };
  if (::fchmod(fd, mode) != 0) return fail("chmod");  // the file may have existed, wider
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write");
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) return ErrnoStatus("close", path, errno);
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view data, mode_t mode) {
  const std::string temporary = path + ".tmp";
  if (absl::Status s = WriteFileDurably(temporary, data, mode); !s.ok()) {
    ::unlink(temporary.c_str());
    return s;
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temporary.c_str());
    return ErrnoStatus("rename", temporary, err);
  }
  return FsyncDirectory(DirectoryOf(path));
}

absl::Status FsyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus("fsync", dir, err);
}

absl::Status EnsureDirectories(const std::string& dir, mode_t mode) {
  if (dir.empty()) return absl::InvalidArgumentError("empty folder path");
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(dir, " is not a folder"));
    return absl::OkStatus();
  }
  const size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    if (absl::Status s = EnsureDirectories(dir.substr(0, slash), mode); !s.ok()) return s;
  }
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) return ErrnoStatus("create folder", dir, errno);
  return absl::OkStatus();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace portico
