#pragma once
// The log step of --access-log (and the core of file-log): formats the request's entry
// (log_serializer.h) into the worker thread's own buffer and pushes it, with a newline, to a
// LogWriter's ring for that worker. No lock; no allocation once the buffer has grown to the
// largest entry; a full ring drops the line (counted by the writer).
#include <memory>
#include <string>
#include <vector>

#include "data_plane/pipeline/pipeline.h"
#include "data_plane/telemetry/log_writer.h"

namespace portico::dp {

// Formats the entry of `request` followed by '\n' into a per-thread buffer and pushes it to
// `writer` for request.worker_index. False when the writer dropped it.
bool WriteLogLine(const RequestContext& request, int status, LogWriter& writer,
                  absl::Span<const std::string> extra_redacted = {});

// One snapshot's access log step: `redacted_names` are that snapshot's configured credential
// names (ConfiguredCredentialNames).
class LogLineStep final : public LogStep {
 public:
  LogLineStep(std::shared_ptr<LogWriter> writer, std::vector<std::string> redacted_names)
      : writer_(std::move(writer)), redacted_names_(std::move(redacted_names)) {}
  void OnLog(const RequestContext& request, int status) const override {
    WriteLogLine(request, status, *writer_, redacted_names_);
  }

 private:
  std::shared_ptr<LogWriter> writer_;
  std::vector<std::string> redacted_names_;
};

}  // namespace portico::dp
