#pragma once
// The PostgreSQL implementation of Store (store.h), for several CPs on one database. The tables
// are those of the SQLite store (sqlite_store.h), derived from the same descriptors: id TEXT
// COLLATE "C" PRIMARY KEY (ids sort bytewise, as in SQLite), one UNIQUE column per unique field,
// created_at/updated_at BIGINT, `<field>_id` foreign keys (ON DELETE RESTRICT/CASCADE, indexed),
// tags as "\x1f"-delimited text, and the entity as the serialized proto BYTEA. `sync_meta` holds
// one row (epoch = 16 random bytes made with the database, version); `clustering_data_planes`
// the data planes every CP records (StoredDataPlane).
//
// Unlike SQLite, which keeps every byte of a text column, PostgreSQL text holds no NUL character:
// a write whose id, unique or foreign key, tag or cache key contains one is refused with
// InvalidArgument (nothing written; the Admin API answers 400 naming the field), and a lookup by
// such a value finds nothing. The entity itself (BYTEA) may hold NULs in its other fields.
//
// Several CPs on one database:
//  - every versioned write's transaction first bumps sync_meta.version (UPDATE ... RETURNING):
//    the row lock serialises the writers of every CP, so versions are strictly increasing and
//    each names exactly one committed write; the transaction then sends
//    NOTIFY portico_config (payload: the version), delivered to every listener on commit;
//  - migrations and table creation at open run in one transaction under an advisory lock, so
//    CPs that start together on an empty database create the schema once;
//  - WaitForChange listens on its own connection.
// Connections: one writer and one reader, each behind a mutex, plus the listener. A connection
// found broken is reset on its next use (a BEGIN or a one-statement read that finds it closed by
// the server is tried once more on a new one); failing to reach the database gives Unavailable
// and nothing written. A versioned write whose connection is lost during COMMIT itself asks a new
// connection for its transaction's txid_status (its txid and server process are read with the
// version bump): committed is success; in progress (the COMMIT never reached the server, whose
// process still waits in the transaction) ends that process (pg_terminate_backend, up to 5 s) and
// asks again; anything else (aborted, unknown) is Unavailable — then the write may still have
// committed only if the status could not be read (its version and NOTIFY show it). libpq stays
// inside postgres_store.cc.
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/config/entity_descriptor.h"
#include "control_plane/store/store.h"

namespace portico::cp {

// `conninfo`: a libpq URI (postgres://user@host:port/db?...) or key=value string. Unless it sets
// its own: connect_timeout=5, TCP keepalives (10 s idle, 5 s interval, 3 probes),
// tcp_user_timeout=10000 (ms), and the session timeouts of PostgresSessionOptions. A lock or
// statement timeout, or a session ended for idling in a transaction, gives Unavailable (nothing
// written).
absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const std::string& conninfo, const Clock& clock,
                                                         const EntityRegistry& kinds);

// Whether `location` names a PostgreSQL database (a postgres:// or postgresql:// URI, or a
// key=value conninfo) rather than a SQLite file.
bool IsPostgresLocation(const std::string& location);

// `location` safe to log: a PostgreSQL conninfo with its password replaced by "****" (others as
// given).
std::string RedactedLocation(const std::string& location);

// The `options` a connection for `conninfo` is opened with: "-c lock_timeout=10s -c
// statement_timeout=60s -c idle_in_transaction_session_timeout=30s" followed by the conninfo's own
// options, or else $PGOPTIONS (a later -c of the same setting wins), so a CP that dies holding the version row lock
// (or a hung statement) blocks the writers of the other CPs for seconds, not hours.
std::string PostgresSessionOptions(const std::string& conninfo);

// The outcome of a versioned write whose COMMIT failed with `commit` (Unavailable: the connection
// was lost), given its transaction's txid_status() read on a new connection: OK when "committed",
// else Unavailable (or `commit` itself when it is not Unavailable).
absl::Status PostgresCommitOutcome(const absl::Status& commit, const absl::StatusOr<std::string>& txid_status);

// The CREATE TABLE and CREATE INDEX statements of `kind`'s PostgreSQL table (IF NOT EXISTS).
std::string PostgresTableSql(const EntityDescriptor& kind);

}  // namespace portico::cp
