#include "data_plane/conf_keys.h"

#include <string>

#include "gtest/gtest.h"

namespace portico::dp {
namespace {

absl::StatusOr<FlagValues> Translate(const std::string& name, absl::string_view value) {
  for (const ConfKey& k : DataPlaneConfKeys()) {
    if (k.key == name) return k.translate(value);
  }
  return absl::NotFoundError("no key " + name);
}

TEST(DataPlaneConfKeysTest, KongNamesMapOntoPorticoFlags) {
  EXPECT_TRUE(Translate("role", "data_plane")->empty());
  EXPECT_EQ(Translate("role", "traditional").status().message(),
            "role must be data_plane for portico-dp, not 'traditional'");
  EXPECT_TRUE(Translate("database", "off")->empty());
  EXPECT_EQ(Translate("database", "postgres").status().message(),
            "a data plane has no database: database must be off, not 'postgres'");
  EXPECT_EQ(Translate("database", std::string(200, '\xff')).status().message(),
            "a data plane has no database: database must be off, not '" + std::string(80, '?') + "...'");
  for (const char* key : {"cluster_cert", "cluster_cert_key", "cluster_ca_cert", "ssl_cert", "ssl_cert_key"}) {
    EXPECT_FALSE(Translate(key, "-----BEGIN CERTIFICATE-----MIIB").ok()) << key;
    EXPECT_TRUE(Translate(key, "/etc/portico/file.pem").ok()) << key;
  }
  EXPECT_EQ(*Translate("nginx_worker_processes", "auto"), (FlagValues{{"workers", "0"}}));
  EXPECT_EQ(*Translate("nginx_worker_processes", "4"), (FlagValues{{"workers", "4"}}));
  EXPECT_EQ(*Translate("cluster_control_plane", "cp.example:8005"), (FlagValues{{"control-plane", "cp.example:8005"}}));
  EXPECT_EQ(*Translate("cluster_control_plane", "cp-a:8005,cp-b:8005"),
            (FlagValues{{"control-plane", "cp-a:8005,cp-b:8005"}}));
  EXPECT_EQ(*Translate("cluster_cert_key", "/dp.key"), (FlagValues{{"cluster-key", "/dp.key"}}));
  EXPECT_EQ(*Translate("cluster_ca_cert", "/ca.crt"), (FlagValues{{"cluster-ca", "/ca.crt"}}));
  EXPECT_EQ(*Translate("proxy_listen", "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport"),
            (FlagValues{{"proxy-listen", "0.0.0.0:8000"}, {"proxy-ssl-listen", "0.0.0.0:8443"}}));
  EXPECT_EQ(*Translate("proxy_listen", "0.0.0.0:8000"),
            (FlagValues{{"proxy-listen", "0.0.0.0:8000"}, {"proxy-ssl-listen", "off"}}));
  EXPECT_EQ(*Translate("status_listen", "127.0.0.1:8100"), (FlagValues{{"status-listen", "127.0.0.1:8100"}}));
  EXPECT_FALSE(Translate("status_listen", "off").ok());
  EXPECT_EQ(*Translate("log_level", "emerg"), (FlagValues{{"log-level", "error"}}));
}

}  // namespace
}  // namespace portico::dp
