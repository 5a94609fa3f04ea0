#include "data_plane/pipeline/local_responses.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/host_port.h"

namespace portico::dp {

LocalResponse HttpsRequiredResponse(int redirect_status, absl::string_view host, absl::string_view path_and_query,
                                    bool close) {
  LocalResponse response;
  response.close = close;
  if (redirect_status != 301 && redirect_status != 302 && redirect_status != 307 && redirect_status != 308) {
    response.status = 426;
    response.message = kMsgHttpsRequired;
    response.headers.emplace_back("Connection", "Upgrade");
    response.headers.emplace_back("Upgrade", "TLS/1.2, HTTP/1.1");
    return response;
  }
  response.status = redirect_status;
  response.headers.emplace_back(
      "Location", absl::StrCat("https://", absl::AsciiStrToLower(SplitHostHeader(host).name), path_and_query));
  return response;
}

LocalResponse WebSocketRequiredResponse() {
  LocalResponse response;
  response.status = 426;
  response.message = kMsgWebSocketRequired;
  response.headers.emplace_back("Connection", "Upgrade");
  response.headers.emplace_back("Upgrade", "websocket");
  return response;
}

}  // namespace portico::dp
