#pragma once
// The snapshot a data plane holds in delta_decode_fuzz (and that delta_seeds writes deltas
// against): a few resources of several known kinds and of one kind this build does not know.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/base/sha256.h"
#include "common/snapshot/snapshot.h"

namespace portico::fuzz {

inline ConfigSet DeltaHeldConfig() {
  ConfigSet c;
  for (int i = 1; i <= 3; ++i) {
    const std::string n = std::to_string(i);
    config::v1::Service& s = c.services.emplace_back();
    s.set_id("s" + n);
    s.set_name("svc-" + n);
    s.set_protocol("http");
    s.set_host("host" + n + ".example");
    s.set_port(80);
    s.set_enabled(true);
    config::v1::Route& r = c.routes.emplace_back();
    r.set_id("r" + n);
    r.set_service_id("s" + n);
    r.add_protocols("http");
    r.mutable_paths()->add_values("/p" + n);
    config::v1::Consumer& k = c.consumers.emplace_back();
    k.set_id("c" + n);
    k.set_username("user" + n);
  }
  config::v1::Upstream& u = c.upstreams.emplace_back();
  u.set_id("u1");
  u.set_name("up1");
  config::v1::Target& t = c.targets.emplace_back();
  t.set_id("t1");
  t.set_upstream_id("u1");
  t.set_target("10.0.0.1:8000");
  t.set_weight(100);
  return c;
}

inline std::string DeltaSha256(absl::string_view data) {
  uint8_t digest[Sha256::kDigestBytes];
  Sha256 sha;
  sha.Update(data);
  sha.Final(digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// The held resources: DeltaHeldConfig's plus "zzz_future"/"z1" (a kind from a newer CP).
inline ResourceIndex DeltaHeldResources() {
  const FakeClock clock(1);
  auto built = BuildSnapshotOfExported(DeltaHeldConfig(), ConfigVersion{std::string(16, 'E'), 5, ""}, clock);
  ResourceIndex index = *(*built)->resources;
  const std::string body = "opaque future body";
  index.push_back(ResourceEntry{"zzz_future", "z1", DeltaSha256(body), std::make_shared<const std::string>(body)});
  return index;
}

// The version it is held at.
inline ConfigVersion DeltaHeldVersion() {
  return ConfigVersion{std::string(16, 'E'), 5, ConfigHashOf(DeltaHeldResources())};
}

}  // namespace portico::fuzz
