#pragma once
// `portico-cp config ...`: Kong's `kong config` for declarative files (docs/declarative.md).
//   config validate FILE            loads FILE as POST /config would; exit 0 when valid
//   config import FILE [--db DB]    upserts FILE's entities into DB in one transaction (Kong's
//                                   db_import: parents first, nothing deleted)
//   config export [FILE] [--db DB]  writes DB's config as _format_version 3.0 YAML (stdout when
//                                   FILE is left out; an existing FILE is not overwritten)
namespace portico::cp {

// argv[1] is "config". Returns the process exit code (0 ok, 1 refused or failed, 2 usage).
int RunConfigCommand(int argc, char** argv);

}  // namespace portico::cp
