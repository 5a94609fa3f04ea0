#include "data_plane/pipeline/loop_state.h"

#include <utility>
#include <vector>

namespace portico::dp {
namespace {

struct Entry {
  const uv_loop_t* loop;
  const void* kind;
  std::unique_ptr<LoopState> state;
};

// Per thread: a worker thread runs one loop, a test may run several in turn.
std::vector<Entry>& Entries() {
  thread_local std::vector<Entry> entries;
  return entries;
}

}  // namespace

LoopState* FindLoopState(const uv_loop_t* loop, const void* kind) {
  for (const Entry& e : Entries()) {
    if (e.loop == loop && e.kind == kind) return e.state.get();
  }
  return nullptr;
}

LoopState* AddLoopState(const uv_loop_t* loop, const void* kind, std::unique_ptr<LoopState> state) {
  LoopState* raw = state.get();
  Entries().push_back(Entry{loop, kind, std::move(state)});
  return raw;
}

void CloseLoopStates(const uv_loop_t* loop) {
  std::vector<Entry>& entries = Entries();
  std::vector<LoopState*> closing;
  for (auto it = entries.begin(); it != entries.end();) {
    if (it->loop == loop) {
      closing.push_back(it->state.release());
      it = entries.erase(it);
    } else {
      ++it;
    }
  }
  for (LoopState* state : closing) state->Close();
}

}  // namespace portico::dp
