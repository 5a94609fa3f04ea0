#include "control_plane/conf_keys.h"

#include <string>

#include "gtest/gtest.h"

namespace portico::cp {
namespace {

const ConfKey& KeyNamed(const std::vector<ConfKey>& keys, const std::string& name) {
  for (const ConfKey& k : keys) {
    if (k.key == name) return k;
  }
  static const ConfKey kMissing{"missing", {}, [](absl::string_view) -> absl::StatusOr<FlagValues> {
                                  return absl::NotFoundError("no such key");
                                }};
  ADD_FAILURE() << "no key " << name;
  return kMissing;
}

TEST(ControlPlaneConfKeysTest, KongNamesMapOntoPorticoFlags) {
  const std::vector<ConfKey> keys = ControlPlaneConfKeys();
  EXPECT_TRUE(KeyNamed(keys, "role").translate("control_plane")->empty());
  EXPECT_EQ(KeyNamed(keys, "role").translate("data_plane").status().message(),
            "role must be control_plane for portico-cp, not 'data_plane'");
  EXPECT_EQ(*KeyNamed(keys, "cluster_cert_key").translate("/etc/portico/cp.key"),
            (FlagValues{{"cluster-key", "/etc/portico/cp.key"}}));
  EXPECT_EQ(*KeyNamed(keys, "cluster_ca_cert").translate("/ca.crt"), (FlagValues{{"cluster-ca", "/ca.crt"}}));
  EXPECT_EQ(*KeyNamed(keys, "admin_listen").translate("127.0.0.1:8001 reuseport backlog=16384, 127.0.0.1:8444 http2 ssl"),
            (FlagValues{{"admin-listen", "127.0.0.1:8001"}, {"admin-ssl-listen", "127.0.0.1:8444"}}));
  EXPECT_EQ(*KeyNamed(keys, "cluster_listen").translate("0.0.0.0:8005"), (FlagValues{{"cluster-listen", "0.0.0.0:8005"}}));
  EXPECT_FALSE(KeyNamed(keys, "cluster_listen").translate("0.0.0.0:8005 ssl").ok());
  EXPECT_EQ(*KeyNamed(keys, "nginx_admin_client_max_body_size").translate("10m"),
            (FlagValues{{"max-body-bytes", "10485760"}}));
  EXPECT_EQ(KeyNamed(keys, "nginx_admin_client_max_body_size").translate("ten").status().message(),
            "expected a size such as 10m, 512k or 1048576");
  EXPECT_EQ(KeyNamed(keys, "database").translate("postgres").status().message(),
            "portico-cp keeps its configuration in SQLite (key db, a file path), not in 'postgres': remove database");
  EXPECT_EQ(KeyNamed(keys, "database").translate("\x1b]0;x\x07").status().message(),
            "portico-cp keeps its configuration in SQLite (key db, a file path), not in '?]0;x?': remove database");
  // Files are paths, not the PEM text Kong also takes.
  for (const char* key : {"cluster_cert", "cluster_cert_key", "cluster_ca_cert", "admin_ssl_cert", "admin_ssl_cert_key"}) {
    EXPECT_FALSE(KeyNamed(keys, key).translate("-----BEGIN PRIVATE KEY-----").ok()) << key;
    EXPECT_TRUE(KeyNamed(keys, key).translate("/etc/portico/file.pem").ok()) << key;
  }
  EXPECT_TRUE(KeyNamed(keys, "cluster_mtls").translate("pki").ok());
  EXPECT_FALSE(KeyNamed(keys, "cluster_mtls").translate("shared").ok());
  EXPECT_EQ(*KeyNamed(keys, "log_level").translate("notice"), (FlagValues{{"log-level", "info"}}));
}

}  // namespace
}  // namespace portico::cp
