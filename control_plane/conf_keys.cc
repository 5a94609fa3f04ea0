#include "control_plane/conf_keys.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace portico::cp {

std::vector<ConfKey> ControlPlaneConfKeys() {
  std::vector<ConfKey> keys = {
      KongRoleKey("control_plane", "portico-cp"),
      KongListenKey("admin_listen", "admin-listen", "admin-ssl-listen"),
      KongListenKey("cluster_listen", "cluster-listen", ""),
      // Files: a path, never the PEM text Kong also takes (PathKey).
      PathKey("cluster_cert", "cluster-cert"),
      PathKey("cluster_key", "cluster-key"),
      PathKey("cluster_cert_key", "cluster-key"),
      PathKey("cluster_ca", "cluster-ca"),
      PathKey("cluster_ca_cert", "cluster-ca"),
      PathKey("admin_ssl_cert", "admin-ssl-cert"),
      PathKey("admin_ssl_cert_key", "admin-ssl-cert-key"),
      PathKey("admin_client_ca", "admin-client-ca"),
      KongClusterMtlsKey(),
      KongLogLevelKey(),
  };
  keys.push_back({"database", {}, [](absl::string_view value) -> absl::StatusOr<FlagValues> {
                    return absl::InvalidArgumentError(absl::StrCat(
                        "portico-cp keeps its configuration in SQLite (key db, a file path), not in '", PrintableExcerpt(value),
                        "': remove database"));
                  }});
  keys.push_back({"nginx_admin_client_max_body_size", {"max-body-bytes"},
                  [](absl::string_view value) -> absl::StatusOr<FlagValues> {
                    uint64_t bytes = 0;
                    if (!ParseNginxSize(value, &bytes)) {
                      return absl::InvalidArgumentError("expected a size such as 10m, 512k or 1048576");
                    }
                    return FlagValues{{"max-body-bytes", std::to_string(bytes)}};
                  }});
  return keys;
}

}  // namespace portico::cp
