#pragma once
// The plugin chain: a snapshot's plugins compiled once and resolved per route the way Kong
// resolves them (KONG-REFERENCE.md §6.1): for each plugin name the most specific instance wins,
// route+service+consumer, route+consumer, service+consumer, route+service, consumer, route,
// service, global; the names run in descending priority (equal priority: name descending). A
// consumer scope applies when an earlier plugin (an auth plugin, which runs first by priority)
// has identified that consumer. The chain is one request step in the access phase; a snapshot
// without plugins adds nothing to the pipeline. A plugin may suspend the chain (kSuspend, e.g.
// while Redis answers): the chain step then suspends the request, remembers the plugin's position
// in the RequestContext, forwards OnCancel to that plugin, and goes on with the next plugin when
// the plugin calls ResumePluginChain.
#include "absl/status/status.h"
#include "common/config/config_set.h"
#include "data_plane/pipeline/pipeline.h"

namespace portico::dp::plugins {

// Compiles `config`'s plugins (it must outlive `pipeline`) and adds the chain step. Fails, naming
// the plugin and the field, when a plugin has no handler here or its config does not compile.
absl::Status AddPluginChain(const ConfigSet& config, Pipeline* pipeline);

// Ends a plugin's suspension: kContinue runs the chain's next plugins (and resumes the request
// when they are done), kStop (after RequestContext::Respond) ends the chain and the request's
// steps. Exactly once per kSuspend, on request.loop, never after the plugin's OnCancel; may be
// called before Access returns.
void ResumePluginChain(RequestContext& request, StepStatus status);

}  // namespace portico::dp::plugins
