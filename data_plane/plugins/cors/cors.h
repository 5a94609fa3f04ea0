#pragma once
// cors (Kong 3.x): a preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered
// 200 by the plugin with Access-Control-Allow-Origin/-Credentials/-Headers/-Methods/-Max-Age
// (and -Private-Network), unless `preflight_continue` sends it upstream untouched. Every other
// request (with an Origin, or without one when `allow_origin_absent`) gets
// Access-Control-Allow-Origin, -Credentials, -Expose-Headers and `Vary: Origin` on its response,
// upstream or local; they replace the upstream's own (a non-matching Origin removes the upstream's
// Access-Control-Allow-Origin), as Kong's set_header/clear_header do.
//
// Origins follow Kong's rules: none or ["*"] allow all; a single plain origin is sent as is
// whatever the request's Origin; otherwise the request's Origin, normalized (scheme://host[:port],
// default ports dropped), is compared with each plain origin or matched against each regex
// (anchored at both ends; against the Origin's host when the regex has no ':'), and echoed when
// one matches. Regexes are RE2, compiled once per snapshot. No allocation on the request path once
// warm (the normalized Origin is built in the request's scratch string).
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileCors(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
