// file-log and http-log in the plugin chain: compile errors name the field, the log step writes
// through the process's shared writers and senders, and senders no config holds are pruned.
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "data_plane/pipeline/pipeline.h"
#include "data_plane/plugins/chain.h"
#include "data_plane/telemetry/log_sinks.h"
#include "data_plane/telemetry/log_writer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/temp_dir.h"
#include "tests/unit/data_plane/plugins/fake_context.h"

namespace portico::dp::plugins {
namespace {

using json = nlohmann::json;
using config::v1::Plugin;

// GET /x from 127.0.0.1.
class FakeContext final : public plugin_test::FakeContext {
 public:
  FakeContext() {
    request_head.method = "GET";
    request_head.url = "/x";
    target.path = "/x";
  }
};

Plugin MakePlugin(const std::string& id, const std::string& name, const json& config) {
  Plugin p;
  p.set_id(id);
  p.set_name(name);
  p.set_config(config.dump());
  p.add_protocols("http");
  p.set_enabled(true);
  return p;
}

TEST(LogPluginsTest, FileLogWritesTheEntryWithConfiguredCredentialNamesRedacted) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/plugin.log";
  ConfigSet config;
  config.plugins = {MakePlugin("p0", "key-auth", {{"key_names", {"X-Secret-Key"}}}),
                    MakePlugin("p1", "file-log", {{"path", path}})};
  auto pipeline = std::make_unique<Pipeline>();
  ASSERT_TRUE(AddPluginChain(config, pipeline.get()).ok());
  ASSERT_EQ(pipeline->log_steps().size(), 1u);
  FakeContext request;
  MessageHead head = *request.head;
  head.url = "/x?x-secret-key=SECRET2";
  head.headers = {{"X-Secret-Key", "SECRET1"}};
  request.head = &head;
  request.target.query = "x-secret-key=SECRET2";
  request.target.has_query = true;
  pipeline->log_steps()[0]->OnLog(request, 204);
  absl::StatusOr<std::shared_ptr<LogWriter>> writer = LogWriters::Global().Get(path);
  ASSERT_TRUE(writer.ok());
  (*writer)->Flush();
  std::ifstream in(path);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(line.find("SECRET"), std::string::npos) << line;
  json entry = json::parse(line, nullptr, false);
  ASSERT_TRUE(entry.is_object()) << line;
  EXPECT_EQ(entry["response"]["status"], 204);
  EXPECT_EQ(entry["request"]["headers"]["x-secret-key"], "[REDACTED]");
  EXPECT_EQ(entry["request"]["querystring"]["x-secret-key"], "[REDACTED]");

  // Once no pipeline holds the writer, Prune stops it and forgets the path.
  writer->reset();
  const size_t before = LogWriters::Global().size();
  pipeline.reset();
  LogWriters::Global().Prune();
  EXPECT_EQ(LogWriters::Global().size(), before - 1);
}

TEST(LogPluginsTest, AnUnopenablePathCompilesAndTheWriterOpensItLater) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/later/x.log";
  ConfigSet config;
  config.plugins = {MakePlugin("p2", "file-log", {{"path", path}})};
  Pipeline pipeline;
  absl::Status status = AddPluginChain(config, &pipeline);
  ASSERT_TRUE(status.ok()) << status;
  absl::StatusOr<std::shared_ptr<LogWriter>> writer = LogWriters::Global().Get(path);
  ASSERT_TRUE(writer.ok());
  EXPECT_NE((*writer)->open_status().message().find("cannot open log file"), absl::string_view::npos);
  FakeContext request;
  pipeline.log_steps()[0]->OnLog(request, 200);
  (*writer)->Flush();
  EXPECT_EQ((*writer)->dropped(), 1u);
  EXPECT_EQ((*writer)->written(), 0u);

  std::filesystem::create_directory(dir.path() + "/later");
  (*writer)->Reopen();  // SIGUSR1 retries at once (otherwise: within a second)
  pipeline.log_steps()[0]->OnLog(request, 201);
  (*writer)->Flush();
  EXPECT_EQ((*writer)->written(), 1u);
  std::ifstream in(path);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(json::parse(line, nullptr, false)["response"]["status"], 201);
}

TEST(LogPluginsTest, HttpLogInstancesWithOneConfigShareASenderThatIsPrunedWhenUnused) {
  const json config = {{"http_endpoint", "http://127.0.0.1:9/logs"}};
  ConfigSet set;
  set.plugins = {MakePlugin("h1", "http-log", config)};
  const size_t before = BatchSenders::Global().size();
  {
    auto first = std::make_unique<Pipeline>();
    auto second = std::make_unique<Pipeline>();
    ASSERT_TRUE(AddPluginChain(set, first.get()).ok());
    ASSERT_TRUE(AddPluginChain(set, second.get()).ok());
    EXPECT_EQ(BatchSenders::Global().size(), before + 1);
    BatchSenders::Global().Prune();
    EXPECT_EQ(BatchSenders::Global().size(), before + 1) << "still used by the pipelines";
  }
  BatchSenders::Global().Prune();
  EXPECT_EQ(BatchSenders::Global().size(), before);

  ConfigSet https;
  https.plugins = {MakePlugin("h2", "http-log", {{"http_endpoint", "https://c/"}})};
  Pipeline pipeline;
  EXPECT_FALSE(AddPluginChain(https, &pipeline).ok());
}

}  // namespace
}  // namespace portico::dp::plugins
