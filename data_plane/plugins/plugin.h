#pragma once
// What a data-plane plugin is: a handler compiled once per snapshot from the plugin's normalized
// config (common/plugins validated it), shared read-only by every worker, run by the plugin chain
// (chain.h) in Kong's priority order. A plugin lives in its own folder here and is listed once in
// registry.cc; the proxy knows plugins only through the chain. docs/plugins.md "How to add a
// plugin".
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/config_set.h"
#include "data_plane/pipeline/pipeline.h"
#include "nlohmann/json_fwd.hpp"

namespace portico::dp::plugins {

class PluginHandler {
 public:
  virtual ~PluginHandler() = default;
  // Kong's access phase: kContinue, or kStop after RequestContext::Respond. Thread-safe and
  // allocation-free on the request path; never blocks the worker loop. A plugin waiting for I/O
  // returns kSuspend and later calls ResumePluginChain (chain.h) exactly once, on request.loop,
  // unless OnCancel came first; the snapshot (and so the handler) stays pinned meanwhile. A
  // plugin that needs the request body returns kSuspend when RequestContext::ReadRequestBody
  // returns false (and does not call ResumePluginChain): its Access runs again, from the start,
  // once the body is read.
  virtual StepStatus Access(RequestContext& request) const = 0;
  // Kong's header_filter phase, for handlers whose filters_headers() is true: runs (in the chain's
  // order) for every response that goes to the client of a request the chain ran for, upstream
  // (request.response_head set) or local. It may add headers (request.response_headers) and drop
  // the upstream's (request.response_headers_removed). Same rules as Access; never answers.
  virtual void HeaderFilter(RequestContext& request, int status) const {}
  virtual bool filters_headers() const { return false; }
  // Kong's body_filter phase, for handlers whose filters_body() is true, on a whole upstream
  // response body buffered because a HeaderFilter asked for it (request.buffer_response_body):
  // runs in the chain's order, may rewrite request.response_body (request.response_head is the
  // upstream's head). Not called for local responses, responses without a body, or bodies longer
  // than RequestContext::kMaxBufferedResponseBody (those reach the client unchanged).
  virtual void BodyFilter(RequestContext& request, int status) const {}
  virtual bool filters_body() const { return false; }
  // Kong's log phase, for handlers whose logs() is true: once, when the exchange ends (after the
  // response went out, or when the client went away or the connection failed first: then
  // `status` is 499 unless the response had started; see dp::LogStep).
  virtual void Log(const RequestContext& request, int status) const {}
  virtual bool logs() const { return false; }
  // True when the plugin reads RequestContext::plugin_timings (opentelemetry): the chain then
  // times every plugin's Access for the requests of a snapshot that has this plugin.
  virtual bool times_plugins() const { return false; }
  // The request went away while this plugin was suspended (on its I/O, or waiting for the
  // request body): ResumePluginChain must not be called for it any more
  // (RequestContext::suspended_data is the plugin's, null when it set none).
  virtual void OnCancel(RequestContext& request) const {}
};

// What a plugin is compiled from. `config` is the normalized config (an object with every field
// of the schema); `snapshot` the whole config it came with (consumers, credentials) and `plugin`
// the entity, both outliving the handler.
struct PluginCompileContext {
  const nlohmann::json& config;
  const ConfigSet& snapshot;
  const config::v1::Plugin& plugin;
};

struct PluginFactory {
  const char* name;  // Kong's plugin name; also a schema in common/plugins
  // An error names the field ("config.allow.1: ...").
  absl::StatusOr<std::unique_ptr<const PluginHandler>> (*compile)(const PluginCompileContext& context);
};

// Answers the request with `status` and Kong's {"message": message} body; returns kStop.
inline StepStatus RespondWithMessage(RequestContext& request, int status, absl::string_view message) {
  LocalResponse response;
  response.status = status;
  response.message = message;
  request.Respond(response);
  return StepStatus::kStop;
}

// The factory for a plugin name, or null when the DP has no handler for it.
const PluginFactory* FindPluginFactory(absl::string_view name);
// Every plugin this DP can run (announced to the CP in Hello).
std::vector<std::string> RunnablePluginNames();

}  // namespace portico::dp::plugins
