// Writes the seed corpus of delta_decode_fuzz: deltas from the snapshot the target holds
// (tests/fuzz/delta_held.h) made by BuildDeltaSnapshot, each in both input modes (byte 0 = 0:
// gzip stream; byte 0 = 1: uncompressed ConfigDelta).
//   delta_seeds OUT_DIR
// Rerun it when proto/, the snapshot format or delta_held.h changes (the seeds are committed in
// tests/fuzz/corpus/delta_decode_fuzz/).
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/snapshot/snapshot.h"
#include "portico/sync/v1/sync.pb.h"
#include "tests/fuzz/delta_held.h"

namespace {

using portico::ChangeList;
using portico::ResourceChange;

ResourceChange Upsert(const std::string& kind, const std::string& id, const std::string& body) {
  return ResourceChange{kind, id, std::make_shared<const std::string>(body), portico::fuzz::DeltaSha256(body), true, ""};
}
ResourceChange Delete(const std::string& kind, const std::string& id) {
  return ResourceChange{kind, id, nullptr, "", true, ""};
}

bool Write(const std::string& path, char mode, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.put(mode);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const portico::ResourceIndex held = portico::fuzz::DeltaHeldResources();
  const portico::ConfigVersion base = portico::fuzz::DeltaHeldVersion();
  portico::config::v1::Service s2;
  s2.set_id("s2");
  s2.set_name("svc-2");
  s2.set_protocol("https");
  s2.set_host("moved.example");
  s2.set_port(443);
  s2.set_enabled(true);
  portico::config::v1::Consumer c9;
  c9.set_id("c9");
  c9.set_username("new");
  portico::config::v1::Target t2;
  t2.set_id("t2");
  t2.set_upstream_id("u1");
  t2.set_target("10.0.0.2:8000");
  t2.set_weight(50);

  struct Seed {
    const char* name;
    ChangeList changes;
  };
  std::vector<Seed> seeds = {
      {"empty", {}},
      {"update", {Upsert("services", "s2", s2.SerializeAsString())}},
      {"mixed",
       {Upsert("consumers", "c9", c9.SerializeAsString()), Delete("routes", "r1"),
        Upsert("services", "s2", s2.SerializeAsString()), Upsert("targets", "t2", t2.SerializeAsString()),
        Delete("zzz_future", "z1")}},
      {"unknown", {Upsert("aaa_new", "a1", "opaque"), Upsert("zzz_future", "z1", "changed body")}},
  };
  ChangeList all;
  for (const portico::ResourceEntry& e : held) all.push_back(Delete(e.kind, e.id));
  seeds.push_back({"delete_all", all});

  const portico::FakeClock clock(1);
  int written = 0;
  for (const Seed& seed : seeds) {
    // The target: the held resources with the changes (its hash is all BuildDeltaSnapshot needs
    // besides the version; the fuzz target announces the hash of its own merge).
    portico::BuiltSnapshot target;
    target.version = portico::ConfigVersion{base.epoch, base.version + 1, ""};
    portico::SnapshotBuildOptions gzipped;  // the .gz seeds are gzip streams, however small
    gzipped.max_plain_delta_bytes = 0;
    auto delta = portico::BuildDeltaSnapshot(target, base, seed.changes, clock, gzipped);
    if (!delta.ok()) {
      std::fprintf(stderr, "%s: %s\n", seed.name, delta.status().ToString().c_str());
      return 1;
    }
    portico::sync::v1::ConfigDelta raw;
    portico::ToVersionRef(base, raw.mutable_base());
    portico::ToVersionRef(target.version, raw.mutable_ref());
    for (const ResourceChange& c : seed.changes) {
      auto* out = raw.add_changes();
      out->set_kind(c.kind);
      out->set_id(c.id);
      if (c.body != nullptr) {
        out->set_body(*c.body);
      } else {
        out->set_deleted(true);
      }
    }
    if (!Write(dir + "/" + seed.name + ".gz.seed", 0, (*delta)->compressed) ||
        !Write(dir + "/" + seed.name + ".raw.seed", 1, raw.SerializeAsString())) {
      std::fprintf(stderr, "cannot write to %s\n", dir.c_str());
      return 1;
    }
    written += 2;
  }
  std::printf("%d seeds written to %s\n", written, dir.c_str());
  return 0;
}
