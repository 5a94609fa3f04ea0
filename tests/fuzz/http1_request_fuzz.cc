// Fuzz target: the client side of the proxy's HTTP/1 request path. A client's bytes (one or more
// pipelined requests) are parsed by Http1Codec(kRequest) in pieces, as reads deliver them; each
// head goes through CheckRequestHead exactly as Http1ClientConnection::OnRequestHead does, and for every head
// it accepts, the request the proxy would send upstream is built (AppendUpstreamRequestHead with
// the normalised, escaped path and the parsed framing; body pieces passed on, or re-chunked).
// A fresh Http1Codec(kRequest) in the upstream's place must read exactly one well-framed request
// from those bytes.
//
// Input: byte 0 = flags (bit 0: preserve_host), bytes 1-4 = piece sizes (1 + byte, used in turn),
// then the client's bytes.
//
// Invariants (ids as printed):
//   consumed      Execute never reports more bytes consumed than it was given, and all of them
//                 when it needs more
//   order         one head, body pieces, completion, per message; nothing after an error
//   head-syntax   the upstream head is a request line with a target of visible ASCII only (no
//                 '#', no blank, no control byte, no byte >= 0x80) plus "name: value" lines whose
//                 names are tokens and values hold no CR, LF or NUL
//   one-framing   exactly one Host; at most one Content-Length and one Transfer-Encoding, never
//                 both; chunked exactly when the client's body was chunked; a Content-Length
//                 exactly the parsed one
//   reparse       the upstream bytes parse as one request that CheckRequestHead accepts, with the
//                 same method and body, ending exactly at the end of the bytes (nothing left that
//                 an upstream could read as a second request)
//   partial       when the client's framing breaks after the head was accepted (a bad chunk), the
//                 bytes already forwarded are a proper prefix of one request: they never complete
//                 a request and never make the upstream's parser fail on what came before
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "data_plane/proxy/http1_messages.h"
#include "tests/fuzz/delegate_codec.h"
#include "common/http/http1_checks.h"
#include "data_plane/pipeline/upstream_request.h"
#include "data_plane/router/router.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using portico::fuzz::Show;
using portico::dp::AppendUpstreamRequestHead;
using portico::CheckRequestHead;
using portico::dp::ChunkSizeLine;
using portico::MessageHead;
using portico::Http1Codec;
using portico::fuzz::DelegatingCodec;
using portico::fuzz::CodecDelegate;
using portico::dp::kLastChunk;
using portico::RequestHeadCheck;
using portico::dp::StripPort;
using portico::dp::UpstreamRequestParams;

constexpr size_t kMaxHeadBytes = 64 * 1024;  // ProxyOptions::max_header_bytes default

bool IsTokenChar(unsigned char c) {
  return absl::ascii_isalnum(c) || (c < 0x80 && absl::StrContains("!#$%&'*+-.^_`|~", static_cast<char>(c)));
}

// The upstream's end: one request expected.
class UpstreamSide : public CodecDelegate {
 public:
  HeadAction OnHead(const MessageHead& head) override {
    ++heads;
    this->head = head;
    return HeadAction::kContinue;
  }
  void OnBody(absl::string_view data) override { body.append(data.data(), data.size()); }
  void OnMessageComplete() override { ++completes; }
  int heads = 0;
  int completes = 0;
  MessageHead head;
  std::string body;
};

// The client's end, as Http1ClientConnection and the upstream step use the codec: checks the head, builds what goes
// upstream, passes the body on.
class ClientSide : public CodecDelegate {
 public:
  explicit ClientSide(bool preserve_host) : preserve_host_(preserve_host) {}

  HeadAction OnHead(const MessageHead& head) override {
    FUZZ_CHECK(!head_seen_, "order", "a second head in one message");
    head_seen_ = true;
    const RequestHeadCheck check = CheckRequestHead(head);
    if (check.status != 0) {
      refused_ = true;
      return HeadAction::kError;  // answered locally; nothing is forwarded
    }
    forwarding_ = true;
    chunked_ = head.chunked;
    has_content_length_ = head.has_content_length;
    content_length_ = head.content_length;
    method_ = head.method;
    // As UpstreamRequestStep (strip_path with an empty matched path, no service path).
    const std::string upstream_path = portico::dp::EscapeUpstreamPath(
        portico::dp::BuildUpstreamPath("", portico::dp::NormalizeRequestPath(check.target.path), "", true));
    UpstreamRequestParams params;
    params.upstream_path = upstream_path;
    params.query = check.target.query;
    params.has_query = check.target.has_query;
    params.host_header = preserve_host_ && check.has_host ? check.host : absl::string_view("backend:8080");
    params.client_ip = "192.0.2.1";
    params.client_host = check.has_host ? StripPort(check.host) : absl::string_view();
    params.local_port = 8000;
    params.chunked_body = head.chunked;
    params.has_content_length = head.has_content_length;
    params.content_length = head.content_length;
    upstream_.clear();
    AppendUpstreamRequestHead(&upstream_, head, params);
    head_bytes_ = upstream_.size();
    return HeadAction::kContinue;
  }

  void OnBody(absl::string_view data) override {
    FUZZ_CHECK(head_seen_ && !complete_, "order", "body outside a message");
    if (!forwarding_ || data.empty()) return;
    body_.append(data.data(), data.size());
    if (chunked_) {
      char buffer[24];
      const absl::string_view line = ChunkSizeLine(data.size(), buffer);
      upstream_.append(line.data(), line.size()).append(data.data(), data.size()).append("\r\n");
    } else {
      upstream_.append(data.data(), data.size());
    }
  }

  void OnMessageComplete() override {
    FUZZ_CHECK(head_seen_ && !complete_, "order", "completion without a head");
    complete_ = true;
  }

  // After Execute returned kMessageDone: checks the forwarded request and resets.
  void EndMessage() {
    FUZZ_CHECK(complete_, "order", "kMessageDone without OnMessageComplete");
    if (forwarding_) {
      if (chunked_) upstream_.append(kLastChunk.data(), kLastChunk.size());
      if (CheckHead()) CheckReparse();
    }
    head_seen_ = complete_ = forwarding_ = refused_ = false;
    body_.clear();
  }

  // The client's framing broke mid-message: what went upstream must stay an unfinished request.
  void EndWithError() {
    if (!forwarding_ || complete_) return;
    UpstreamSide upstream;
    DelegatingCodec parser(Http1Codec::Kind::kRequest, &upstream, kMaxHeadBytes);
    const DelegatingCodec::Result result = parser.Execute(upstream_.data(), upstream_.size());
    FUZZ_CHECK(result.outcome == Http1Codec::Event::kNeedMore && upstream.completes == 0, "partial",
               absl::StrCat("forwarded bytes of an aborted request parse as ", static_cast<int>(result.outcome),
                            " (", parser.error_reason(), ") with ", upstream.completes, " requests: ",
                            Show(upstream_)));
  }

 private:
  std::string Context() const { return absl::StrCat("upstream head ", Show(upstream_.substr(0, head_bytes_))); }

  bool CheckHead() {
    const absl::string_view head = absl::string_view(upstream_).substr(0, head_bytes_);
    if (!FUZZ_CHECK(absl::EndsWith(head, "\r\n\r\n"), "head-syntax", Context())) return false;
    std::vector<absl::string_view> lines = absl::StrSplit(head.substr(0, head.size() - 4), "\r\n");
    // Request line: METHOD SP target SP HTTP/1.1, the target visible ASCII without '#'.
    std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
    if (!FUZZ_CHECK(parts.size() == 3 && parts[2] == "HTTP/1.1" && !parts[1].empty() && parts[1][0] == '/',
                    "head-syntax", absl::StrCat("request line ", Show(lines[0]), "; ", Context()))) {
      return false;
    }
    for (unsigned char c : parts[1]) {
      if (!FUZZ_CHECK(c > 0x20 && c < 0x7f && c != '#', "head-syntax",
                      absl::StrCat("target ", Show(parts[1]), "; ", Context()))) {
        return false;
      }
    }
    int hosts = 0, content_lengths = 0, transfer_encodings = 0;
    absl::string_view content_length_value, transfer_encoding_value;
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (!FUZZ_CHECK(colon != absl::string_view::npos && colon > 0, "head-syntax",
                      absl::StrCat("line ", Show(lines[i]), "; ", Context()))) {
        return false;
      }
      const absl::string_view name = lines[i].substr(0, colon);
      const absl::string_view value = lines[i].substr(colon + 1);
      for (unsigned char c : name) {
        if (!FUZZ_CHECK(IsTokenChar(c), "head-syntax", absl::StrCat("name ", Show(name), "; ", Context()))) {
          return false;
        }
      }
      if (!FUZZ_CHECK(value.find_first_of(absl::string_view("\r\n\0", 3)) == absl::string_view::npos, "head-syntax",
                      absl::StrCat("value ", Show(value), "; ", Context()))) {
        return false;
      }
      if (absl::EqualsIgnoreCase(name, "Host")) ++hosts;
      if (absl::EqualsIgnoreCase(name, "Content-Length")) {
        ++content_lengths;
        content_length_value = absl::StripAsciiWhitespace(value);
      }
      if (absl::EqualsIgnoreCase(name, "Transfer-Encoding")) {
        ++transfer_encodings;
        transfer_encoding_value = absl::StripAsciiWhitespace(value);
      }
    }
    bool ok = FUZZ_CHECK(hosts == 1, "one-framing", absl::StrCat(hosts, " Host lines; ", Context()));
    ok &= FUZZ_CHECK(content_lengths <= 1 && transfer_encodings <= 1 && !(content_lengths && transfer_encodings),
                     "one-framing",
                     absl::StrCat(content_lengths, " Content-Length, ", transfer_encodings, " Transfer-Encoding; ",
                                  Context()));
    ok &= FUZZ_CHECK((transfer_encodings == 1) == chunked_ && (!chunked_ || transfer_encoding_value == "chunked"),
                     "one-framing", absl::StrCat("chunked=", chunked_, "; ", Context()));
    if (content_lengths == 1) {
      uint64_t value = 0;
      ok &= FUZZ_CHECK(has_content_length_ && absl::SimpleAtoi(content_length_value, &value) &&
                           value == content_length_ && absl::StrCat(value) == content_length_value,
                       "one-framing", absl::StrCat("Content-Length ", Show(content_length_value), "; ", Context()));
    } else {
      ok &= FUZZ_CHECK(!has_content_length_ || chunked_, "one-framing",
                       absl::StrCat("parsed Content-Length ", content_length_, " not forwarded; ", Context()));
    }
    return ok;
  }

  void CheckReparse() {
    UpstreamSide upstream;
    DelegatingCodec parser(Http1Codec::Kind::kRequest, &upstream, kMaxHeadBytes);
    const DelegatingCodec::Result result = parser.Execute(upstream_.data(), upstream_.size());
    if (!FUZZ_CHECK(result.outcome == Http1Codec::Event::kMessageDone, "reparse",
                    absl::StrCat("upstream parser: ", parser.error_reason(), " after ", result.consumed, " of ",
                                 upstream_.size(), " bytes; ", Context()))) {
      return;
    }
    FUZZ_CHECK(result.consumed == upstream_.size(), "reparse",
               absl::StrCat("request ends after ", result.consumed, " of ", upstream_.size(),
                            " bytes: the rest would be read as another request; ", Context()));
    FUZZ_CHECK(upstream.heads == 1 && upstream.completes == 1, "reparse",
               absl::StrCat(upstream.heads, " heads, ", upstream.completes, " completions; ", Context()));
    FUZZ_CHECK(upstream.head.method == method_, "reparse",
               absl::StrCat("method ", upstream.head.method, " for ", method_, "; ", Context()));
    FUZZ_CHECK(upstream.body == body_, "reparse",
               absl::StrCat("upstream body ", Show(upstream.body, 80), " client body ", Show(body_, 80), "; ",
                            Context()));
    const RequestHeadCheck again = CheckRequestHead(upstream.head);
    FUZZ_CHECK(again.status == 0, "reparse",
               absl::StrCat("the forwarded head fails the proxy's own check: ", again.reason, "; ", Context()));
  }

  bool preserve_host_;
  bool head_seen_ = false;
  bool complete_ = false;
  bool forwarding_ = false;
  bool refused_ = false;
  bool chunked_ = false;
  bool has_content_length_ = false;
  uint64_t content_length_ = 0;
  std::string method_;
  std::string upstream_;
  size_t head_bytes_ = 0;
  std::string body_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const bool preserve_host = (data[0] & 1) != 0;
  const uint8_t* piece_sizes = data + 1;
  const char* stream = reinterpret_cast<const char*>(data + 5);
  const size_t stream_size = size - 5;

  ClientSide client(preserve_host);
  DelegatingCodec parser(Http1Codec::Kind::kRequest, &client, kMaxHeadBytes);
  portico::fuzz::FeedInPieces(
      parser, piece_sizes, stream, stream_size, [&] { client.EndMessage(); }, [&] { client.EndWithError(); });
  return 0;
}
