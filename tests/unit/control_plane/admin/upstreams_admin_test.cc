// Kong's upstreams and targets through the Admin API, and on to a snapshot a data plane decodes.
#include <stdlib.h>

#include <filesystem>

#include "common/base/uuid.h"
#include "common/config/upstreams.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"
#include "control_plane/admin/admin_api.h"
#include "control_plane/cluster_status.h"
#include "control_plane/store/store.h"
#include "tests/unit/control_plane/admin/admin_fixture.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace portico::cp {
namespace {

using nlohmann::json;

using UpstreamsAdminTest = AdminFixture;

TEST_F(UpstreamsAdminTest, CreateFillsKongsDefaults) {
  json created = CallJson("POST", "/upstreams", 201, R"({"name":"backend.internal"})");
  const std::string id = created["id"];
  EXPECT_TRUE(IsUuid(id));
  json expected = json::parse(R"j({"created_at":1700000000,"updated_at":1700000000,"name":"backend.internal",
    "algorithm":"round-robin","hash_on":"none","hash_fallback":"none","hash_on_header":null,
    "hash_fallback_header":null,"hash_on_cookie":null,"hash_on_cookie_path":"/","hash_on_query_arg":null,
    "hash_fallback_query_arg":null,"hash_on_uri_capture":null,"hash_fallback_uri_capture":null,"slots":10000,
    "host_header":null,"client_certificate":null,"use_srv_name":false,"tags":null})j");
  expected["id"] = id;
  expected["healthchecks"] = json::parse(DefaultUpstreamHealthchecksJson());
  EXPECT_EQ(created, expected);
  EXPECT_EQ(CallJson("GET", "/upstreams/backend.internal", 200), expected);
  EXPECT_EQ(CallJson("GET", "/upstreams/" + id, 200), expected);
  EXPECT_EQ(CallJson("GET", "/upstreams", 200)["data"], json::array({expected}));

  // Form bodies work too (nested healthchecks fields by dotted names).
  json form = CallJson("POST", "/upstreams", 201,
                       "name=form.internal&healthchecks.active.healthy.interval=5&slots=100",
                       "application/x-www-form-urlencoded");
  EXPECT_EQ(form["slots"], 100);
  EXPECT_EQ(form["healthchecks"]["active"]["healthy"]["interval"], 5);
  EXPECT_EQ(form["healthchecks"]["active"]["healthy"]["successes"], 0);
}

TEST_F(UpstreamsAdminTest, HashOnAndAlgorithmFollowKongsShorthands) {
  json u = CallJson("POST", "/upstreams", 201, R"({"name":"u1","hash_on":"header","hash_on_header":"x-user"})");
  EXPECT_EQ(u["algorithm"], "consistent-hashing");
  u = CallJson("PATCH", "/upstreams/u1", 200, R"({"algorithm":"least-connections"})");
  EXPECT_EQ(u["algorithm"], "least-connections");
  EXPECT_EQ(u["hash_on"], "none");
  EXPECT_EQ(u["hash_on_header"], "x-user");  // kept, unused
}

TEST_F(UpstreamsAdminTest, PatchMergesHealthchecks) {
  CallJson("POST", "/upstreams", 201,
           R"({"name":"u1","healthchecks":{"active":{"http_path":"/status","healthy":{"interval":5,"successes":2},
               "headers":{"x-a":["1"]}},"threshold":50}})");
  json patched = CallJson("PATCH", "/upstreams/u1", 200,
                          R"({"healthchecks":{"active":{"healthy":{"interval":10},"headers":{"x-b":["2"]}}}})");
  const json& hc = patched["healthchecks"];
  EXPECT_EQ(hc["active"]["healthy"]["interval"], 10);
  EXPECT_EQ(hc["active"]["healthy"]["successes"], 2);            // merged, not replaced
  EXPECT_EQ(hc["active"]["http_path"], "/status");                // sibling kept
  EXPECT_EQ(hc["active"]["headers"], json::parse(R"({"x-b":["2"]})"));  // a map: replaced
  EXPECT_EQ(hc["threshold"], 50);
  EXPECT_EQ(hc["passive"]["unhealthy"]["http_statuses"], json::parse("[429, 500, 503]"));
  // null resets one field to its default; PUT replaces the whole record.
  patched = CallJson("PATCH", "/upstreams/u1", 200, R"({"healthchecks":{"threshold":null}})");
  EXPECT_EQ(patched["healthchecks"]["threshold"], 0);
  json put = CallJson("PUT", "/upstreams/u1", 200, R"({"healthchecks":{"active":{"timeout":3}}})");
  EXPECT_EQ(put["healthchecks"]["active"]["timeout"], 3);
  EXPECT_EQ(put["healthchecks"]["active"]["healthy"]["interval"], 0);
  EXPECT_EQ(put["healthchecks"]["active"]["http_path"], "/");
}

TEST_F(UpstreamsAdminTest, BadFieldsAre400WithTheFieldPath) {
  json e = CallJson("POST", "/upstreams", 400, R"({"name":"u1","healthchecks":{"active":{"timeout":-1}}})");
  EXPECT_EQ(e["code"], 2);
  EXPECT_EQ(e["name"], "schema violation");
  EXPECT_EQ(e["fields"], json::parse(R"({"healthchecks":{"active":{"timeout":"value should be between 0 and 65535"}}})"));
  EXPECT_EQ(e["message"], "schema violation (healthchecks.active.timeout: value should be between 0 and 65535)");
  e = CallJson("POST", "/upstreams", 400, R"({"name":"10.0.0.1"})");
  EXPECT_EQ(e["fields"]["name"], "Invalid name ('10.0.0.1'); no ip addresses allowed");
  e = CallJson("POST", "/upstreams", 400, R"({"name":"u1","slots":5,"algorithm":"random"})");
  EXPECT_EQ(e["fields"]["slots"], "value should be between 10 and 65536");
  EXPECT_EQ(e["fields"]["algorithm"], "expected one of: consistent-hashing, least-connections, round-robin, latency");
  e = CallJson("POST", "/upstreams", 400, R"({"name":"u1","hash_on":"cookie"})");
  EXPECT_EQ(e["fields"]["hash_on_cookie"], "required field missing");
  e = CallJson("POST", "/upstreams", 400, R"({})");
  EXPECT_EQ(e["fields"]["name"], "required field missing");
  e = CallJson("POST", "/upstreams", 400, R"({"name":"u1","healthchecks":{"active":{"healthy":{"http_statuses":[99]}}}})");
  EXPECT_EQ(e["fields"]["healthchecks"]["active"]["healthy"]["http_statuses"], json::parse(R"(["value should be between 100 and 999"])"));
  CallJson("POST", "/upstreams", 201, R"({"name":"u1"})");
  e = CallJson("POST", "/upstreams", 409, R"({"name":"u1"})");
  EXPECT_EQ(e["message"], "UNIQUE violation detected on '{name=\"u1\"}'");
}

TEST_F(UpstreamsAdminTest, TargetsUnderTheirUpstream) {
  const std::string upstream_id = CallJson("POST", "/upstreams", 201, R"({"name":"u1"})")["id"];
  json t = CallJson("POST", "/upstreams/u1/targets", 201, R"({"target":"10.0.0.1"})");
  EXPECT_EQ(t["target"], "10.0.0.1:8000");  // Kong's default port
  EXPECT_EQ(t["weight"], 100);
  EXPECT_EQ(t["upstream"], json({{"id", upstream_id}}));
  EXPECT_EQ(t["tags"], nullptr);
  const std::string target_id = t["id"];

  // By id or by its stored target text, under its upstream only.
  EXPECT_EQ(CallJson("GET", "/upstreams/u1/targets/" + target_id, 200), t);
  EXPECT_EQ(CallJson("GET", "/upstreams/u1/targets/10.0.0.1:8000", 200), t);
  EXPECT_EQ(Call("GET", "/upstreams/u1/targets/10.0.0.1").status, 404);
  CallJson("POST", "/upstreams", 201, R"({"name":"u2"})");
  EXPECT_EQ(Call("GET", "/upstreams/u2/targets/10.0.0.1:8000").status, 404);
  EXPECT_EQ(Call("GET", "/upstreams/u2/targets/" + target_id).status, 404);
  // The same target under another upstream is fine.
  CallJson("POST", "/upstreams/u2/targets", 201, R"({"target":"10.0.0.1:8000"})");

  // Twice under one upstream: Kong's 409 on its cache key.
  json dup = CallJson("POST", "/upstreams/u1/targets", 409, R"({"target":"10.0.0.1:8000"})");
  EXPECT_EQ(dup["code"], 5);
  EXPECT_EQ(dup["message"],
            "UNIQUE violation detected on '{target=\"10.0.0.1:8000\",upstream={id=\"" + upstream_id + "\"}}'");

  // Lists: /targets and /targets/all.
  CallJson("POST", "/upstreams/" + upstream_id + "/targets", 201, R"({"target":"[::1]:81","weight":0})");
  json list = CallJson("GET", "/upstreams/u1/targets", 200);
  ASSERT_EQ(list["data"].size(), 2u);
  json all = CallJson("GET", "/upstreams/u1/targets/all", 200);
  EXPECT_EQ(all["data"], list["data"]);
  json page = CallJson("GET", "/upstreams/u1/targets/all?size=1", 200);
  ASSERT_EQ(page["data"].size(), 1u);
  EXPECT_EQ(page["next"].get<std::string>().rfind("/upstreams/u1/targets/all?offset=", 0), 0u) << page["next"];
  EXPECT_EQ(CallJson("GET", page["next"].get<std::string>(), 200)["data"].size(), 1u);
  EXPECT_EQ(Call("POST", "/upstreams/u1/targets/all", R"({"target":"x"})").status, 405);

  // PATCH; PUT and DELETE of a target the upstream does not have: 404 (Kong's target endpoints).
  EXPECT_EQ(CallJson("PATCH", "/upstreams/u1/targets/10.0.0.1:8000", 200, R"({"weight":5})")["weight"], 5);
  EXPECT_EQ(Call("PUT", "/upstreams/u1/targets/10.9.9.9:8000", R"({"weight":5})").status, 404);
  EXPECT_EQ(Call("DELETE", "/upstreams/u1/targets/10.9.9.9:8000").status, 404);
  EXPECT_EQ(Call("DELETE", "/upstreams/u1/targets/10.0.0.1:8000").status, 204);
  EXPECT_EQ(CallJson("GET", "/upstreams/u1/targets", 200)["data"].size(), 1u);

  // No top-level /targets endpoints.
  EXPECT_EQ(Call("GET", "/targets").status, 404);
  EXPECT_EQ(Call("GET", "/targets/" + target_id).status, 404);
}

TEST_F(UpstreamsAdminTest, TargetErrors) {
  CallJson("POST", "/upstreams", 201, R"({"name":"u1"})");
  EXPECT_EQ(Call("POST", "/upstreams/nope/targets", R"({"target":"10.0.0.1"})").status, 404);
  EXPECT_EQ(Call("GET", "/upstreams/nope/targets").status, 404);
  EXPECT_EQ(Call("GET", "/upstreams/nope/targets/all").status, 404);
  json e = CallJson("POST", "/upstreams/u1/targets", 400, R"({"target":"a b","weight":70000})");
  EXPECT_EQ(e["fields"]["target"], "Invalid target ('a b'); not a valid hostname or ip address");
  EXPECT_EQ(e["fields"]["weight"], "value should be between 0 and 65535");
  e = CallJson("POST", "/upstreams/u1/targets", 400, R"({})");
  EXPECT_EQ(e["fields"]["target"], "required field missing");
}

TEST_F(UpstreamsAdminTest, DeletingAnUpstreamDeletesItsTargets) {
  CallJson("POST", "/upstreams", 201, R"({"name":"u1"})");
  CallJson("POST", "/upstreams", 201, R"({"name":"u2"})");
  CallJson("POST", "/upstreams/u1/targets", 201, R"({"target":"a.internal"})");
  CallJson("POST", "/upstreams/u1/targets", 201, R"({"target":"b.internal:9000"})");
  CallJson("POST", "/upstreams/u2/targets", 201, R"({"target":"a.internal"})");
  EXPECT_EQ(Call("DELETE", "/upstreams/u1").status, 204);
  absl::StatusOr<StoredConfig> stored = store_->ReadConfig();
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->config.targets.size(), 1u);
  EXPECT_EQ(stored->config.targets[0].target(), "a.internal:8000");
  ASSERT_EQ(stored->config.upstreams.size(), 1u);
  EXPECT_EQ(stored->config.upstreams[0].name(), "u2");
}

// Admin API -> store -> snapshot -> what a data plane decodes.
TEST_F(UpstreamsAdminTest, SnapshotsCarryUpstreamsAndTargets) {
  const std::string upstream_id =
      CallJson("POST", "/upstreams", 201, R"({"name":"u1","healthchecks":{"passive":{"unhealthy":{"timeouts":3}}}})")["id"];
  const std::string target_id = CallJson("POST", "/upstreams/u1/targets", 201, R"({"target":"10.0.0.1","weight":7})")["id"];
  absl::StatusOr<StoredConfig> stored = store_->ReadConfig();
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(ValidateConfigSet(stored->config).ok()) << ValidateConfigSet(stored->config);
  absl::StatusOr<std::shared_ptr<const BuiltSnapshot>> built = BuildSnapshot(*stored, clock_);
  ASSERT_TRUE(built.ok()) << built.status();
  absl::StatusOr<DecodedSnapshot> decoded =
      DecodeSnapshot((*built)->compressed, true, (*built)->uncompressed_size, (*built)->version);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const ConfigSet& config = *decoded->config;
  ASSERT_EQ(config.upstreams.size(), 1u);
  EXPECT_EQ(config.upstreams[0].id(), upstream_id);
  EXPECT_EQ(config.upstreams[0].name(), "u1");
  EXPECT_EQ(json::parse(config.upstreams[0].healthchecks())["passive"]["unhealthy"]["timeouts"], 3);
  ASSERT_EQ(config.targets.size(), 1u);
  EXPECT_EQ(config.targets[0].id(), target_id);
  EXPECT_EQ(config.targets[0].upstream_id(), upstream_id);
  EXPECT_EQ(config.targets[0].target(), "10.0.0.1:8000");
  EXPECT_EQ(config.targets[0].weight(), 7);
  EXPECT_TRUE(ValidateConfigSet(config).ok()) << ValidateConfigSet(config);
}

}  // namespace
}  // namespace portico::cp
