#include "data_plane/plugins/request_termination/request_termination.h"

#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "common/config/entities.h"
#include "common/config/entity_json.h"
#include "data_plane/plugins/body_forms.h"
#include "data_plane/pipeline/query_arguments.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

// Kong's messages for a status when the config has no message (kong/plugins/request-termination).
absl::string_view DefaultMessage(int status) {
  switch (status) {
    case 401: return "Unauthorized";
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 500: return "An unexpected error occurred";
    case 502: return "Bad Gateway";
    case 503: return "Service unavailable";
    default: return "";
  }
}

class RequestTermination final : public PluginHandler {
 public:
  RequestTermination(const nlohmann::json& config, const ConfigSet& snapshot)
      : status_(config["status_code"].get<int>()),
        message_(config["message"].is_string() ? config["message"].get<std::string>()
                                                : std::string(DefaultMessage(status_))),
        body_(config["body"].is_string() ? config["body"].get<std::string>() : std::string()),
        content_type_(config["content_type"].is_string() ? config["content_type"].get<std::string>()
                                                          : std::string()),
        trigger_(config["trigger"].is_string() ? config["trigger"].get<std::string>() : std::string()),
        trigger_lower_(absl::AsciiStrToLower(trigger_)),
        echo_(config["echo"].get<bool>()) {
    if (!echo_) return;
    for (const config::v1::Route& r : snapshot.routes) routes_.emplace(&r, EntityToJson(RoutesKind(), r));
    for (const config::v1::Service& s : snapshot.services) services_.emplace(&s, EntityToJson(ServicesKind(), s));
  }

  StepStatus Access(RequestContext& request) const override {
    if (!trigger_.empty() && request.head->Find(trigger_lower_) == nullptr &&
        !HasQueryArgument(request.target.query)) {
      return StepStatus::kContinue;
    }
    // echo reads the body first (the trigger check above changes nothing, so the rerun is clean).
    if (echo_ && !request.ReadRequestBody()) return StepStatus::kSuspend;
    LocalResponse response;
    response.status = status_;
    if (echo_) {
      request.response_text = Echo(request).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      response.body = request.response_text;
      response.content_type = "application/json";
    } else if (!body_.empty()) {
      response.body = body_;
      response.content_type = content_type_;
    } else {
      response.message = message_;
    }
    request.Respond(response);
    return StepStatus::kStop;
  }

 private:
  // Kong's echo: multi-valued headers and query arguments become arrays, a query flag is true.
  nlohmann::json Echo(const RequestContext& request) const {
    auto add = [](nlohmann::json& object, const std::string& name, nlohmann::json value) {
      auto it = object.find(name);
      if (it == object.end()) {
        object[name] = std::move(value);
      } else {
        if (!it->is_array()) *it = nlohmann::json::array({*it});
        it->push_back(std::move(value));
      }
    };
    nlohmann::json headers = nlohmann::json::object();
    for (const auto& [name, value] : request.head->headers) add(headers, absl::AsciiStrToLower(name), value);
    nlohmann::json query = nlohmann::json::object();
    std::string name, value;
    ForEachQueryArgument(request.target.query, [&](absl::string_view raw_name, absl::string_view raw_value,
                                                   absl::string_view pair) {
      DecodeQueryValue(raw_name, &name);
      DecodeQueryValue(raw_value, &value);
      add(query, name, pair.find('=') == absl::string_view::npos ? nlohmann::json(true) : nlohmann::json(value));
    });
    absl::string_view host = request.host;
    if (const size_t colon = host.rfind(':'); colon != absl::string_view::npos && host.find(']', colon) == absl::string_view::npos) {
      host = host.substr(0, colon);
    }
    nlohmann::json out = {
        {"message", message_.empty() ? nlohmann::json(nullptr) : nlohmann::json(message_)},
        {"request",
         {{"scheme", request.tls ? "https" : "http"},
          {"host", std::string(host)},
          {"port", request.local_port},
          {"headers", std::move(headers)},
          {"query", std::move(query)},
          {"method", request.head->method},
          {"path", std::string(request.target.path)}}},
        {"matched_route", nullptr},
        {"matched_service", nullptr},
    };
    // Kong's get_body and get_raw_body; where they give nil the member is left out, as cjson
    // leaves out a nil field of a Lua table.
    const absl::string_view raw = CurrentRequestBody(request.request_body, request.upstream_body, request.upstream_body_set);
    nlohmann::json& echoed = out["request"];
    if (std::optional<ParsedBody> body =
            ParseRequestBody(request.head->Find("content-type"), raw, request.request_body_too_large)) {
      if (body->type == BodyType::kJson) {
        echoed["body"] = std::move(body->json);
      } else {  // form: one value a string (a flag `true`), several an array
        nlohmann::json fields = nlohmann::json::object();
        for (const FormArgument& arg : body->form) {
          nlohmann::json values = nlohmann::json::array();
          for (const FormValue& v : arg.values) values.push_back(v.flag ? nlohmann::json(true) : nlohmann::json(v.text));
          fields[arg.name] = values.size() == 1 ? std::move(values[0]) : std::move(values);
        }
        echoed["body"] = std::move(fields);
      }
    }
    if (!request.request_body_too_large) echoed["raw_body"] = std::string(raw);
    if (request.match.has_value()) {
      if (auto it = routes_.find(request.match->route); it != routes_.end()) out["matched_route"] = it->second;
      if (auto it = services_.find(request.match->service); it != services_.end()) out["matched_service"] = it->second;
    }
    return out;
  }

  bool HasQueryArgument(absl::string_view query) const {
    bool found = false;
    ForEachQueryArgument(query, [&](absl::string_view name, absl::string_view, absl::string_view) {
      found |= name == trigger_;
    });
    return found;
  }

  const int status_;
  const std::string message_;
  const std::string body_;
  const std::string content_type_;
  const std::string trigger_;
  const std::string trigger_lower_;
  const bool echo_;
  // With echo: the snapshot's routes and services as the Admin API shows them.
  absl::flat_hash_map<const config::v1::Route*, nlohmann::json> routes_;
  absl::flat_hash_map<const config::v1::Service*, nlohmann::json> services_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRequestTermination(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  return std::make_unique<const RequestTermination>(config, context.snapshot);
}

}  // namespace portico::dp::plugins
