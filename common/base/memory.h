#pragma once
// Hands memory the allocator keeps after large, rare frees (a whole config loaded, compiled or
// replaced) back to the system. glibc keeps freed heap pages for reuse, so without this a CP that
// once loaded a 100,000-entity document stays at several hundred MiB. Costs a walk of the heap
// (milliseconds); call it after such events, never on the request path. No-op off glibc.
namespace portico {

void ReleaseFreedMemory();

}  // namespace portico
