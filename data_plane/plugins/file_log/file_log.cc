#include "data_plane/plugins/file_log/file_log.h"

#include "absl/strings/str_cat.h"
#include "data_plane/telemetry/log_line_step.h"
#include "data_plane/telemetry/log_serializer.h"
#include "data_plane/telemetry/log_writer.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

class FileLog final : public PluginHandler {
 public:
  FileLog(std::shared_ptr<LogWriter> writer, std::vector<std::string> redacted_names)
      : writer_(std::move(writer)), redacted_names_(std::move(redacted_names)) {}
  StepStatus Access(RequestContext&) const override { return StepStatus::kContinue; }
  void Log(const RequestContext& request, int status) const override {
    WriteLogLine(request, status, *writer_, redacted_names_);
  }
  bool logs() const override { return true; }

 private:
  std::shared_ptr<LogWriter> writer_;  // LogWriters::Prune stops it once no snapshot holds it
  std::vector<std::string> redacted_names_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileFileLog(const PluginCompileContext& context) {
  auto path = context.config.find("path");
  if (path == context.config.end() || !path->is_string()) {
    return absl::InvalidArgumentError("config.path: required field missing");
  }
  // A file that cannot be opened (yet) does not refuse the config: its writer retries, dropping
  // and counting the lines meanwhile.
  absl::StatusOr<std::shared_ptr<LogWriter>> writer = LogWriters::Global().Get(path->get<std::string>());
  if (!writer.ok()) return absl::InvalidArgumentError(absl::StrCat("config.path: ", writer.status().message()));
  return std::unique_ptr<const PluginHandler>(
      std::make_unique<FileLog>(*std::move(writer), ConfiguredCredentialNames(context.snapshot)));
}

}  // namespace portico::dp::plugins
