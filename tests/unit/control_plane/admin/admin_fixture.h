#pragma once
// The fixture the Admin API unit tests share: an AdminApi over a real store, a fake clock, no
// sockets. Requests go straight to AdminApi::Handle. The store is SQLite in a fresh temporary
// folder, or, with PORTICO_TEST_STORE=postgres (the tests registered again with the prefix
// "pg." in CTest), a fresh database on the `postgres` fixture's server.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/base/clock.h"
#include "control_plane/admin/admin_api.h"
#include "control_plane/cluster_status.h"
#include "control_plane/store/store.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/postgres_test_db.h"

namespace portico::cp {

// What the clustering endpoints show: no data plane and no build unless a test sets them.
class FakeDataPlanes : public DataPlaneStatusSource {
 public:
  std::vector<DataPlaneStatus> ListDataPlanes() const override { return planes; }
  ConfigBuildStatus BuildStatus() const override { return build; }
  std::vector<DataPlaneStatus> planes;
  ConfigBuildStatus build;
};

class AdminFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico_admin_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    location_ = dir_ + "/admin.db";
    if (OnPostgres()) {
      auto db = test_support::PostgresTestDb::Create();
      ASSERT_TRUE(db.ok()) << db.status();
      db_ = std::move(*db);
      location_ = db_->conninfo();
    }
    auto store = Store::Open(location_, clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    MakeApi(DefaultOptions());
  }
  void TearDown() override {
    api_.reset();
    store_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  AdminOptions DefaultOptions() const {
    return AdminOptions{"node-1", "cp.local", "127.0.0.1:8001", "0.0.0.0:8005", location_};
  }
  // Replaces the AdminApi (same store); every committed write counts in changes_.
  void MakeApi(AdminOptions options) {
    api_ = std::make_unique<AdminApi>(store_.get(), &data_planes_, std::move(options), [this] { ++changes_; },
                                      clock_);
  }

  HttpResponse Call(const std::string& method, const std::string& target, const std::string& body = "",
                    const std::string& content_type = "application/json",
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    HttpRequest request;
    request.method = method;
    request.target = target;
    const size_t q = target.find('?');
    request.path = target.substr(0, q);
    request.query = q == std::string::npos ? "" : target.substr(q + 1);
    if (!body.empty() && !content_type.empty()) request.headers.emplace_back("Content-Type", content_type);
    for (auto& header : headers) request.headers.push_back(std::move(header));
    request.body = body;
    return api_->Handle(request);
  }
  // Calls, checks the status and parses the JSON body.
  nlohmann::json CallJson(const std::string& method, const std::string& target, int status,
                          const std::string& body = "", const std::string& content_type = "application/json") {
    HttpResponse r = Call(method, target, body, content_type);
    EXPECT_EQ(r.status, status) << method << " " << target << " -> " << r.body;
    nlohmann::json parsed = nlohmann::json::parse(r.body, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << r.body;
    return parsed;
  }

  static bool OnPostgres() {
    const char* store = getenv("PORTICO_TEST_STORE");
    return store != nullptr && std::string(store) == "postgres";
  }
  // The name column test_support::InsertCorruptRowAt writes for `name`.
  static std::string StoredName(const std::string& name) { return OnPostgres() ? absl::CHexEscape(name) : name; }

  FakeClock clock_{1700000000};
  std::string dir_;
  std::string location_;  // the store's: a SQLite path or a PostgreSQL conninfo
  std::unique_ptr<test_support::PostgresTestDb> db_;
  std::unique_ptr<Store> store_;
  FakeDataPlanes data_planes_;
  std::unique_ptr<AdminApi> api_;
  int changes_ = 0;
};

}  // namespace portico::cp
