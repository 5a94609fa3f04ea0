#include "common/snapshot/snapshot.h"

#include <zlib.h>

#include "common/base/uuid.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "gtest/gtest.h"
#include "portico/sync/v1/sync.pb.h"

namespace portico {
namespace {

using config::v1::Route;
using config::v1::Service;

Service MakeService(const std::string& id, const std::string& host, bool enabled = true) {
  Service s;
  s.set_id(id);
  s.set_name("svc-" + id);
  s.set_protocol("http");
  s.set_host(host);
  s.set_port(80);
  s.set_enabled(enabled);
  return s;
}

Route MakeRoute(const std::string& id, const std::string& service_id, const std::string& path) {
  Route r;
  r.set_id(id);
  if (!service_id.empty()) r.set_service_id(service_id);
  r.add_protocols("http");
  r.mutable_paths()->add_values(path);
  return r;
}

StoredConfig MakeStored(uint64_t version = 7) {
  StoredConfig stored;
  stored.version.epoch = std::string(16, '\x42');
  stored.version.version = version;
  stored.config.services = {MakeService("s1", "a.example"), MakeService("s2", "b.example")};
  stored.config.routes = {MakeRoute("r1", "s1", "/a"), MakeRoute("r2", "s2", "/b"),
                          MakeRoute("r3", "", "/none")};
  return stored;
}

std::vector<sync::v1::SnapshotChunk> ChunksOf(const BuiltSnapshot& snap, uint64_t nonce) {
  std::vector<sync::v1::SnapshotChunk> out(snap.chunk_count());
  for (size_t i = 0; i < snap.chunk_count(); ++i) FillSnapshotChunk(snap, i, nonce, &out[i]);
  return out;
}

std::string GzipForTest(const std::string& input) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, input.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  z.avail_in = static_cast<uInt>(input.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

TEST(SnapshotTest, RoundTripThroughManyChunks) {
  FakeClock clock(1234);
  StoredConfig stored = MakeStored();
  SnapshotBuildOptions options;
  options.chunk_bytes = 16;  // force many chunks
  auto built = BuildSnapshot(stored, clock, options);
  ASSERT_TRUE(built.ok()) << built.status();
  const BuiltSnapshot& snap = **built;
  EXPECT_GT(snap.chunk_count(), 3u);
  EXPECT_EQ(snap.built_at, 1234);
  EXPECT_EQ(snap.version.epoch, stored.version.epoch);
  EXPECT_EQ(snap.version.version, 7u);
  EXPECT_EQ(snap.version.hash.size(), 32u);
  EXPECT_EQ(snap.service_count, 2u);
  EXPECT_EQ(snap.route_count, 3u);

  SnapshotAssembler assembler;
  std::vector<sync::v1::SnapshotChunk> chunks = ChunksOf(snap, 5);
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_FALSE(assembler.complete());
    ASSERT_TRUE(assembler.Add(chunks[i]).ok()) << i;
  }
  ASSERT_TRUE(assembler.complete());
  EXPECT_EQ(assembler.nonce(), 5u);
  auto decoded = assembler.Finish();
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->version, snap.version);
  ASSERT_EQ(decoded->config->services.size(), 2u);
  ASSERT_EQ(decoded->config->routes.size(), 3u);
  EXPECT_EQ(decoded->config->services[0].SerializeAsString(),
            stored.config.services[0].SerializeAsString());
  EXPECT_EQ(decoded->config->services[1].host(), "b.example");
  EXPECT_EQ(decoded->config->routes[2].id(), "r3");
  EXPECT_EQ(decoded->config->routes[0].paths().values(0), "/a");
  EXPECT_FALSE(assembler.complete());
}

TEST(SnapshotTest, HashIsStableAndContentSensitive) {
  FakeClock clock;
  StoredConfig a = MakeStored();
  auto first = BuildSnapshot(a, clock);
  auto second = BuildSnapshot(a, clock);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ((*first)->version.hash, (*second)->version.hash);
  EXPECT_EQ((*first)->version.hash, ComputeConfigHash(a.config));

  // Input order does not matter (resources are sorted), the version number is not content.
  StoredConfig reordered = a;
  std::swap(reordered.config.services[0], reordered.config.services[1]);
  reordered.version.version = 8;
  EXPECT_EQ((*BuildSnapshot(reordered, clock))->version.hash, (*first)->version.hash);

  StoredConfig host_changed = a;
  host_changed.config.services[1].set_host("c.example");
  StoredConfig route_added = a;
  route_added.config.routes.push_back(MakeRoute("r4", "s1", "/x"));
  StoredConfig id_changed = a;
  id_changed.config.routes[2].set_id("r9");
  for (const StoredConfig* other : {&host_changed, &route_added, &id_changed}) {
    EXPECT_NE(ComputeConfigHash(other->config), (*first)->version.hash);
  }
}

// Several CPs on one store must build the same bytes for a version (a DP moving between them is
// then told it is up to date). Protobuf orders a map by a seed drawn per map instance, so a route's
// header map is the case that shows whether bodies are serialized deterministically.
TEST(SnapshotTest, MapsSerializeTheSameWhateverTheInstanceOrInsertionOrder) {
  FakeClock clock;
  StoredConfig a = MakeStored();
  auto* headers = a.config.routes[0].mutable_headers()->mutable_values();
  for (int i = 0; i < 16; ++i) (*headers)["x-h" + std::to_string(i)].add_values("v" + std::to_string(i));
  auto first = BuildSnapshot(a, clock);
  ASSERT_TRUE(first.ok());
  for (int copy = 0; copy < 8; ++copy) {
    StoredConfig other = a;  // new map instances
    if (copy % 2 == 1) {     // and another insertion order
      other.config.routes[0].mutable_headers()->clear_values();
      auto* h = other.config.routes[0].mutable_headers()->mutable_values();
      for (int i = 15; i >= 0; --i) (*h)["x-h" + std::to_string(i)].add_values("v" + std::to_string(i));
    }
    auto built = BuildSnapshot(other, clock);
    ASSERT_TRUE(built.ok());
    EXPECT_EQ(ToHex((*built)->version.hash), ToHex((*first)->version.hash)) << "copy " << copy;
    EXPECT_EQ(ComputeConfigHash(other.config), (*first)->version.hash) << "copy " << copy;
  }
}

TEST(SnapshotTest, DisabledServiceAndItsRoutesAreNotExported) {
  FakeClock clock;
  StoredConfig stored = MakeStored();
  stored.config.services[1].set_enabled(false);  // s2, used by r2
  ConfigSet exported = ExportableConfig(stored.config);
  ASSERT_EQ(exported.services.size(), 1u);
  EXPECT_EQ(exported.services[0].id(), "s1");
  ASSERT_EQ(exported.routes.size(), 2u);
  EXPECT_EQ(exported.routes[0].id(), "r1");
  EXPECT_EQ(exported.routes[1].id(), "r3");
  // The moving overload exports the same entities.
  ConfigSet moved = ExportableConfig(ConfigSet(stored.config));
  ASSERT_EQ(moved.services.size(), 1u);
  ASSERT_EQ(moved.routes.size(), 2u);
  EXPECT_EQ(moved.routes[1].SerializeAsString(), exported.routes[1].SerializeAsString());

  auto built = BuildSnapshot(stored, clock);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ((*built)->service_count, 1u);
  EXPECT_EQ((*built)->route_count, 2u);
  SnapshotAssembler assembler;
  for (const auto& c : ChunksOf(**built, 1)) ASSERT_TRUE(assembler.Add(c).ok());
  auto decoded = assembler.Finish();
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->config->services.size(), 1u);
  EXPECT_EQ(decoded->config->routes.size(), 2u);
}

TEST(SnapshotTest, FlippedByteIsDetected) {
  FakeClock clock;
  auto built = BuildSnapshot(MakeStored(), clock);
  ASSERT_TRUE(built.ok());
  const BuiltSnapshot& snap = **built;
  int detected = 0;
  // Flip each byte position in turn (the gzip CRC or the hash must catch every one).
  // Bytes 4..9 of the gzip header (MTIME, XFL, OS) carry no content and no CRC: skipped.
  for (size_t pos = 0; pos < snap.compressed.size(); ++pos) {
    if (pos >= 4 && pos <= 9) continue;
    std::string corrupt = snap.compressed;
    corrupt[pos] = static_cast<char>(corrupt[pos] ^ 0x5a);
    auto decoded = DecodeSnapshot(corrupt, true, snap.uncompressed_size, snap.version);
    ASSERT_FALSE(decoded.ok()) << "undetected flip at " << pos;
    int code = NackCodeFor(decoded.status());
    EXPECT_TRUE(code == sync::v1::Nack::DECODE || code == sync::v1::Nack::HASH_MISMATCH ||
                code == sync::v1::Nack::TOO_LARGE)
        << decoded.status();
    ++detected;
  }
  EXPECT_EQ(detected, static_cast<int>(snap.compressed.size()) - 6);
}

TEST(SnapshotTest, BodiesThatDoNotMatchTheTargetHashAreRejected) {
  FakeClock clock;
  StoredConfig original = MakeStored();
  StoredConfig tampered = original;
  tampered.config.services[0].set_host("evil.example");
  auto good = BuildSnapshot(original, clock);
  auto bad = BuildSnapshot(tampered, clock);
  ASSERT_TRUE(good.ok() && bad.ok());
  // Valid gzip and protobuf, same epoch/version, but announced with the original hash.
  auto decoded = DecodeSnapshot((*bad)->compressed, true, (*bad)->uncompressed_size, (*good)->version);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(NackCodeFor(decoded.status()), sync::v1::Nack::HASH_MISMATCH);
}

TEST(SnapshotTest, ChunkGapAndNonceChangeAreRejected) {
  FakeClock clock;
  SnapshotBuildOptions options;
  options.chunk_bytes = 16;
  auto built = BuildSnapshot(MakeStored(), clock, options);
  ASSERT_TRUE(built.ok());
  std::vector<sync::v1::SnapshotChunk> chunks = ChunksOf(**built, 9);
  ASSERT_GE(chunks.size(), 3u);

  SnapshotAssembler gap;
  ASSERT_TRUE(gap.Add(chunks[0]).ok());
  absl::Status s = gap.Add(chunks[2]);
  EXPECT_EQ(NackCodeFor(s), sync::v1::Nack::DECODE) << s;
  EXPECT_EQ(gap.nonce(), 9u);
  EXPECT_FALSE(gap.complete());

  SnapshotAssembler nonce_change;
  ASSERT_TRUE(nonce_change.Add(chunks[0]).ok());
  sync::v1::SnapshotChunk other = chunks[1];
  other.set_nonce(10);
  EXPECT_EQ(NackCodeFor(nonce_change.Add(other)), sync::v1::Nack::DECODE);

  SnapshotAssembler orphan;
  EXPECT_EQ(NackCodeFor(orphan.Add(chunks[1])), sync::v1::Nack::DECODE);

  // After an error a fresh chunk 0 starts over and succeeds.
  for (const auto& c : chunks) ASSERT_TRUE(gap.Add(c).ok());
  EXPECT_TRUE(gap.Finish().ok());
}

// The number of resources is capped before the payload is parsed (each one costs a few hundred
// bytes parsed, however small): a hostile payload of tiny resources is refused as TOO_LARGE.
TEST(SnapshotTest, ResourceCountIsCappedBeforeParsing) {
  FakeClock clock(1234);
  auto built = BuildSnapshot(MakeStored(), clock);  // 5 resources
  ASSERT_TRUE(built.ok()) << built.status();
  const BuiltSnapshot& snap = **built;
  SnapshotLimits limits;
  limits.max_resources = 5;
  EXPECT_TRUE(DecodeSnapshot(snap.compressed, true, snap.uncompressed_size, snap.version, limits).ok());
  limits.max_resources = 4;
  auto refused = DecodeSnapshot(snap.compressed, true, snap.uncompressed_size, snap.version, limits);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_EQ(NackCodeFor(refused.status()), sync::v1::Nack::TOO_LARGE);
}

// Fields count too, unknown ones included (a parse keeps them): a payload of tiny unknown fields,
// at the top level or inside its resources, is refused before it is parsed.
TEST(SnapshotTest, UnknownFieldsCountAgainstTheResourceCap) {
  auto encode = [](int top_level_unknown, int unknown_per_resource) {
    std::string raw;
    google::protobuf::io::StringOutputStream stream(&raw);
    google::protobuf::io::CodedOutputStream out(&stream);
    for (int i = 0; i < top_level_unknown; ++i) {
      out.WriteTag((15 << 3) | 0);  // field 15, varint
      out.WriteVarint32(1);
    }
    for (int r = 0; r < 3; ++r) {
      std::string resource;
      {
        google::protobuf::io::StringOutputStream inner_stream(&resource);
        google::protobuf::io::CodedOutputStream inner(&inner_stream);
        for (int i = 0; i < unknown_per_resource; ++i) {
          inner.WriteTag((9 << 3) | 0);
          inner.WriteVarint32(1);
        }
      }
      out.WriteTag((2 << 3) | 2);  // ConfigPayload.resources
      out.WriteVarint32(static_cast<uint32_t>(resource.size()));
      out.WriteString(resource);
    }
    out.Trim();
    return raw;
  };
  SnapshotLimits limits;
  limits.max_resources = 10;  // at most 10 * 8 + 16 = 96 fields
  const ConfigVersion target{std::string(16, 'e'), 1, std::string(32, 'h')};
  auto code_of = [&](const std::string& raw) {
    return DecodeSnapshot(raw, false, raw.size(), target, limits).status().code();
  };
  // Within the cap: decoded (and refused later for what it is, not for its size).
  EXPECT_NE(code_of(encode(10, 10)), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(code_of(encode(200, 0)), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(code_of(encode(0, 40)), absl::StatusCode::kResourceExhausted);
}

TEST(SnapshotTest, ZipBombIsCapped) {
  const std::string zeros(64u << 20, '\0');
  const std::string bomb = GzipForTest(zeros);
  ASSERT_LT(bomb.size(), 1u << 20);
  ConfigVersion target{std::string(16, 'e'), 1, std::string(32, 'h')};

  // Lying about the size: output is capped at the announced size.
  auto lied = DecodeSnapshot(bomb, true, 1000, target);
  EXPECT_EQ(lied.status().code(), absl::StatusCode::kResourceExhausted) << lied.status();
  // Honest size, but the ratio cap (100:1 + 1 MiB) rejects it before inflating.
  auto ratio = DecodeSnapshot(bomb, true, zeros.size(), target);
  EXPECT_EQ(ratio.status().code(), absl::StatusCode::kResourceExhausted) << ratio.status();
  // Over max_snapshot_bytes.
  SnapshotLimits small;
  small.max_snapshot_bytes = 1u << 20;
  auto too_big = DecodeSnapshot(bomb, true, zeros.size(), target, small);
  EXPECT_EQ(NackCodeFor(too_big.status()), sync::v1::Nack::TOO_LARGE);

  // The assembler refuses announced sizes over the cap at chunk 0.
  sync::v1::SnapshotChunk chunk;
  chunk.set_nonce(1);
  chunk.set_encoding(sync::v1::SnapshotChunk::GZIP);
  chunk.set_compressed_size(bomb.size());
  chunk.set_uncompressed_size(zeros.size());
  chunk.set_count(1);
  chunk.set_data(bomb);
  SnapshotAssembler assembler(small);
  EXPECT_EQ(assembler.Add(chunk).code(), absl::StatusCode::kResourceExhausted);
}

TEST(SnapshotTest, DuplicateIdsAreRefused) {
  FakeClock clock;
  StoredConfig stored = MakeStored();
  stored.config.routes.push_back(MakeRoute("r1", "s1", "/dup"));
  EXPECT_FALSE(BuildSnapshot(stored, clock).ok());
}

}  // namespace
}  // namespace portico

namespace portico {
namespace {

// Gunzips a built snapshot's payload (all chunks) for inspection.
std::string PayloadOf(const BuiltSnapshot& snap) {
  std::string compressed;
  for (size_t i = 0; i < snap.chunk_count(); ++i) compressed += std::string(snap.chunk_data(i));
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(compressed.data());
  z.avail_in = static_cast<uInt>(compressed.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

TEST(SnapshotTest, KeyAuthKeysLeaveTheControlPlaneOnlyAsSaltedDigests) {
  FakeClock clock(1);
  StoredConfig stored = MakeStored();
  config::v1::Consumer alice;
  alice.set_id("c1");
  alice.set_username("alice");
  stored.config.consumers = {alice};
  config::v1::KeyAuthCredential credential;
  credential.set_id("k1");
  credential.set_consumer_id("c1");
  credential.set_key("super-secret-key-42");
  stored.config.keyauth_credentials = {credential};

  auto built = BuildSnapshot(stored, clock);
  ASSERT_TRUE(built.ok()) << built.status();
  const std::string payload = PayloadOf(**built);
  EXPECT_EQ(payload.find("super-secret-key-42"), std::string::npos) << "the key itself is never sent";
  EXPECT_NE(payload.find("alice"), std::string::npos);

  SnapshotAssembler assembler;
  for (const sync::v1::SnapshotChunk& chunk : ChunksOf(**built, 1)) ASSERT_TRUE(assembler.Add(chunk).ok());
  auto decoded = assembler.Finish();
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(decoded->config->keyauth_credentials.empty());
  ASSERT_EQ(decoded->config->keyauth_digests.size(), 1u);
  const config::v1::KeyAuthDigest& digest = decoded->config->keyauth_digests[0];
  EXPECT_EQ(digest.id(), "k1");
  EXPECT_EQ(digest.consumer_id(), "c1");
  EXPECT_EQ(digest.salt(), KeyAuthSalt(stored.version.epoch));
  EXPECT_EQ(digest.key_sha256(), KeyAuthKeyDigest(digest.salt(), "super-secret-key-42"));
  EXPECT_NE(KeyAuthSalt(stored.version.epoch), KeyAuthSalt(std::string(16, '\x43'))) << "salt follows the epoch";
  ASSERT_EQ(decoded->config->consumers.size(), 1u);
  // A DP recomputes the same hash from what it received (the digests pass through export).
  EXPECT_EQ(ComputeConfigHash(*decoded->config, stored.version.epoch), decoded->version.hash);
  EXPECT_EQ(ComputeConfigHash(stored.config, stored.version.epoch), decoded->version.hash);
}

// Certificates (with their keys: data planes serve them), SNIs and CA certificates are resources
// of their own kinds, covered by the hash and decoded back into their lists.
TEST(SnapshotTest, TlsKindsRoundTripAndCountInTheHash) {
  FakeClock clock(1234);
  StoredConfig stored = MakeStored();
  config::v1::Certificate& cert = stored.config.certificates.emplace_back();
  cert.set_id("c1");
  cert.set_cert("-----BEGIN CERTIFICATE-----\n...\n");
  cert.set_key("-----BEGIN PRIVATE KEY-----\n...\n");
  cert.set_cert_alt("alt cert");
  cert.set_key_alt("alt key");
  config::v1::Sni& sni = stored.config.snis.emplace_back();
  sni.set_id("n1");
  sni.set_name("*.example.com");
  sni.set_certificate_id("c1");
  config::v1::CaCertificate& ca = stored.config.ca_certificates.emplace_back();
  ca.set_id("a1");
  ca.set_cert("ca pem");
  ca.set_cert_digest(std::string(64, 'f'));
  auto built = BuildSnapshot(stored, clock);
  ASSERT_TRUE(built.ok()) << built.status();
  auto decoded = DecodeSnapshot((*built)->compressed, true, (*built)->uncompressed_size, (*built)->version);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->config->certificates.size(), 1u);
  EXPECT_EQ(decoded->config->certificates[0].SerializeAsString(), cert.SerializeAsString());
  ASSERT_EQ(decoded->config->snis.size(), 1u);
  EXPECT_EQ(decoded->config->snis[0].SerializeAsString(), sni.SerializeAsString());
  ASSERT_EQ(decoded->config->ca_certificates.size(), 1u);
  EXPECT_EQ(decoded->config->ca_certificates[0].SerializeAsString(), ca.SerializeAsString());

  const std::string hash = ComputeConfigHash(stored.config, stored.version.epoch);
  EXPECT_EQ((*built)->version.hash, hash);
  StoredConfig other_key = stored;
  other_key.config.certificates[0].set_key("another key");
  EXPECT_NE(ComputeConfigHash(other_key.config, stored.version.epoch), hash);
  StoredConfig no_sni = stored;
  no_sni.config.snis.clear();
  EXPECT_NE(ComputeConfigHash(no_sni.config, stored.version.epoch), hash);
  StoredConfig other_ca = stored;
  other_ca.config.ca_certificates[0].set_cert("another ca");
  EXPECT_NE(ComputeConfigHash(other_ca.config, stored.version.epoch), hash);
}

}  // namespace
}  // namespace portico
