#include "data_plane/conf_keys.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace portico::dp {

std::vector<ConfKey> DataPlaneConfKeys() {
  std::vector<ConfKey> keys = {
      KongRoleKey("data_plane", "portico-dp"),
      KongListenKey("proxy_listen", "proxy-listen", "proxy-ssl-listen"),
      KongListenKey("status_listen", "status-listen", ""),
      RenamedKey("cluster_control_plane", "control-plane"),
      RenamedKey("incremental_sync", "incremental-sync"),  // Kong 3.10's name for delta sync
      // Files: a path, never the PEM text Kong also takes (PathKey).
      PathKey("cluster_cert", "cluster-cert"),
      PathKey("cluster_key", "cluster-key"),
      PathKey("cluster_cert_key", "cluster-key"),
      PathKey("cluster_ca", "cluster-ca"),
      PathKey("cluster_ca_cert", "cluster-ca"),
      PathKey("ssl_cert", "ssl-cert"),
      PathKey("ssl_cert_key", "ssl-cert-key"),
      KongClusterMtlsKey(),
      KongLogLevelKey(),
  };
  // Kong's proxy_access_log: a path (or off). Kong's optional nginx log format name after it is
  // refused: the format is always Kong's log serializer JSON.
  keys.push_back({"proxy_access_log", {"access-log"}, [](absl::string_view value) -> absl::StatusOr<FlagValues> {
                    if (value.find_first_of(" \t") != absl::string_view::npos) {
                      return absl::InvalidArgumentError(
                          "proxy_access_log takes a path, stdout or off; Portico writes Kong's log serializer JSON "
                          "and has no nginx log formats");
                    }
                    return FlagValues{{"access-log", std::string(value)}};
                  }});
  // A Kong data plane has no database; so does every portico-dp.
  keys.push_back({"database", {}, [](absl::string_view value) -> absl::StatusOr<FlagValues> {
                    if (value == "off") return FlagValues{};
                    return absl::InvalidArgumentError(
                        absl::StrCat("a data plane has no database: database must be off, not '", PrintableExcerpt(value), "'"));
                  }});
  // auto: one worker per core, which --workers 0 means.
  keys.push_back({"nginx_worker_processes", {"workers"}, [](absl::string_view value) -> absl::StatusOr<FlagValues> {
                    return FlagValues{{"workers", value == "auto" ? "0" : std::string(value)}};
                  }});
  return keys;
}

}  // namespace portico::dp
