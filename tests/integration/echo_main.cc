// portico-echo: the small upstream the quick start and benchmarks use. Answers every request
// with JSON describing what it received (the same server the integration tests use).
#include <signal.h>

#include <cstdio>
#include <cstdlib>

#include "tests/integration/harness.h"

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 0;
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "usage: portico-echo [PORT]\n");
    return 2;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  portico::testing::EchoUpstream upstream("portico-echo", static_cast<uint16_t>(port));
  if (upstream.port() == 0) return 1;  // it could not listen (and said why)
  std::printf("portico-echo listening on 127.0.0.1:%u\n", upstream.port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}
