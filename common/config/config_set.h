#pragma once
// The whole configuration as plain entity lists: what the CP reads from its store in one
// transaction, what a snapshot carries, and what the DP compiles into its runtime config.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/config/corrupt_row.h"
#include "portico/config/v1/config.pb.h"

namespace portico {

struct ConfigSet {
  std::vector<config::v1::Service> services;  // sorted by id
  std::vector<config::v1::Route> routes;      // sorted by id
  std::vector<config::v1::Plugin> plugins;    // sorted by id
  std::vector<config::v1::Consumer> consumers;  // sorted by id
  // Key-auth credentials: the CP's (with keys; never exported) and what data planes receive
  // (digests, made by the snapshot export). A config holds one or the other.
  std::vector<config::v1::KeyAuthCredential> keyauth_credentials;
  std::vector<config::v1::KeyAuthDigest> keyauth_digests;
  // Basic-auth credentials (passwords as salted hashes, on the CP and in snapshots) and ACL groups.
  std::vector<config::v1::BasicAuthCredential> basicauth_credentials;  // sorted by id
  std::vector<config::v1::Acl> acls;                                   // sorted by id
  std::vector<config::v1::JwtSecret> jwt_secrets;  // sent to data planes as they are
  std::vector<config::v1::Upstream> upstreams;     // sorted by id
  std::vector<config::v1::Target> targets;         // sorted by id
  // TLS material (docs/tls.md): certificates with their keys (data planes serve them), the names
  // they are served for, and CA certificates services verify upstreams against.
  std::vector<config::v1::Certificate> certificates;      // sorted by id
  std::vector<config::v1::Sni> snis;                      // sorted by id
  std::vector<config::v1::CaCertificate> ca_certificates; // sorted by id
};

// Identity of one config version (SYNC-PROTOCOL.md §5.3).
struct ConfigVersion {
  std::string epoch;   // 16 raw bytes; empty = no config
  uint64_t version = 0;
  std::string hash;    // 32 raw bytes (SHA-256); empty when not computed yet

  bool empty() const { return epoch.empty(); }
  bool operator==(const ConfigVersion&) const = default;
};

}  // namespace portico

namespace portico {

// What the CP store returns from one read transaction: the version row and every entity.
// `version.hash` is empty here; the snapshot codec computes it over the exact bytes it sends.
// Rows that cannot be parsed are not in `config` but listed in `corrupt`: a StoredConfig with a
// corrupt row is NOT the config `version` names and must never be published.
struct StoredConfig {
  ConfigVersion version;
  ConfigSet config;
  std::vector<CorruptRow> corrupt;  // rows of each kind in registry order, each by id
};

// One row changed since a version (the store's change feed): its entity now, or null when it no
// longer exists.
class EntityDescriptor;
struct ConfigChange {
  const EntityDescriptor* kind = nullptr;  // an exported kind
  std::string id;
  std::unique_ptr<google::protobuf::Message> entity;  // null: deleted
};

// What the store's change feed returns for "what changed since version V" (one read transaction).
struct StoredChanges {
  ConfigVersion version;  // epoch and version, read with the changes (hash empty)
  // False: the feed does not reach back to V (pruned, never logged, V > version, a whole-config
  // replace in between, too many changes): read the whole config instead. `changes` and
  // `corrupt` are empty then.
  bool covered = false;
  // Every (kind, id) of an exported kind written or deleted by a transaction that made a version
  // in (V, version], once each, cascaded deletes included; kinds in registry order, ids sorted.
  std::vector<ConfigChange> changes;
  std::vector<CorruptRow> corrupt;  // changed rows whose entity does not parse (not in `changes`)
};

}  // namespace portico
