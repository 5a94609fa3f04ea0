#include "data_plane/telemetry/log_writer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico::dp {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(LogWriterTest, WritesLinesOfEveryProducerAndReopensAfterARename) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/access.log";
  LogWriterOptions options;
  options.destination = path;
  options.producers = 2;
  absl::StatusOr<std::unique_ptr<LogWriter>> writer = LogWriter::Start(options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Push(0, "one\n"));
  ASSERT_TRUE((*writer)->Push(1, "two\n"));
  (*writer)->Flush();
  const std::string first = ReadFile(path);
  EXPECT_NE(first.find("one\n"), std::string::npos);
  EXPECT_NE(first.find("two\n"), std::string::npos);
  EXPECT_EQ((*writer)->written(), 2u);

  // logrotate: rename, then SIGUSR1 -> Reopen. Lines after it go to a new file at the path.
  const std::string rotated = path + ".1";
  std::filesystem::rename(path, rotated);
  ASSERT_TRUE((*writer)->Push(0, "still-old\n"));  // may land in either file: before Reopen
  (*writer)->Flush();
  (*writer)->Reopen();
  ASSERT_TRUE((*writer)->Push(0, "three\n"));
  (*writer)->Flush();
  EXPECT_EQ(ReadFile(path), "three\n");
  EXPECT_NE(ReadFile(rotated).find("still-old\n"), std::string::npos);
  EXPECT_EQ((*writer)->reopens(), 1u);
  EXPECT_EQ((*writer)->dropped(), 0u);
}

TEST(LogWriterTest, AProducerOutOfRangeOrAFullRingDropsAndCounts) {
  test_support::TempDir dir;
  LogWriterOptions options;
  options.destination = dir.path() + "/a.log";
  options.producers = 1;
  options.ring_bytes = 64;
  options.flush_interval_ms = 60000;  // nothing drains unless asked
  absl::StatusOr<std::unique_ptr<LogWriter>> writer = LogWriter::Start(options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  (*writer)->Flush();  // its first pass is over: it sleeps until asked again
  EXPECT_FALSE((*writer)->Push(1, "x\n"));
  int pushed = 0;
  while ((*writer)->Push(0, "0123456789\n")) ++pushed;
  EXPECT_GT(pushed, 0);
  EXPECT_EQ((*writer)->dropped(), 2u);
  (*writer)->Flush();
  EXPECT_EQ((*writer)->written(), static_cast<uint64_t>(pushed));
  EXPECT_TRUE((*writer)->Push(0, "0123456789\n"));  // room again
}

TEST(LogWriterTest, AFileThatCannotBeOpenedIsAClearError) {
  LogWriterOptions options;
  options.destination = "/nonexistent-dir/for/sure/access.log";
  absl::StatusOr<std::unique_ptr<LogWriter>> writer = LogWriter::Start(options);
  ASSERT_FALSE(writer.ok());
  EXPECT_NE(writer.status().message().find("/nonexistent-dir/for/sure/access.log"), absl::string_view::npos);
}

}  // namespace
}  // namespace portico::dp
