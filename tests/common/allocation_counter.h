#pragma once
// Counts the heap allocations of the thread that asks, for tests that check a path allocates
// nothing once warm: set g_count_allocations, run, read g_allocations. It replaces the global
// operator new/delete, so include it in exactly ONE source file of a test binary.
#include <cstddef>
#include <cstdlib>
#include <new>

inline thread_local bool g_count_allocations = false;
inline thread_local size_t g_allocations = 0;

// Not inlined, so that the compiler does not pair this malloc/free with the standard new/delete.
__attribute__((noinline)) void* operator new(size_t size) {
  if (g_count_allocations) ++g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, size_t) noexcept { std::free(p); }
