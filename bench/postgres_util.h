#pragma once
// A PostgreSQL 15 server for benchmarks: started with the tests' fixture script
// (tests/postgres_fixture.sh: initdb as the `postgres` user when root, pg_ctl on a free
// 127.0.0.1 port) with PostgreSQL's default durability (PORTICO_PG_DURABLE=1: fsync and
// synchronous_commit on), and stopped by it on destruction. Databases are made with createdb.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/common/temp_dir.h"

#ifndef PORTICO_SOURCE_DIR
#error "PORTICO_SOURCE_DIR must name the source tree (set by bench/CMakeLists.txt)"
#endif

namespace portico::bench {

class BenchPostgres {
 public:
  BenchPostgres() {
    script_ = std::string(PORTICO_SOURCE_DIR) + "/tests/postgres_fixture.sh";
    // PostgreSQL's own durability settings (the tests' server runs with fsync off).
    const std::string start = absl::StrCat("PORTICO_PG_DURABLE=1 sh ", script_, " start ", state_.path(), " >", state_.path(),
                                           "/start.log 2>&1");
    if (std::system(start.c_str()) != 0) {
      std::fprintf(stderr, "postgres did not start (%s):\n%s\n", start.c_str(), Slurp(state_.File("start.log")).c_str());
      return;
    }
    port_ = std::atoi(Slurp(state_.File("port")).c_str());
  }
  ~BenchPostgres() {
    if (port_ == 0) return;
    const std::string stop = absl::StrCat("sh ", script_, " stop ", state_.path(), " >/dev/null 2>&1");
    if (std::system(stop.c_str()) != 0) std::fprintf(stderr, "postgres fixture stop failed\n");
  }
  BenchPostgres(const BenchPostgres&) = delete;
  BenchPostgres& operator=(const BenchPostgres&) = delete;

  bool ok() const { return port_ != 0; }
  // A new empty database; its conninfo URI ("" on failure).
  std::string CreateDatabase(const std::string& name) {
    const std::string cmd = absl::StrCat("/usr/lib/postgresql/15/bin/createdb -h 127.0.0.1 -p ", port_,
                                         " -U postgres ", name, " >/dev/null 2>&1");
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "createdb %s failed\n", name.c_str());
      return "";
    }
    return absl::StrCat("postgresql://postgres@127.0.0.1:", port_, "/", name);
  }

 private:
  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  test_support::TempDir state_;
  std::string script_;
  int port_ = 0;
};

}  // namespace portico::bench
