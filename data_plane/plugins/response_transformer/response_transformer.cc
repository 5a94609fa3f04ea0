#include "data_plane/plugins/response_transformer/response_transformer.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/plugins/request_transformer.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

struct HeaderEdit {
  std::string name;
  std::string name_lower;
  std::string value;  // rename: the new name
};

class ResponseTransformer final : public PluginHandler {
 public:
  StepStatus Access(RequestContext&) const override { return StepStatus::kContinue; }
  bool filters_headers() const override { return true; }

  void HeaderFilter(RequestContext& request, int) const override {
    for (const HeaderEdit& e : remove_) Drop(request, e);
    for (const HeaderEdit& e : rename_) {
      if (!Exists(request, e)) continue;
      if (request.response_head != nullptr && !Dropped(request, e)) {
        for (const auto& [name, value] : request.response_head->headers) {
          if (absl::EqualsIgnoreCase(name, e.name)) request.response_headers.Add(e.value, value);
        }
        request.response_headers_removed.push_back(e.name_lower);
      }
      request.response_headers.Rename(e.name, e.value);
    }
    for (const HeaderEdit& e : replace_) {
      if (!Exists(request, e)) continue;
      Drop(request, e);
      request.response_headers.Add(e.name, e.value);
    }
    for (const HeaderEdit& e : add_) {
      if (!Exists(request, e)) request.response_headers.Add(e.name, e.value);
    }
    for (const HeaderEdit& e : append_) request.response_headers.Add(e.name, e.value);
  }

  std::vector<HeaderEdit> remove_, rename_, replace_, add_, append_;

 private:
  static bool Dropped(const RequestContext& request, const HeaderEdit& e) {
    for (absl::string_view d : request.response_headers_removed) {
      if (d == e.name_lower) return true;
    }
    return false;
  }
  static bool Exists(const RequestContext& request, const HeaderEdit& e) {
    if (request.response_headers.Contains(e.name)) return true;
    if (request.response_head == nullptr || Dropped(request, e)) return false;
    return request.response_head->Find(e.name) != nullptr;
  }
  static void Drop(RequestContext& request, const HeaderEdit& e) {
    if (request.response_head != nullptr && !Dropped(request, e)) request.response_headers_removed.push_back(e.name_lower);
    request.response_headers.Remove(e.name);
  }
};

// "name:value" items (remove: names only).
std::vector<HeaderEdit> Edits(const nlohmann::json& list, bool pairs) {
  std::vector<HeaderEdit> out;
  for (const nlohmann::json& item : list) {
    const portico::plugins::TransformerPair pair =
        portico::plugins::SplitTransformerPair(item.get_ref<const std::string&>());
    HeaderEdit& e = out.emplace_back();
    e.name = std::string(pair.name);
    if (pairs) e.value = std::string(pair.value);
    e.name_lower = absl::AsciiStrToLower(e.name);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileResponseTransformer(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  auto handler = std::make_unique<ResponseTransformer>();
  handler->remove_ = Edits(config["remove"]["headers"], false);
  handler->rename_ = Edits(config["rename"]["headers"], true);
  handler->replace_ = Edits(config["replace"]["headers"], true);
  handler->add_ = Edits(config["add"]["headers"], true);
  handler->append_ = Edits(config["append"]["headers"], true);
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
