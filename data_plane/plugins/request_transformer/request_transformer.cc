#include "data_plane/plugins/request_transformer/request_transformer.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/http/known_headers.h"
#include "common/plugins/request_transformer.h"
#include "data_plane/plugins/body_forms.h"
#include "data_plane/pipeline/query_arguments.h"
#include "data_plane/router/router.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

using portico::plugins::SplitTransformerPair;
using portico::plugins::TransformerPair;

// One configured operation: a header or query argument name and, but for `remove`, a value (the
// new name for `rename`).
struct Operation {
  std::string name;
  std::string lower;  // headers: the name in lowercase
  std::string value;
};

// The five operations of headers or of the query, in Kong's order.
struct Operations {
  std::vector<Operation> remove, rename, replace, add, append;
  bool empty() const { return remove.empty() && rename.empty() && replace.empty() && add.empty() && append.empty(); }
};

// ---- headers: the client's (minus request.upstream_headers_removed) overridden by
// request.upstream_headers, as the upstream request is built (data_plane/pipeline/upstream_request.h)

bool IsRemoved(const RequestContext& r, absl::string_view name) {
  for (absl::string_view removed : r.upstream_headers_removed) {
    if (absl::EqualsIgnoreCase(removed, name)) return true;
  }
  return false;
}

bool ClientHas(const RequestContext& r, absl::string_view name) {
  for (const auto& [n, v] : r.head->headers) {
    if (absl::EqualsIgnoreCase(n, name)) return !IsRemoved(r, name);
  }
  return false;
}

bool SetHas(const RequestContext& r, absl::string_view name) {
  for (const auto& [n, v] : r.upstream_headers) {
    if (absl::EqualsIgnoreCase(n, name)) return true;
  }
  return false;
}

bool Present(const RequestContext& r, absl::string_view name) { return SetHas(r, name) || ClientHas(r, name); }

void EraseSet(RequestContext& r, absl::string_view name) {
  auto& set = r.upstream_headers;
  auto named = [name](const std::pair<absl::string_view, absl::string_view>& h) {
    return absl::EqualsIgnoreCase(h.first, name);
  };
  set.erase(std::remove_if(set.begin(), set.end(), named), set.end());
}

// Sends the header's values (those set by plugins, else the client's) again under `name`.
void CopyValues(RequestContext& r, absl::string_view from, absl::string_view name) {
  if (SetHas(r, from)) {
    for (size_t i = 0, n = r.upstream_headers.size(); i < n; ++i) {
      if (absl::EqualsIgnoreCase(r.upstream_headers[i].first, from)) {
        const absl::string_view value = r.upstream_headers[i].second;  // the vector may grow below
        r.upstream_headers.emplace_back(name, value);
      }
    }
  } else if (!IsRemoved(r, from)) {
    for (const auto& [n, v] : r.head->headers) {
      if (absl::EqualsIgnoreCase(n, from)) r.upstream_headers.emplace_back(name, v);
    }
  }
}

void RemoveHeader(RequestContext& r, const Operation& op) {
  const bool client = ClientHas(r, op.lower);
  EraseSet(r, op.lower);
  if (client) r.upstream_headers_removed.push_back(op.lower);
}

// ---- the query: decoded into per-thread storage that keeps its capacity, changed, re-encoded

// One argument; a value with a null data() is Kong's `true` (an argument without '=').
struct QueryArgument {
  absl::string_view name;
  std::vector<absl::string_view> values;
  bool live = false;
};

struct QueryScratch {
  std::string decoded;  // names and values of the request's arguments, decoded
  std::string one;      // one decoded name or value
  std::vector<QueryArgument> args;  // args[0, count) are in use; the rest keep their capacity
  size_t count = 0;
  std::string pieces;   // each argument encoded as Kong's ngx.encode_args encodes it
  std::vector<std::pair<size_t, size_t>> spans;
  std::vector<absl::string_view> sorted;

  QueryArgument& Append(absl::string_view name) {
    if (count == args.size()) args.emplace_back();
    QueryArgument& arg = args[count++];
    arg.name = name;
    arg.values.clear();
    arg.live = true;
    return arg;
  }
  QueryArgument* Find(absl::string_view name) {
    for (size_t i = 0; i < count; ++i) {
      if (args[i].live && args[i].name == name) return &args[i];
    }
    return nullptr;
  }
};

QueryScratch& Scratch() {
  thread_local QueryScratch scratch;
  return scratch;
}

// Kong's get_uri_args: '&'-separated, decoded ('+' is a space), empty names skipped, repeated
// names collected in order.
void ParseQuery(absl::string_view query, QueryScratch& q) {
  q.count = 0;
  q.decoded.clear();
  q.decoded.reserve(query.size());  // decoding never grows: the views below stay valid
  auto keep = [&q](absl::string_view raw) {
    DecodeQueryValue(raw, &q.one);
    const size_t at = q.decoded.size();
    q.decoded.append(q.one);
    return absl::string_view(q.decoded.data() + at, q.one.size());
  };
  ForEachQueryArgument(query, [&](absl::string_view raw_name, absl::string_view raw_value, absl::string_view pair) {
    const absl::string_view name = keep(raw_name);
    if (name.empty()) return;
    const absl::string_view value = pair.find('=') == absl::string_view::npos ? absl::string_view() : keep(raw_value);
    QueryArgument* arg = q.Find(name);
    if (arg == nullptr) arg = &q.Append(name);
    arg->values.push_back(value);
  });
}

// Kong's set_query: each argument encoded ("a=1&a=2", "flag"), the pieces sorted, joined by '&'.
void EncodeQuery(QueryScratch& q, std::string* out) {
  q.pieces.clear();
  q.spans.clear();
  for (size_t i = 0; i < q.count; ++i) {
    const QueryArgument& arg = q.args[i];
    if (!arg.live) continue;
    const size_t start = q.pieces.size();
    for (size_t v = 0; v < arg.values.size(); ++v) {
      if (v > 0) q.pieces.push_back('&');
      AppendEscaped(&q.pieces, arg.name);
      if (arg.values[v].data() == nullptr) continue;
      q.pieces.push_back('=');
      AppendEscaped(&q.pieces, arg.values[v]);
    }
    q.spans.emplace_back(start, q.pieces.size() - start);
  }
  q.sorted.clear();
  for (const auto& [start, size] : q.spans) q.sorted.emplace_back(q.pieces.data() + start, size);
  std::sort(q.sorted.begin(), q.sorted.end());
  out->clear();
  for (absl::string_view piece : q.sorted) {
    if (!out->empty()) out->push_back('&');
    out->append(piece.data(), piece.size());
  }
}

class RequestTransformer final : public PluginHandler {
 public:
  StepStatus Access(RequestContext& request) const override {
    // The body first: until it is read nothing is changed, so the rerun starts clean.
    BodyType body_type = BodyType::kOther;
    if (!body_.empty()) {
      body_type = TransformerBodyType(request.head->Find("content-type"));
      if (body_type != BodyType::kJson && body_type != BodyType::kForm) body_type = BodyType::kOther;
      if (body_type != BodyType::kOther && !request.ReadRequestBody()) return StepStatus::kSuspend;
    }
    if (!path_.empty()) request.upstream_path = path_;
    if (!method_.empty() && request.head->method != "HEAD") request.upstream_method = method_;
    if (!headers_.empty()) TransformHeaders(request);
    if (body_type != BodyType::kOther && !request.request_body_too_large) TransformBody(request, body_type);
    if (!query_.empty()) TransformQuery(request);
    return StepStatus::kContinue;
  }

  std::string path_;    // replace.uri, escaped; empty: unchanged
  std::string method_;  // empty: unchanged
  Operations headers_;  // Host only in replace (or as a rename's new name); none the proxy writes itself
  Operations query_;
  Operations body_;     // names and values as configured

 private:
  // Kong's transform_json_body / transform_url_encoded_body. remove, rename and replace apply to
  // a non-empty body only; add and append also make a body of an empty one. Any operation that
  // ran (changed something or not) re-encodes the body.
  void TransformBody(RequestContext& r, BodyType type) const {
    const absl::string_view body = CurrentRequestBody(r.request_body, r.upstream_body, r.upstream_body_set);
    const bool edits = !body.empty() && (!body_.remove.empty() || !body_.rename.empty() || !body_.replace.empty());
    if (!edits && body_.add.empty() && body_.append.empty()) return;
    std::string out;
    if (type == BodyType::kJson) {
      nlohmann::json object = nlohmann::json::object();
      if (!body.empty()) {
        object = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
        if (!object.is_object()) return;  // not JSON, or not an object: unchanged
      }
      if (!body.empty()) {
        for (const Operation& op : body_.remove) object.erase(op.name);
        for (const Operation& op : body_.rename) JsonRenameMember(object, op.name, op.value);
        for (const Operation& op : body_.replace) {
          if (JsonMemberTruthy(object, op.name)) object[op.name] = op.value;
        }
      }
      for (const Operation& op : body_.add) {
        if (!JsonMemberTruthy(object, op.name)) object[op.name] = op.value;
      }
      for (const Operation& op : body_.append) JsonAppendValue(object, op.name, op.value);
      out = DumpJson(object);
    } else {
      FormArguments args = DecodeForm(body);
      if (!body.empty()) {
        for (const Operation& op : body_.remove) EraseFormArgument(args, op.name);
        for (const Operation& op : body_.rename) {  // parameters[new] = parameters[old]; parameters[old] = nil
          EraseFormArgument(args, op.value);
          if (FormArgument* arg = FindFormArgument(args, op.name)) arg->name = op.value;
        }
        for (const Operation& op : body_.replace) {
          if (FormArgument* arg = FindFormArgument(args, op.name)) arg->values.assign(1, FormValue{op.value, false});
        }
      }
      for (const Operation& op : body_.add) {
        if (FindFormArgument(args, op.name) == nullptr) args.push_back(FormArgument{op.name, {FormValue{op.value, false}}});
      }
      for (const Operation& op : body_.append) AppendFormValue(args, op.name, op.value);
      out = EncodeFormSorted(args);
    }
    r.upstream_body = std::move(out);
    r.upstream_body_set = true;
  }

  void TransformHeaders(RequestContext& r) const {
    for (const Operation& op : headers_.remove) RemoveHeader(r, op);
    for (const Operation& op : headers_.rename) {
      if (!Present(r, op.lower)) continue;
      if (absl::EqualsIgnoreCase(op.name, op.value)) {  // Kong sets the new name, then clears the old one
        RemoveHeader(r, op);
        continue;
      }
      if (absl::EqualsIgnoreCase(op.value, "host")) {
        r.upstream_host = SetHas(r, op.lower) ? FirstSet(r, op.lower) : *r.head->Find(op.lower);
      } else {
        EraseSet(r, op.value);
        CopyValues(r, op.lower, op.value);
      }
      RemoveHeader(r, op);
    }
    for (const Operation& op : headers_.replace) {
      if (op.lower == "host") {
        r.upstream_host = op.value;
      } else if (Present(r, op.lower)) {
        EraseSet(r, op.lower);
        r.upstream_headers.emplace_back(op.name, op.value);
      }
    }
    for (const Operation& op : headers_.add) {
      if (!Present(r, op.lower)) r.upstream_headers.emplace_back(op.name, op.value);
    }
    for (const Operation& op : headers_.append) {
      if (!SetHas(r, op.lower)) CopyValues(r, op.lower, op.name);  // the client's values stay
      r.upstream_headers.emplace_back(op.name, op.value);
    }
  }

  static absl::string_view FirstSet(const RequestContext& r, absl::string_view name) {
    for (const auto& [n, v] : r.upstream_headers) {
      if (absl::EqualsIgnoreCase(n, name)) return v;
    }
    return {};
  }

  // Kong's transform_querystrings on the query as earlier plugins left it.
  void TransformQuery(RequestContext& r) const {
    QueryScratch& q = Scratch();
    ParseQuery(r.upstream_query_set ? absl::string_view(r.upstream_query)
               : r.target.has_query ? r.target.query
                                    : absl::string_view(),
               q);
    for (const Operation& op : query_.remove) {
      if (QueryArgument* arg = q.Find(op.name)) arg->live = false;
    }
    for (const Operation& op : query_.rename) {  // querystring[new] = querystring[old]; querystring[old] = nil
      if (QueryArgument* taken = q.Find(op.value)) taken->live = false;
      if (QueryArgument* arg = q.Find(op.name)) arg->name = op.value;
    }
    for (const Operation& op : query_.replace) {
      if (QueryArgument* arg = q.Find(op.name)) arg->values.assign(1, op.value);
    }
    for (const Operation& op : query_.add) {
      if (q.Find(op.name) == nullptr) q.Append(op.name).values.push_back(op.value);
    }
    for (const Operation& op : query_.append) {
      QueryArgument* arg = q.Find(op.name);
      if (arg == nullptr) {
        arg = &q.Append(op.name);
      } else if (arg->values.size() == 1 && arg->values[0].data() == nullptr) {
        arg->values.clear();  // Kong's append_value replaces a lone `true`
      }
      arg->values.push_back(op.value);
    }
    EncodeQuery(q, &r.upstream_query);
    r.upstream_query_set = true;
  }
};

// Headers whose operations are dropped: those the proxy writes itself (framing, hop-by-hop,
// X-Forwarded-*, X-Real-IP); Kong's proxy overrides them as well.
bool ProxyOwned(absl::string_view name) {
  const KnownHeader kind = ClassifyHeader(name);
  return kind != KnownHeader::kOther && kind != KnownHeader::kVia && kind != KnownHeader::kHost;
}

// The entries of config[operation][list]: names for `remove`, else "name:value" pairs.
std::vector<Operation> ReadOperations(const nlohmann::json& config, absl::string_view operation, const char* list,
                                      bool headers) {
  const bool remove = operation == "remove", rename = operation == "rename";
  std::vector<Operation> out;
  for (const nlohmann::json& item : config[std::string(operation)][list]) {
    const std::string entry = item.get<std::string>();
    const TransformerPair pair = SplitTransformerPair(entry);
    Operation op{std::string(pair.name), absl::AsciiStrToLower(pair.name), remove ? "" : std::string(pair.value)};
    if (headers) {
      if (ProxyOwned(op.name) || (rename && ProxyOwned(op.value))) continue;
      // Kong's header table has no Host: only replace (and a rename to Host) changes it.
      if (op.lower == "host" && operation != "replace") continue;
      // An empty value changes nothing in Kong (it renders as nil).
      if (!remove && op.value.empty()) continue;
    }
    out.push_back(std::move(op));
  }
  return out;
}

Operations ReadAll(const nlohmann::json& config, const char* list, bool headers) {
  Operations ops;
  ops.remove = ReadOperations(config, "remove", list, headers);
  ops.rename = ReadOperations(config, "rename", list, headers);
  ops.replace = ReadOperations(config, "replace", list, headers);
  ops.add = ReadOperations(config, "add", list, headers);
  ops.append = ReadOperations(config, "append", list, headers);
  return ops;
}

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRequestTransformer(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  auto handler = std::make_unique<RequestTransformer>();
  if (config["http_method"].is_string()) handler->method_ = config["http_method"].get<std::string>();
  if (const nlohmann::json& uri = config["replace"]["uri"]; uri.is_string()) {
    handler->path_ = EscapeUpstreamPath(uri.get<std::string>());
  }
  handler->headers_ = ReadAll(config, "headers", /*headers=*/true);
  handler->query_ = ReadAll(config, "querystring", /*headers=*/false);
  handler->body_ = ReadAll(config, "body", /*headers=*/false);
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
