#pragma once
// Test helper: writes into a CP SQLite database, on its own connection, a row the way an older CP
// could have: the entity BLOB is a Service/Route whose name is not UTF-8 (protobuf serializes it
// but refuses to parse it back), the other columns as the store fills them, and sync_meta.version
// bumped in the same transaction. Header-only; link SQLite::SQLite3 and portico_config_proto.
#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "portico/config/v1/config.pb.h"

namespace portico::test_support {

// The serialized entity of a test row of `table` ("services" or "routes") named `name`.
inline std::string CorruptRowEntity(const std::string& table, const std::string& id, const std::string& name,
                                    const std::string& service_id) {
  std::string blob;
  if (table == "services") {
    config::v1::Service s;
    s.set_id(id);
    s.set_name(name);
    s.set_host("10.0.0.1");
    s.set_protocol("http");
    s.set_port(80);
    blob = s.SerializeAsString();
  } else {
    config::v1::Route r;
    r.set_id(id);
    r.set_name(name);
    r.add_protocols("http");
    r.mutable_paths()->add_values("/corrupt");
    if (!service_id.empty()) r.set_service_id(service_id);
    blob = r.SerializeAsString();
  }
  return blob;
}

// "" on success, else SQLite's error. `table` is "services" or "routes"; `name` goes into the
// name column and, unless `blob_name` is given, into the entity (then it must be ill-formed
// UTF-8 for the row to be corrupt); `service_id` is used for routes only ("" = no service).
inline std::string InsertCorruptRow(const std::string& db_path, const std::string& table,
                                    const std::string& id, const std::string& name,
                                    const std::string& service_id = "", const std::string& blob_name = "",
                                    int64_t created_at = 1700000000) {
  const std::string blob = CorruptRowEntity(table, id, blob_name.empty() ? name : blob_name, service_id);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::string error = db ? sqlite3_errmsg(db) : "cannot open";
    sqlite3_close(db);
    return error;
  }
  sqlite3_busy_timeout(db, 5000);
  std::string error;
  auto exec = [&](const char* sql) {
    char* message = nullptr;
    if (error.empty() && sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
      error = message ? message : "exec failed";
    }
    sqlite3_free(message);
  };
  exec("BEGIN IMMEDIATE");
  // The version first, as the store's writes do: the change log's trigger records the row under it.
  exec("UPDATE sync_meta SET version = version + 1 WHERE id = 1");
  if (error.empty()) {
    const std::string sql =
        table == "services"
            ? "INSERT INTO services (id, name, created_at, updated_at, tags, entity) VALUES (?1, ?2, ?3, ?3, '', ?4)"
            : "INSERT INTO routes (id, name, created_at, updated_at, tags, entity, service_id) "
              "VALUES (?1, ?2, ?3, ?3, '', ?4, ?5)";
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      error = sqlite3_errmsg(db);
    } else {
      sqlite3_bind_text(stmt, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
      sqlite3_bind_text(stmt, 2, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
      sqlite3_bind_int64(stmt, 3, created_at);
      sqlite3_bind_blob(stmt, 4, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
      if (table != "services") {
        if (service_id.empty()) {
          sqlite3_bind_null(stmt, 5);
        } else {
          sqlite3_bind_text(stmt, 5, service_id.data(), static_cast<int>(service_id.size()), SQLITE_TRANSIENT);
        }
      }
      if (sqlite3_step(stmt) != SQLITE_DONE) error = sqlite3_errmsg(db);
      sqlite3_finalize(stmt);
    }
  }
  exec("COMMIT");  // runs only when everything before succeeded
  if (!error.empty()) (void)sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return error;
}

}  // namespace portico::test_support
