#include "data_plane/plugins/file_log/file_log.h"

#include "absl/strings/str_cat.h"
#include "data_plane/telemetry/log_line_step.h"
#include "data_plane/telemetry/log_writer.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

class FileLog final : public PluginHandler {
 public:
  explicit FileLog(LogWriter* writer) : writer_(writer) {}
  StepStatus Access(RequestContext&) const override { return StepStatus::kContinue; }
  void Log(const RequestContext& request, int status) const override { WriteLogLine(request, status, *writer_); }
  bool logs() const override { return true; }

 private:
  LogWriter* writer_;  // LogWriters keeps it for the process's life
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileFileLog(const PluginCompileContext& context) {
  auto path = context.config.find("path");
  if (path == context.config.end() || !path->is_string()) {
    return absl::InvalidArgumentError("config.path: required field missing");
  }
  absl::StatusOr<LogWriter*> writer = LogWriters::Global().Get(path->get<std::string>());
  if (!writer.ok()) return absl::InvalidArgumentError(absl::StrCat("config.path: ", writer.status().message()));
  return std::unique_ptr<const PluginHandler>(std::make_unique<FileLog>(*writer));
}

}  // namespace portico::dp::plugins
