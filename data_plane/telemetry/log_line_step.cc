#include "data_plane/telemetry/log_line_step.h"

#include <uv.h>

#include "data_plane/telemetry/log_serializer.h"

namespace portico::dp {

bool WriteLogLine(const RequestContext& request, int status, LogWriter& writer,
                  absl::Span<const std::string> extra_redacted) {
  thread_local std::string line;  // one per worker thread, kept with its capacity
  line.clear();
  AppendLogEntry(request, status, UnixNowMs(), uv_hrtime(), &line, extra_redacted);
  line.push_back('\n');
  return writer.Push(request.worker_index, line);
}

}  // namespace portico::dp
