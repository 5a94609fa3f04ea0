// portico-cp: the control plane. Owns the Admin API and the SQLite store, and streams config
// snapshots to data planes over mutual-TLS gRPC.
//
//   portico-cp gen-certs DIR [--cp-names a,b] [--cp-id NAME] [--dp-id NAME] [--force]
//   portico-cp config validate FILE | import FILE [--db DB] | export [FILE] [--db DB]
//   portico-cp check CONF_FILE [flags]
//   portico-cp [--db FILE|URI] [--admin-listen H:P] [--admin-ssl-listen H:P|off] [--cluster-listen H:P]
//              [--admin-token-file F] [--admin-client-ca F] [--admin-ssl-cert F --admin-ssl-cert-key F]
//              --cluster-cert F --cluster-key F --cluster-ca F [--conf FILE]
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/absl_mutex.h"
#include "common/base/file.h"
#include "common/base/flags.h"
#include "common/base/host_port.h"
#include "common/base/log.h"
#include "common/base/signals.h"
#include "common/base/uuid.h"
#include "common/http/http_server.h"
#include "common/metrics/metrics.h"
#include "common/tls/server_tls_context.h"
#include "common/tls/tls_files.h"
#include "control_plane/admin/admin_api.h"
#include "control_plane/conf_keys.h"
#include "control_plane/config_cli.h"
#include "control_plane/store/version_watcher.h"
#include "control_plane/admin/admin_auth.h"
#include "control_plane/gen_certs.h"
#include "control_plane/store/postgres_store.h"
#include "control_plane/store/store.h"
#include "control_plane/sync/cluster_data_planes.h"
#include "control_plane/sync/sync_server.h"
#include "control_plane/sync/sync_test_hooks.h"

namespace portico::cp {
namespace {

// SIGTERM/SIGQUIT: how long Admin API requests in flight may take to finish.
constexpr uint64_t kAdminDrainMs = 10 * 1000;
// Changed rows above which the snapshot builder reads the whole config instead of its changes.
constexpr size_t kMaxIncrementalChanges = 10000;

// TEST ONLY (fault injection, PORTICO_TEST_CP_CRASH_AFTER_CHUNKS=<k>): the process kills itself
// with SIGKILL once it has written k chunks of a snapshot that has more, i.e. a CP crash in the
// middle of a send at a deterministic point (SyncFaultTest.CpKilledMidSnapshot...).
class CrashAfterChunks final : public SyncTestHooks {
 public:
  explicit CrashAfterChunks(size_t chunks) : chunks_(chunks) {}
  void OnChunkWritten(size_t written, size_t count, uint64_t version) override {
    if (written != chunks_ || written >= count) return;
    PORTICO_LOG(kWarn, "cp-sync", "TEST fault switch: crashing after ", written, " of ", count,
                " chunks of version ", version);
    raise(SIGKILL);
  }

 private:
  const size_t chunks_;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "portico-cp: %s\n", status.ToString().c_str());
  return 1;
}

constexpr char kServeUsage[] =
    "portico-cp [flags]\n       portico-cp check CONF_FILE [flags]\n       portico-cp gen-certs DIR [flags]\n"
    "       portico-cp config validate|import|export ...";
constexpr char kServeDescription[] =
    "The Portico control plane: serves the Admin API, keeps the configuration in a SQLite file and\n"
    "streams versioned config snapshots to data planes over mutual-TLS gRPC. Every flag can also be\n"
    "set through its environment variable or in the --conf file (kong.conf syntax, Kong's key names);\n"
    "the command line wins over the environment, which wins over the file. `portico-cp check FILE`\n"
    "validates a file without starting. `portico-cp gen-certs --help` describes the certificate tool.";
constexpr char kGenCertsUsage[] =
    "portico-cp gen-certs DIR [--dp-id NAME] [--cp-names A,B] [--cp-id NAME] [--force]";
constexpr char kGenCertsDescription[] =
    "Writes cluster certificates into DIR (created with mode 0700 if missing).\n"
    "  DIR without a CA: a new cluster: ca.crt/ca.key (keep ca.key safe: it issues every other\n"
    "    certificate), cp.crt/cp.key (CP server; SANs localhost, 127.0.0.1, ::1 and --cp-names;\n"
    "    named after --cp-id when given), dp.crt/dp.key (DP client, node id --dp-id, default dp-1).\n"
    "  DIR with ca.crt and ca.key: the CA is kept and only what is asked is issued from it:\n"
    "    --dp-id NAME writes NAME.crt/NAME.key, a DP client certificate for node id NAME (and\n"
    "      cp.crt/cp.key too when DIR holds neither);\n"
    "    --cp-names A,B [--cp-id NAME] writes NAME.crt/NAME.key (default cp), a CP server\n"
    "      certificate: --cp-id cp-2 for another CP of the cluster.\n"
    "An existing file is never overwritten: the error names it. --force replaces the files asked\n"
    "for (never the CA while --dp-id, --cp-names or --cp-id is given); with --force and none of\n"
    "them, a whole new cluster replaces the old one (every DP then needs a new certificate).";

int GenCerts(int argc, char** argv) {
  Flags flags({{"cp-names", "", "extra DNS names or IPs for the CP certificate, comma-separated"},
               {"dp-id", "dp-1", "node id written into the DP client certificate"},
               {"cp-id", "cp", "file name of the CP server certificate and key (NAME.crt, NAME.key)"},
               {"force", "", "overwrite existing keys and certificates (see above)", true}});
  if (absl::Status s = flags.Parse(argc, argv, 2); !s.ok()) return Fail(s);
  if (AnswerHelpOrVersion(flags, "portico-cp", kGenCertsUsage, kGenCertsDescription)) return 0;
  if (flags.positional().size() != 1) {
    std::fprintf(stderr, "usage: %s\n(portico-cp gen-certs --help describes every flag)\n", kGenCertsUsage);
    return 2;
  }
  GenCertsRequest request;
  request.dir = flags.positional()[0];
  for (absl::string_view n : absl::StrSplit(flags.Get("cp-names"), ',', absl::SkipEmpty())) {
    request.cp_names.emplace_back(n);
  }
  request.cp_names_given = flags.IsSet("cp-names");
  request.dp_id = flags.Get("dp-id");
  request.dp_id_given = flags.IsSet("dp-id");
  request.cp_id = flags.Get("cp-id");
  request.cp_id_given = flags.IsSet("cp-id");
  request.force = flags.GetBool("force");
  absl::StatusOr<GenCertsResult> result = RunGenCerts(request);
  if (!result.ok()) return Fail(result.status());
  std::printf("%s %s/{%s}\n", result->new_cluster ? "new cluster:" : "CA kept, wrote", request.dir.c_str(),
              absl::StrJoin(result->written, ",").c_str());
  return 0;
}

// Creates the folder that will hold the SQLite file (0700), so `--db /var/lib/portico/portico.db`
// works on a fresh host. In-memory and URI names are left to SQLite.
absl::Status PrepareDatabaseFolder(const std::string& db) {
  if (db.empty() || db == ":memory:" || db.rfind("file:", 0) == 0 || IsPostgresLocation(db)) return absl::OkStatus();
  const size_t slash = db.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return absl::OkStatus();
  absl::Status s = EnsureDirectories(db.substr(0, slash), 0700);
  if (s.ok()) return s;
  return absl::FailedPreconditionError(absl::StrCat(
      "cannot create the folder for --db ", db, ": ", s.message(),
      ". Create it (mode 0700, owned by the user running portico-cp) or choose another --db path"));
}

// What protects the Admin API: its token, the TLS listener and its client CA.
struct AdminSecurity {
  std::optional<AdminToken> token;
  std::optional<HostPort> tls_addr;  // --admin-ssl-listen unless off
  SslCtxPtr tls_context;             // set with tls_addr
  bool client_ca = false;
};

// Reads the Admin API security flags and applies the start-up rule (admin_auth.h) before anything
// listens: an Admin listener off loopback needs a token (or, for the TLS listener, a client CA).
absl::StatusOr<AdminSecurity> ReadAdminSecurity(const Flags& flags, const HostPort& admin_addr) {
  AdminSecurity out;
  const std::string ssl_listen = flags.Get("admin-ssl-listen");
  if (ssl_listen != "off") {
    absl::StatusOr<HostPort> addr = ParseHostPort(ssl_listen);
    if (!addr.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--admin-ssl-listen: ", addr.status().message()));
    }
    out.tls_addr = *addr;
  }
  if (flags.IsSet("admin-token-file")) {
    absl::StatusOr<AdminToken> token = AdminToken::FromFile(flags.Get("admin-token-file"));
    if (!token.ok()) return token.status();
    out.token = *token;
  }
  std::string client_ca_pem;
  if (flags.IsSet("admin-client-ca")) {
    if (!out.tls_addr) {
      return absl::InvalidArgumentError(
          "--admin-client-ca applies to the TLS listener: set --admin-ssl-listen too (client certificates "
          "cannot protect the cleartext --admin-listen)");
    }
    absl::StatusOr<std::string> pem = ReadFileToString(flags.Get("admin-client-ca"));
    if (!pem.ok()) return absl::Status(pem.status().code(), absl::StrCat("--admin-client-ca: ", pem.status().message()));
    absl::StatusOr<int> count = CountCertificates(*pem, absl::StrCat("--admin-client-ca ", flags.Get("admin-client-ca")));
    if (!count.ok()) return count.status();
    // Every certificate the Admin CA issued is a full operator: sharing the cluster CA would make
    // each DP's certificate an Admin credential.
    if (absl::StatusOr<std::string> cluster_ca = ReadFileToString(flags.Get("cluster-ca")); cluster_ca.ok()) {
      for (absl::string_view block : absl::StrSplit(*cluster_ca, "-----END CERTIFICATE-----", absl::SkipWhitespace())) {
        block = absl::StripAsciiWhitespace(block);
        if (absl::StartsWith(block, "-----BEGIN CERTIFICATE-----") && absl::StrContains(*pem, block)) {
          PORTICO_LOG(kWarn, "admin", "--admin-client-ca holds a certificate of --cluster-ca: every data plane's "
                      "cluster certificate is then an Admin API credential; use a separate CA for operators");
          break;
        }
      }
    }
    client_ca_pem = *std::move(pem);
    out.client_ca = true;
  }
  std::vector<AdminListener> listeners = {{"admin-listen", admin_addr.host, false}};
  if (out.tls_addr) listeners.push_back({"admin-ssl-listen", out.tls_addr->host, true});
  if (absl::Status s = CheckAdminListenersSecured(listeners, out.token.has_value(), out.client_ca); !s.ok()) {
    return s;
  }
  if (!out.tls_addr) {
    if (flags.IsSet("admin-ssl-cert") || flags.IsSet("admin-ssl-cert-key")) {
      return absl::InvalidArgumentError("--admin-ssl-cert and --admin-ssl-cert-key need --admin-ssl-listen");
    }
    return out;
  }
  if (flags.IsSet("admin-ssl-cert") != flags.IsSet("admin-ssl-cert-key")) {
    return absl::InvalidArgumentError("--admin-ssl-cert and --admin-ssl-cert-key go together: set both or neither");
  }
  absl::StatusOr<TlsMaterial> identity;
  if (flags.IsSet("admin-ssl-cert")) {
    identity = LoadTlsMaterial(flags.Get("admin-ssl-cert"), flags.Get("admin-ssl-cert-key"), "");
  } else {
    identity = GenerateSelfSignedServerCertificate("portico-admin", {});
    if (identity.ok()) {
      PORTICO_LOG(kWarn, "cp", "--admin-ssl-listen uses a generated self-signed certificate (SHA-256 ",
                  CertificateSha256Fingerprint(identity->cert_pem),
                  "); set --admin-ssl-cert and --admin-ssl-cert-key to use your own");
    }
  }
  if (!identity.ok()) return identity.status();
  absl::StatusOr<SslCtxPtr> context =
      MakeServerTlsContext(*identity, client_ca_pem, absl::StrCat("--admin-client-ca ", flags.Get("admin-client-ca")));
  if (!context.ok()) return context.status();
  out.tls_context = *std::move(context);
  return out;
}

// With `check` (portico-cp check, a ConfCheck round): read and validate everything a start would,
// the cluster certificate files too, and return 0 before opening the store or any port.
int Serve(int argc, char** argv, ConfCheck* check) {
  Flags flags({
      {"db", "portico.db",
       "SQLite database file (created with its schema on first start), or a PostgreSQL database: "
       "postgres://user@host:port/dbname or a libpq key=value conninfo"},
      {"admin-listen", "127.0.0.1:8001", "Admin API address (cleartext HTTP)"},
      {"admin-ssl-listen", "off", "Admin API HTTPS address (Kong's is 8444), or off"},
      {"admin-ssl-cert", "", "certificate (PEM, leaf first) of --admin-ssl-listen; default: a generated self-signed one"},
      {"admin-ssl-cert-key", "", "private key (PEM) of --admin-ssl-cert"},
      {"admin-client-ca", "", "CA bundle (PEM): --admin-ssl-listen then requires a client certificate from it"},
      {"admin-token-file", "", "file holding the Admin API bearer token: every request then needs "
                               "'Authorization: Bearer <token>'"},
      {"cluster-listen", "0.0.0.0:8005", "address data planes connect to (mutual TLS)"},
      {"cluster-cert", "", "CP server certificate (PEM)"},
      {"cluster-key", "", "CP server private key (PEM)"},
      {"cluster-ca", "", "cluster CA; DP client certificates must chain to it"},
      {"admin-gui-origin", "", "origins a browser admin UI calls the Admin API from (comma-separated "
                               "scheme://host[:port], Kong's admin_gui_origin); default: none (no CORS, "
                               "and writes carrying an Origin header are refused)"},
      {"max-body-bytes", std::to_string(kAdminMaxBodyBytes), "largest Admin API request body (Kong's 10m)"},
      {"cluster-admission-rate", "50", "new DP streams admitted per second (token bucket; 0 = no limit)"},
      {"cluster-admission-burst", "100", "new DP streams admitted at once before the rate applies"},
      {"cluster-max-full-sends", "32", "full snapshots written to DPs at the same time"},
      {"cluster-hello-timeout", "10", "seconds a new stream may take to send its Hello"},
      {"cluster-handshake-timeout", "5",
       "seconds a new cluster connection may take to finish TLS and the HTTP/2 preface"},
      {"cluster-ack-timeout", "30", "seconds (plus 1 per MiB) before an un-ACKed DP is shown as stale"},
      {"cluster-debounce-first-ms",
       std::to_string(absl::ToInt64Milliseconds(SyncServerOptions{}.debounce_first)),
       "milliseconds a commit after a quiet period waits before the config is built and pushed"},
      {"cluster-debounce-quiet-ms",
       std::to_string(absl::ToInt64Milliseconds(SyncServerOptions{}.debounce_quiet)),
       "while commits keep coming: milliseconds without a new one before the build"},
      {"cluster-debounce-max-ms", std::to_string(absl::ToInt64Milliseconds(SyncServerOptions{}.debounce_max)),
       "longest wait from a commit to the build, however often commits come"},
      {"cluster-data-plane-purge-delay", std::to_string(kDefaultDataPlanePurgeDelaySeconds),
       "seconds a data plane's row stays in the database after its last contact (>= 60)"},
      {"log-level", "info", "debug|info|warn|error"},
  });
  flags.EnableConfFile(ControlPlaneConfKeys());
  // In Serve, an error about a flag whose value came from the --conf file names the file's line; in
  // a check round it is recorded instead of printed.
  const auto Fail = [&flags, check](const absl::Status& s) {
    return check != nullptr ? check->Record(flags, s) : cp::Fail(flags.Explain(s));
  };
  const absl::Status parsed = flags.Parse(argc, argv);
  if (parsed.ok() && AnswerHelpOrVersion(flags, "portico-cp", kServeUsage, kServeDescription)) return 0;
  // A usage error even when the file has errors too (`check FILE extra`).
  if (!flags.positional().empty()) {
    std::fprintf(stderr, "portico-cp: unexpected argument '%s'\nusage: %s\n(portico-cp --help lists every flag)\n",
                 PrintableExcerpt(flags.positional()[0]).c_str(), kServeUsage);
    return 2;
  }
  if (!parsed.ok()) return Fail(parsed);
  if (check != nullptr) check->Prepare(flags);  // without the file values earlier rounds refused
  if (absl::Status s = ApplyLogLevelFlag(flags); !s.ok()) return Fail(s);
  if (flags.Get("db").empty()) {
    // SQLite would open a temporary database: every Admin API write lost at exit.
    return Fail(absl::InvalidArgumentError(
        "--db must name a file or a PostgreSQL database (an empty path is a throwaway database)"));
  }
  if (absl::Status s = RequireFlags(flags, {"cluster-cert", "cluster-key", "cluster-ca"}); !s.ok()) {
    return Fail(s);
  }
  if (absl::StatusOr<HostPort> cluster_addr = ParseHostPort(flags.Get("cluster-listen")); !cluster_addr.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--cluster-listen: ", cluster_addr.status().message())));
  }
  absl::StatusOr<HostPort> admin_addr = ParseHostPort(flags.Get("admin-listen"));
  if (!admin_addr.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--admin-listen: ", admin_addr.status().message())));
  }
  absl::StatusOr<AdminSecurity> admin_security = ReadAdminSecurity(flags, *admin_addr);
  if (!admin_security.ok()) return Fail(admin_security.status());
  size_t max_body = 0;
  if (!absl::SimpleAtoi(flags.Get("max-body-bytes"), &max_body) || max_body == 0) {
    return Fail(absl::InvalidArgumentError("--max-body-bytes must be a positive integer"));
  }
  std::vector<std::string> cors_origins;
  if (flags.IsSet("admin-gui-origin")) {
    cors_origins = absl::StrSplit(flags.Get("admin-gui-origin"), ',', absl::SkipWhitespace());
    for (const std::string& origin : cors_origins) {
      // Sent back as a header value: visible ASCII only.
      for (const char c : origin) {
        if (c <= ' ' || c == 0x7f) {
          return Fail(absl::InvalidArgumentError(
              "--admin-gui-origin: each origin must be scheme://host[:port] without spaces or control characters"));
        }
      }
    }
  }

  int max_full_sends = 0;
  if (!absl::SimpleAtoi(flags.Get("cluster-max-full-sends"), &max_full_sends) || max_full_sends < 1) {
    return Fail(absl::InvalidArgumentError("--cluster-max-full-sends must be an integer >= 1"));
  }
  constexpr double kDay = 86400;
  absl::StatusOr<double> admission_rate = NumberFlag(flags, "cluster-admission-rate", 0, 1e6, "connections per second");
  if (!admission_rate.ok()) return Fail(admission_rate.status());
  absl::StatusOr<double> admission_burst = NumberFlag(flags, "cluster-admission-burst", 1, 1e6);
  if (!admission_burst.ok()) return Fail(admission_burst.status());
  absl::StatusOr<double> hello_timeout_s = NumberFlag(flags, "cluster-hello-timeout", 0.001, kDay, "seconds");
  if (!hello_timeout_s.ok()) return Fail(hello_timeout_s.status());
  absl::StatusOr<double> ack_timeout_s = NumberFlag(flags, "cluster-ack-timeout", 0.001, kDay, "seconds");
  if (!ack_timeout_s.ok()) return Fail(ack_timeout_s.status());
  absl::StatusOr<double> debounce_first_ms = NumberFlag(flags, "cluster-debounce-first-ms", 0, 60000, "milliseconds");
  if (!debounce_first_ms.ok()) return Fail(debounce_first_ms.status());
  absl::StatusOr<double> debounce_quiet_ms = NumberFlag(flags, "cluster-debounce-quiet-ms", 0, 60000, "milliseconds");
  if (!debounce_quiet_ms.ok()) return Fail(debounce_quiet_ms.status());
  absl::StatusOr<double> debounce_max_ms = NumberFlag(flags, "cluster-debounce-max-ms", 0, 60000, "milliseconds");
  if (!debounce_max_ms.ok()) return Fail(debounce_max_ms.status());
  absl::StatusOr<double> handshake_timeout_s =
      NumberFlag(flags, "cluster-handshake-timeout", 0.1, 3600, "seconds");
  if (!handshake_timeout_s.ok()) return Fail(handshake_timeout_s.status());
  int64_t purge_delay_s = 0;
  if (!absl::SimpleAtoi(flags.Get("cluster-data-plane-purge-delay"), &purge_delay_s) ||
      purge_delay_s < kMinDataPlanePurgeDelaySeconds) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--cluster-data-plane-purge-delay must be an integer >= ",
                                                        kMinDataPlanePurgeDelaySeconds, " (seconds)")));
  }
  if (check != nullptr) {
    if (absl::StatusOr<TlsMaterial> cluster = LoadTlsMaterial(flags.Get("cluster-cert"), flags.Get("cluster-key"),
                                                              flags.Get("cluster-ca"));
        !cluster.ok()) {
      return Fail(absl::Status(cluster.status().code(),
                               absl::StrCat("--cluster-cert, --cluster-key, --cluster-ca: ", cluster.status().message())));
    }
    return 0;
  }

  BlockTerminationSignals();
  Registry registry;
  const Clock& clock = RealClock::Get();
  if (absl::Status s = PrepareDatabaseFolder(flags.Get("db")); !s.ok()) return Fail(s);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(flags.Get("db"), clock);
  if (!store.ok()) {
    return Fail(absl::Status(store.status().code(), absl::StrCat("opening the database ", RedactedLocation(flags.Get("db")),
                                                                  ": ", store.status().message())));
  }

  char host_buf[256] = {0};
  gethostname(host_buf, sizeof(host_buf) - 1);
  const std::string node_id = NewUuid();

  SyncServerOptions sync_options;
  sync_options.listen = flags.Get("cluster-listen");
  sync_options.cert_file = flags.Get("cluster-cert");
  sync_options.key_file = flags.Get("cluster-key");
  sync_options.ca_file = flags.Get("cluster-ca");
  sync_options.cp_id = node_id;
  sync_options.admission_rate = *admission_rate;
  sync_options.admission_burst = *admission_burst;
  sync_options.max_concurrent_full_sends = max_full_sends;
  sync_options.hello_timeout = absl::Seconds(*hello_timeout_s);
  sync_options.handshake_timeout = absl::Seconds(*handshake_timeout_s);
  std::unique_ptr<SyncTestHooks> test_hooks;  // null in production
  if (const char* crash = std::getenv("PORTICO_TEST_CP_CRASH_AFTER_CHUNKS")) {
    size_t chunks = 0;
    if (!absl::SimpleAtoi(crash, &chunks)) {
      return Fail(absl::InvalidArgumentError("PORTICO_TEST_CP_CRASH_AFTER_CHUNKS must be a number"));
    }
    if (chunks > 0) test_hooks = std::make_unique<CrashAfterChunks>(chunks);
    PORTICO_LOG(kWarn, "cp", "TEST fault switch PORTICO_TEST_CP_CRASH_AFTER_CHUNKS=", crash);
  }
  sync_options.ack_timeout = absl::Seconds(*ack_timeout_s);
  sync_options.debounce_quiet = absl::Milliseconds(*debounce_quiet_ms);
  sync_options.debounce_max = absl::Milliseconds(*debounce_max_ms);
  sync_options.debounce_first = absl::Milliseconds(*debounce_first_ms);
  sync_options.metrics = &registry;
  Store* store_ptr = store->get();
  sync_options.read_changes = [store_ptr](uint64_t since) {
    return store_ptr->ReadConfigChanges(since, kMaxIncrementalChanges);
  };
  absl::StatusOr<std::unique_ptr<SyncServer>> sync = SyncServer::Start(
      sync_options, [store_ptr] { return store_ptr->ReadConfig(); }, clock, test_hooks.get());
  if (!sync.ok()) return Fail(sync.status());
  SyncServer* sync_ptr = sync->get();
  // This CP's DPs recorded in the database, and every CP's listed (several CPs on one database).
  ClusterDataPlanesOptions cluster_options;
  cluster_options.cp_id = node_id;
  cluster_options.cp_hostname = host_buf;
  cluster_options.purge_delay_seconds = purge_delay_s;
  ClusterDataPlanes cluster_data_planes(*sync_ptr, *store_ptr, clock, cluster_options);
  cluster_data_planes.Start();
  sync_ptr->SetOnDataPlanesChanged(cluster_data_planes.Poker());  // connects and disconnects saved at once

  AdminOptions admin_options;
  admin_options.node_id = node_id;
  admin_options.hostname = host_buf;
  admin_options.admin_listen = flags.Get("admin-listen");
  admin_options.cluster_listen = flags.Get("cluster-listen");
  admin_options.database_path = RedactedLocation(flags.Get("db"));  // no password in GET /
  admin_options.data_plane_purge_delay_seconds = purge_delay_s;
  // The registry's metrics, then portico_upstream_target_health (one series per connected DP and
  // target it reports, rendered from the DPs' heartbeats).
  admin_options.metrics_text = [&registry, sync_ptr] {
    return registry.Render() + sync_ptr->TargetHealthMetricsText();
  };
  admin_options.send_health_override = [sync_ptr](const TargetHealthOverride& command) {
    return sync_ptr->SendHealthOverride(command);
  };
  admin_options.token = admin_security->token;
  admin_options.max_body_bytes = max_body;
  admin_options.cors_origins = std::move(cors_origins);
  AdminApi admin(store_ptr, &cluster_data_planes, admin_options, [sync_ptr] { sync_ptr->NotifyConfigChanged(); },
                 clock);
  HttpServerOptions http_options;
  http_options.max_body_bytes = max_body;
  absl::StatusOr<std::unique_ptr<HttpServer>> http = HttpServer::Start(
      admin_addr->host, admin_addr->port,
      [&admin](const HttpRequest& request) { return admin.Handle(request); }, http_options);
  if (!http.ok()) return Fail(http.status());
  std::unique_ptr<HttpServer> https;
  if (admin_security->tls_addr) {
    HttpServerOptions https_options = http_options;
    https_options.tls_context = admin_security->tls_context.get();
    absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(
        admin_security->tls_addr->host, admin_security->tls_addr->port,
        [&admin](const HttpRequest& request) { return admin.Handle(request); }, https_options);
    if (!started.ok()) return Fail(started.status());
    https = *std::move(started);
    PORTICO_LOG(kInfo, "cp", "admin API (TLS", admin_security->client_ca ? ", client certificates required" : "",
                ") listening on ", admin_security->tls_addr->host, ":", https->port());
  }

  PORTICO_LOG(kInfo, "cp", "node ", node_id, " admin API listening on ", admin_addr->host, ":",
              (*http)->port(), admin_security->token ? " (bearer token required)" : "",
              ", cluster listening on port ", sync_ptr->port(), ", database ", RedactedLocation(flags.Get("db")));
  // Writes by another process (portico-cp config import on this database) reach the DPs too.
  VersionWatcher external_writes(
      *store_ptr, absl::Seconds(1), [sync_ptr] { return sync_ptr->BuildStatus().store_version; },
      [sync_ptr] { sync_ptr->NotifyConfigChanged(); });
  // SIGHUP: reload the cluster cert, key and CA for new connections (docs/tls.md).
  int sig = WaitForTerminationSignal([sync_ptr] { sync_ptr->ReloadCertificates().IgnoreError(); });
  PORTICO_LOG(kInfo, "cp", "signal ", sig, ", shutting down");
  external_writes.Stop();
  // The Admin API stops accepting and finishes the requests in flight (bounded); then the DPs
  // get Goaway{DRAINING} and reconnect with their backoff; the store closes last.
  const uint64_t admin_grace_ms = IsGracefulStopSignal(sig) ? kAdminDrainMs : 0;
  if (https) https->BeginStop(admin_grace_ms);
  (*http)->BeginStop(admin_grace_ms);
  if (https) https->Stop();
  (*http)->Stop();
  sync_ptr->Stop();
  cluster_data_planes.Stop();  // saves the ends of the streams the sync server just closed
  if (absl::Status s = (*store)->Close(); absl::IsUnavailable(s)) {
    PORTICO_LOG(kWarn, "cp", "stopped; database ", RedactedLocation(flags.Get("db")), " closed, but not checkpointed: ",
                s.message());
    return 0;
  } else if (!s.ok()) {
    PORTICO_LOG(kError, "cp", "closing the database: ", s.message());
    return 1;
  }
  PORTICO_LOG(kInfo, "cp", "stopped; database ", RedactedLocation(flags.Get("db")),
              IsPostgresLocation(flags.Get("db")) ? " closed" : " closed (WAL checkpointed)");
  return 0;
}

}  // namespace
}  // namespace portico::cp

int main(int argc, char** argv) {
  portico::DisableAbslDeadlockDetection();
  if (argc >= 2 && std::string(argv[1]) == "gen-certs") return portico::cp::GenCerts(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "config") return portico::cp::RunConfigCommand(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "check") {
    return portico::ConfCheck::Main("portico-cp", argc, argv, portico::cp::Serve);  // Kong's `kong check`
  }
  return portico::cp::Serve(argc, argv, /*check=*/nullptr);
}
