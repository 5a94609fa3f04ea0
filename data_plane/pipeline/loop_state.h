#pragma once
// State that request steps keep per worker loop, such as a plugin's connections to Redis: created
// by the loop's thread on first use, found again by kind, and closed by the loop's owner before
// the loop ends (the proxy worker, when it stops). No lock: a loop is touched only by its thread.
#include <uv.h>

#include <memory>

namespace portico::dp {

class LoopState {
 public:
  virtual ~LoopState() = default;
  // The loop is stopping: stop every timer and connection. The state owns itself from here and
  // deletes itself once its handles are closed (the loop's owner keeps running the loop).
  virtual void Close() = 0;
};

// The state of `kind` (any address that names the kind, e.g. a static of its file) on `loop`, or
// null. Called on the loop's thread.
LoopState* FindLoopState(const uv_loop_t* loop, const void* kind);
// Registers `state` as `kind` on `loop` (owned until CloseLoopStates). The loop's thread.
LoopState* AddLoopState(const uv_loop_t* loop, const void* kind, std::unique_ptr<LoopState> state);
// Closes and forgets every state of `loop` (the loop's thread); the loop must then run until the
// states' handles are closed.
void CloseLoopStates(const uv_loop_t* loop);

}  // namespace portico::dp
