// Writes the seed corpus of snapshot_decode_fuzz: real snapshots made by BuildSnapshot from
// configs shaped like the unit tests' and the benchmarks', each in both input modes of the target
// (byte 0 = 0: gzip stream; byte 0 = 1: uncompressed ConfigPayload).
//   snapshot_seeds OUT_DIR
// Rerun it when proto/ or the snapshot format changes (deploy/fuzz.sh does not; the seeds are
// committed in tests/fuzz/corpus/snapshot_decode_fuzz/).
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_format.h"
#include "common/base/clock.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"

namespace {

using portico::config::v1::Route;
using portico::config::v1::Service;

std::string Uuid(char kind, int n) { return absl::StrFormat("%c%07d-0000-4000-8000-%012d", kind, n, n); }

Service MakeService(int n, const std::string& host, int port = 80) {
  Service s;
  s.set_id(Uuid('a', n));
  s.set_name(absl::StrFormat("svc-%d", n));
  s.set_protocol("http");
  s.set_host(host);
  s.set_port(port);
  s.set_retries(5);
  s.set_connect_timeout(60000);
  s.set_write_timeout(60000);
  s.set_read_timeout(60000);
  s.set_enabled(true);
  return s;
}

Route MakeRoute(int n, int service) {
  Route r;
  r.set_id(Uuid('b', n));
  r.set_service_id(Uuid('a', service));
  r.add_protocols("http");
  r.add_protocols("https");
  r.set_https_redirect_status_code(426);
  r.set_strip_path(true);
  r.set_path_handling("v0");
  r.set_request_buffering(true);
  r.set_response_buffering(true);
  return r;
}

void AddHeader(Route* r, const std::string& name, const std::string& value) {
  (*r->mutable_headers()->mutable_values())[name].add_values(value);
}

// Every field kind the router and the validator look at.
portico::ConfigSet RichConfig() {
  portico::ConfigSet c;
  c.services.push_back(MakeService(1, "127.0.0.1", 8080));
  c.services.push_back(MakeService(2, "localhost"));
  Service v6 = MakeService(3, "::1", 9000);
  v6.set_path("/base");
  c.services.push_back(v6);
  Service dns = MakeService(4, "upstream.example.com", 443);
  dns.set_path("/v1/");
  c.services.push_back(dns);
  Service disabled = MakeService(5, "10.0.0.5");
  disabled.set_enabled(false);
  c.services.push_back(disabled);

  Route r1 = MakeRoute(1, 1);
  r1.mutable_paths()->add_values("/api");
  r1.mutable_paths()->add_values("/api/v2/");
  r1.mutable_methods()->add_values("GET");
  r1.mutable_methods()->add_values("POST");
  c.routes.push_back(r1);
  Route r2 = MakeRoute(2, 2);
  r2.mutable_hosts()->add_values("example.com");
  r2.mutable_hosts()->add_values("*.example.org");
  r2.mutable_hosts()->add_values("api.*");
  r2.mutable_hosts()->add_values("ports.test:8000");
  c.routes.push_back(r2);
  Route r3 = MakeRoute(3, 3);
  r3.mutable_paths()->add_values("~/users/(?<id>\\d+)$");
  r3.mutable_paths()->add_values("~/a|/b");
  r3.set_regex_priority(10);
  c.routes.push_back(r3);
  Route r4 = MakeRoute(4, 4);
  AddHeader(&r4, "x-version", "v1");
  AddHeader(&r4, "x-version", "~*^v[0-9]+$");
  AddHeader(&r4, "x-tenant", "acme");
  r4.set_preserve_host(true);
  r4.set_strip_path(false);
  c.routes.push_back(r4);
  Route r5 = MakeRoute(5, 1);
  r5.clear_protocols();
  r5.add_protocols("https");
  r5.mutable_snis()->add_values("secure.example.com");
  r5.mutable_paths()->add_values("/secure");
  r5.set_https_redirect_status_code(308);
  c.routes.push_back(r5);
  Route r6 = MakeRoute(6, 5);  // service disabled: not exported
  r6.mutable_paths()->add_values("/disabled");
  c.routes.push_back(r6);
  Route r7 = MakeRoute(7, 2);
  r7.clear_service_id();  // no service: 503
  r7.mutable_paths()->add_values("/orphan");
  r7.set_name("orphan");
  c.routes.push_back(r7);
  Route r8 = MakeRoute(8, 1);
  r8.mutable_paths()->add_values("~/api/v1/obj7/\\d+$");
  r8.mutable_paths()->add_values("~/files/[a-z]+\\.(png|jpg)");
  r8.mutable_methods()->add_values("DELETE");
  c.routes.push_back(r8);
  return c;
}

// Like the router benchmark: many hosts and paths.
portico::ConfigSet ManyRoutes(int count) {
  portico::ConfigSet c;
  c.services.push_back(MakeService(1, "127.0.0.1", 9001));
  for (int i = 0; i < count; ++i) {
    Route r = MakeRoute(100 + i, 1);
    r.mutable_hosts()->add_values(absl::StrFormat("host%d.example.com", i % 7));
    r.mutable_paths()->add_values(absl::StrFormat("/api/v1/obj%d", i));
    if (i % 5 == 0) r.mutable_paths()->add_values(absl::StrFormat("~/api/v1/obj%d/\\d+$", i));
    c.routes.push_back(r);
  }
  return c;
}

// The snapshot unit test's config (ids are not UUIDs: decodes, then fails validation).
portico::ConfigSet UnitTestConfig() {
  portico::ConfigSet c;
  for (const char* id : {"s1", "s2"}) {
    Service s;
    s.set_id(id);
    s.set_name(std::string("svc-") + id);
    s.set_protocol("http");
    s.set_host(std::string(id) == "s1" ? "a.example" : "b.example");
    s.set_port(80);
    s.set_enabled(true);
    c.services.push_back(s);
  }
  const char* routes[][3] = {{"r1", "s1", "/a"}, {"r2", "s2", "/b"}, {"r3", "", "/none"}};
  for (const auto& spec : routes) {
    Route r;
    r.set_id(spec[0]);
    if (*spec[1] != '\0') r.set_service_id(spec[1]);
    r.add_protocols("http");
    r.mutable_paths()->add_values(spec[2]);
    c.routes.push_back(r);
  }
  return c;
}

std::string Gunzip(const std::string& in) {
  z_stream z{};
  inflateInit2(&z, 16 + MAX_WBITS);
  std::string out(in.size() * 20 + 4096, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  inflate(&z, Z_FINISH);
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

bool Write(const std::string& path, char mode, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.put(mode);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const portico::FakeClock clock(1700000000);
  struct Named {
    const char* name;
    portico::ConfigSet config;
  };
  const Named configs[] = {{"empty", {}},
                           {"unit", UnitTestConfig()},
                           {"rich", RichConfig()},
                           {"many", ManyRoutes(40)}};
  int version = 1;
  for (const Named& named : configs) {
    portico::StoredConfig stored;
    stored.version.epoch = std::string(16, '\x42');
    stored.version.version = static_cast<uint64_t>(version++);
    stored.config = named.config;
    const absl::Status valid = portico::ValidateConfigSet(portico::ExportableConfig(named.config));
    auto built = portico::BuildSnapshot(stored, clock);
    if (!built.ok()) {
      std::fprintf(stderr, "%s: %s\n", named.name, built.status().ToString().c_str());
      return 1;
    }
    const std::string& gz = (*built)->compressed;
    if (!Write(dir + "/" + named.name + ".gz.seed", '\0', gz) ||
        !Write(dir + "/" + named.name + ".raw.seed", '\1', Gunzip(gz))) {
      std::fprintf(stderr, "cannot write into %s\n", dir.c_str());
      return 1;
    }
    std::printf("%s: %zu services, %zu routes, %zu bytes gzip, %llu raw, validator: %s\n", named.name,
                (*built)->service_count, (*built)->route_count, gz.size(),
                static_cast<unsigned long long>((*built)->uncompressed_size), valid.ToString().c_str());
  }
  return 0;
}
