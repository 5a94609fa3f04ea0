#include "data_plane/telemetry/log_writer.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

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

TEST(LogWriterTest, AFileThatCannotBeOpenedIsAClearErrorAndItsLinesAreDropped) {
  LogWriterOptions options;
  options.destination = "/nonexistent-dir/for/sure/access.log";
  absl::StatusOr<std::unique_ptr<LogWriter>> writer = LogWriter::Start(options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_NE((*writer)->open_status().message().find("/nonexistent-dir/for/sure/access.log"), absl::string_view::npos);
  ASSERT_TRUE((*writer)->Push(0, "x\n"));
  (*writer)->Flush();
  EXPECT_EQ((*writer)->dropped(), 1u);
  EXPECT_EQ((*writer)->written(), 0u);
}

// A file size limit (EFBIG) makes a write stop mid-line: only whole lines count as written, and
// the next write ends the cut line first, so the next batch starts on a line of its own.
TEST(LogWriterTest, AWriteThatStopsMidLineCountsWholeLinesAndEndsTheLineNextTime) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/limited.log";
  LogWriterOptions options;
  options.destination = path;
  options.flush_interval_ms = 60000;
  absl::StatusOr<std::unique_ptr<LogWriter>> writer = LogWriter::Start(options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  (*writer)->Flush();
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  void (*saved_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = saved;
  limited.rlim_cur = 20;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limited), 0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*writer)->Push(0, "0123456789\n"));
  (*writer)->Flush();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, saved_handler);
  EXPECT_EQ((*writer)->written(), 1u);
  EXPECT_EQ((*writer)->dropped(), 2u);
  ASSERT_TRUE((*writer)->Push(0, "next\n"));
  (*writer)->Flush();
  EXPECT_EQ(ReadFile(path), "0123456789\n012345678\nnext\n");
  EXPECT_EQ((*writer)->written(), 2u);
}

// A destination nobody reads (a pipe whose reader stalls): Stop with a deadline returns by then.
TEST(LogWriterTest, StopWithADeadlineLeavesAStuckWriterBehind) {
  test_support::TempDir dir;
  const std::string fifo = dir.path() + "/stalled";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // never reads
  ASSERT_GE(reader, 0);
  LogWriterOptions options;
  options.destination = fifo;
  options.ring_bytes = 1 << 20;
  // Leaked on purpose: a writer left behind must never be destroyed.
  LogWriter* writer = LogWriter::Start(options)->release();
  const std::string line(1000, 'x');
  for (int i = 0; i < 200; ++i) writer->Push(0, line + "\n");  // 200 KB: more than the pipe holds
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the writer is now blocked in write()
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(writer->Stop(start + std::chrono::milliseconds(300)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  std::signal(SIGPIPE, SIG_IGN);
  ::close(reader);  // the blocked write fails with EPIPE, and the thread ends
}

}  // namespace
}  // namespace portico::dp
