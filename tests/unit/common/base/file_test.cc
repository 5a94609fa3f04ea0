#include "common/base/file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico {
namespace {

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(tmp_.path().empty()); }
  test_support::TempDir tmp_;
  const std::string dir_ = tmp_.path();
};

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

TEST_F(FileTest, AtomicWriteReplacesContentAndModeAndLeavesNoTemporary) {
  const std::string path = dir_ + "/a";
  ASSERT_TRUE(WriteFileAtomically(path, "first version, longer", 0644).ok());
  EXPECT_EQ(*ReadFileToString(path), "first version, longer");
  EXPECT_EQ(ModeOf(path), 0644u);
  ASSERT_TRUE(WriteFileAtomically(path, "second", 0600).ok());
  EXPECT_EQ(*ReadFileToString(path), "second");
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0);
}

TEST_F(FileTest, AtomicWriteIntoMissingDirectoryFailsAndNamesThePath) {
  const std::string path = dir_ + "/missing/a";
  absl::Status status = WriteFileAtomically(path, "x", 0600);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("missing/a.tmp"), std::string::npos) << status;
}

TEST_F(FileTest, DurableWriteNarrowsTheModeOfAnExistingFile) {
  const std::string path = dir_ + "/a";
  ASSERT_TRUE(WriteFileDurably(path, "one", 0666 & ~0022).ok());
  ASSERT_TRUE(WriteFileDurably(path, "two", 0600).ok());
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(*ReadFileToString(path), "two");
}

TEST_F(FileTest, ReadsLargeFilesWholeAndReportsMissingOnes) {
  const std::string path = dir_ + "/big";
  std::string data(300 * 1024, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  ASSERT_TRUE(WriteFileDurably(path, data, 0600).ok());
  absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, data);
  EXPECT_TRUE(absl::IsNotFound(ReadFileToString(dir_ + "/none").status()));
}

TEST_F(FileTest, FsyncDirectoryFailsOnAFile) {
  const std::string path = dir_ + "/a";
  ASSERT_TRUE(WriteFileDurably(path, "x", 0600).ok());
  EXPECT_TRUE(FsyncDirectory(dir_).ok());
  EXPECT_FALSE(FsyncDirectory(path).ok());
}

}  // namespace
}  // namespace portico
