#pragma once
// A data plane without a control plane (Kong's DB-less mode; docs/declarative.md): the config
// comes from a declarative file (kong.yml), loaded by the same loader as POST /config
// (common/declarative) and applied through the same ApplyConfigFn as a snapshot from a CP, so the
// validator and the compiler are those of hybrid mode.
//
// Each successful load that changes the config is a new version (1, 2, ...) of an epoch made
// when the source is created; its hash is the snapshot hash the CP would compute for the same
// entities. A file that cannot be read, parsed, validated or applied changes nothing: the
// current config stays, and every error is logged.
//
// Thread-compatible: Load() is called from one thread at a time (start, then SIGHUP); stats()
// from any thread.
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "common/config/config_set.h"

namespace portico::dp {

class DeclarativeSource {
 public:
  using ApplyFn = std::function<absl::Status(std::shared_ptr<const ConfigSet>, const ConfigVersion&)>;

  struct Stats {
    uint64_t loads = 0;      // files applied (changed configs)
    uint64_t unchanged = 0;  // reloads that found the config as it was
    uint64_t failures = 0;   // reloads refused (the config was kept)
    std::string last_error;  // of the latest refused reload ("" after a good one)
  };

  DeclarativeSource(std::string path, size_t max_bytes, ApplyFn apply);

  // Reads, loads and applies the file.
  absl::Status Load();

  const std::string& path() const { return path_; }
  Stats stats() const;

 private:
  absl::Status LoadOnce();

  const std::string path_;
  const size_t max_bytes_;
  const ApplyFn apply_;
  const std::string epoch_;
  uint64_t version_ = 0;
  std::string hash_;  // of the config applied last
  std::shared_ptr<const ConfigSet> previous_;  // the basic-auth credentials applied last (their hashes)

  mutable std::mutex mu_;
  Stats stats_;  // guarded by mu_
};

}  // namespace portico::dp
