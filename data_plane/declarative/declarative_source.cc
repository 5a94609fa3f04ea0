#include "data_plane/declarative/declarative_source.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/base/log.h"
#include "common/base/memory.h"
#include "common/base/uuid.h"
#include "common/declarative/declarative.h"
#include "common/snapshot/snapshot.h"

namespace portico::dp {

DeclarativeSource::DeclarativeSource(std::string path, size_t max_bytes, ApplyFn apply)
    : path_(std::move(path)), max_bytes_(max_bytes), apply_(std::move(apply)), epoch_(RandomBytes(16)) {}

absl::Status DeclarativeSource::Load() {
  absl::Status status = LoadOnce();
  ReleaseFreedMemory();  // the text, the document and the loaded entities are freed
  return status;
}

absl::Status DeclarativeSource::LoadOnce() {
  auto refuse = [this](absl::Status status) {
    PORTICO_LOG(kError, "dp", "declarative config ", path_, " refused, ",
                version_ == 0 ? "nothing is served" : absl::StrCat("still serving version ", version_), ": ",
                status.message());
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.failures;
    stats_.last_error = std::string(status.message());
    return status;
  };
  absl::StatusOr<std::string> text = ReadFileToString(path_, max_bytes_);
  if (!text.ok()) return refuse(absl::FailedPreconditionError(absl::StrCat("cannot read it: ", text.status().message())));
  DeclarativeOptions options;
  options.max_bytes = max_bytes_;
  options.previous = previous_.get();
  DeclarativeErrors errors;
  absl::StatusOr<DeclarativeConfig> loaded = LoadDeclarativeText(*text, options, &errors);
  if (!loaded.ok()) {
    if (!errors.syntax.empty()) return refuse(absl::InvalidArgumentError(errors.syntax));
    for (const std::string& line : errors.lines) PORTICO_LOG(kError, "dp", "declarative config ", path_, ": ", line);
    return refuse(absl::InvalidArgumentError(
        absl::StrCat(errors.lines.size(), " error", errors.lines.size() == 1 ? "" : "s", " (each logged above); first: ",
                     errors.lines.empty() ? "" : errors.lines[0])));
  }
  const std::string hash = ComputeConfigHash(loaded->config, epoch_);
  if (version_ != 0 && hash == hash_) {
    PORTICO_LOG(kInfo, "dp", "declarative config ", path_, " unchanged (version ", version_, ")");
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.unchanged;
    stats_.last_error.clear();
    return absl::OkStatus();
  }
  // What the next load needs of this one: the basic-auth hashes (not a copy of the whole config).
  auto previous = std::make_shared<ConfigSet>();
  previous->basicauth_credentials = loaded->config.basicauth_credentials;
  ConfigVersion version{epoch_, version_ + 1, hash};
  auto exported = std::make_shared<const ConfigSet>(ExportableConfig(std::move(loaded->config), epoch_));
  if (absl::Status s = apply_(std::move(exported), version); !s.ok()) return refuse(s);
  version_ = version.version;
  hash_ = hash;
  previous_ = std::move(previous);
  PORTICO_LOG(kInfo, "dp", "declarative config ", path_, " applied as version ", version_, " (",
              loaded->entity_count(), " entities, hash ", ToHex(hash).substr(0, 16), ")");
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.loads;
  stats_.last_error.clear();
  return absl::OkStatus();
}

DeclarativeSource::Stats DeclarativeSource::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace portico::dp
