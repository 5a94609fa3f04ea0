// LD_PRELOAD allocation counter for benchmarks (not linked into any Portico binary).
//
// Counts every malloc/calloc/realloc/memalign-family call and every free in the process (C++
// operator new/delete reach malloc/free through libstdc++). On the signal MALLOC_COUNT_SIGNAL
// (default SIGRTMIN+3) it appends one line to the file MALLOC_COUNT_FILE (default: stderr):
//   malloc_count pid=<pid> allocs=<n> frees=<n> bytes=<n>
// The benchmark takes two such lines around a load of known size and divides the difference by
// the number of requests. The counters are process-wide relaxed atomics: they never block.
// Forwards to glibc's __libc_* entry points, so no dlsym bootstrap is needed.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t count, size_t size);
extern void* __libc_realloc(void* ptr, size_t size);
extern void* __libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void* ptr);

static uint64_t g_allocs, g_frees, g_bytes;
static int g_out_fd = 2;

static void Count(size_t size) {
  __atomic_fetch_add(&g_allocs, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&g_bytes, size, __ATOMIC_RELAXED);
}

void* malloc(size_t size) {
  Count(size);
  return __libc_malloc(size);
}
void* calloc(size_t count, size_t size) {
  Count(count * size);
  return __libc_calloc(count, size);
}
void* realloc(void* ptr, size_t size) {
  Count(size);
  return __libc_realloc(ptr, size);
}
void free(void* ptr) {
  if (ptr != NULL) __atomic_fetch_add(&g_frees, 1, __ATOMIC_RELAXED);
  __libc_free(ptr);
}
void* memalign(size_t alignment, size_t size) {
  Count(size);
  return __libc_memalign(alignment, size);
}
void* aligned_alloc(size_t alignment, size_t size) {
  Count(size);
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, size_t alignment, size_t size) {
  Count(size);
  void* p = __libc_memalign(alignment, size);
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}
void* valloc(size_t size) {
  Count(size);
  return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

// Async-signal-safe formatting: decimal digits into `out`, returns the length.
static size_t FormatU64(uint64_t value, char* out) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = (char)('0' + value % 10);
    value /= 10;
  } while (value != 0);
  for (size_t i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
  return n;
}

static size_t Append(char* line, size_t at, const char* text) {
  size_t n = strlen(text);
  memcpy(line + at, text, n);
  return at + n;
}

static void OnReportSignal(int sig) {
  (void)sig;
  const int saved_errno = errno;
  char line[160];
  size_t at = Append(line, 0, "malloc_count pid=");
  at += FormatU64((uint64_t)getpid(), line + at);
  at = Append(line, at, " allocs=");
  at += FormatU64(__atomic_load_n(&g_allocs, __ATOMIC_RELAXED), line + at);
  at = Append(line, at, " frees=");
  at += FormatU64(__atomic_load_n(&g_frees, __ATOMIC_RELAXED), line + at);
  at = Append(line, at, " bytes=");
  at += FormatU64(__atomic_load_n(&g_bytes, __ATOMIC_RELAXED), line + at);
  line[at++] = '\n';
  ssize_t unused = write(g_out_fd, line, at);
  (void)unused;
  errno = saved_errno;
}

__attribute__((constructor)) static void MallocCountInit(void) {
  const char* path = getenv("MALLOC_COUNT_FILE");
  if (path != NULL && path[0] != '\0') {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) g_out_fd = fd;
  }
  int sig = SIGRTMIN + 3;
  const char* sig_text = getenv("MALLOC_COUNT_SIGNAL");
  if (sig_text != NULL && sig_text[0] != '\0') sig = atoi(sig_text);
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = OnReportSignal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(sig, &action, NULL);
}
