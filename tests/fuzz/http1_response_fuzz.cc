// Fuzz target: the upstream side of the proxy's HTTP/1 response path. The bytes an upstream sends
// are parsed by Http1Codec(kResponse) in pieces (as reads deliver them), each final response the
// proxy forwards (IsForwardableResponseHead) is turned into what it writes to the client (ChooseResponseFraming, AppendDownstreamResponseHead,
// body re-framing as client_connection.cc does it), and a fresh Http1Codec(kResponse) in the
// client's place must read exactly that one response back.
//
// Input: byte 0 = flags (bit 0: the request was HEAD; bit 1: HTTP/1.0 client; bit 2: client asked
// to close), bytes 1-4 = piece sizes (1 + byte, used in turn), then the upstream's bytes (one or
// more responses on one connection, as the parser is reused across a pooled connection's responses).
//
// Invariants (ids as printed):
//   consumed            Execute never reports more bytes consumed than it was given, and all of
//                       them when it needs more
//   order               per message: one head, then body pieces, then completion; nothing after an
//                       error; no body after the delegate asked to skip it
//   cl-flag             a head has the has_content_length flag exactly when it has a Content-Length header
//   upstream-cl-body    a Content-Length response's body is exactly that many bytes
//   nobody-status-body  a 1xx/204/304 response delivers no body bytes (the delegate skips them, as
//                       Http1ClientConnection does; this checks that the codec honours the skip)
//   head-syntax         the downstream head is a status line plus "name: value" lines, names are
//                       tokens, values hold no CR, LF or NUL (obs-fold must not pass through)
//   one-framing         the downstream head has at most one Content-Length, at most one
//                       Transfer-Encoding, never both
//   nobody-status-framing  a 1xx/204/304 response goes down with neither
//   cl-kept             a downstream Content-Length is the upstream's (the proxy invents none), and
//                       kContentLength framing has one
//   chunked-framing     kChunked framing: Transfer-Encoding: chunked and no Content-Length
//   close-framing       kUntilClose: no framing header, Connection: close
//   reparse             the downstream bytes parse as one response, with the same status and the
//                       same body, ending exactly at the end of the bytes (nothing left to be
//                       read as a second response), and without needing EOF when kept alive
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
#include "tests/fuzz/fuzz_check.h"

namespace {

using portico::fuzz::Show;
using portico::dp::AppendDownstreamResponseHead;
using portico::dp::ChooseResponseFraming;
using portico::dp::ChunkSizeLine;
using portico::MessageHead;
using portico::Http1Codec;
using portico::fuzz::DelegatingCodec;
using portico::fuzz::CodecDelegate;
using portico::dp::kLastChunk;
using portico::dp::ResponseFraming;

constexpr size_t kMaxHeadBytes = 64 * 1024;  // ProxyOptions::max_header_bytes default

bool NoBodyStatus(int status) { return (status >= 100 && status < 200) || status == 204 || status == 304; }

// Exchange::OnUpstreamHead refuses (502) a head that IsForwardableResponseHead rejects.
bool Forwardable(const MessageHead& head) { return portico::IsForwardableResponseHead(head); }

// Only the framings that carry a body are named here, so the target builds whatever no-body
// variants ResponseFraming has (kNoBody, and kHeadResponse where it exists).
std::string FramingName(ResponseFraming f) {
  switch (f) {
    case ResponseFraming::kContentLength: return "kContentLength";
    case ResponseFraming::kChunked: return "kChunked";
    case ResponseFraming::kUntilClose: return "kUntilClose";
    default: return absl::StrCat("no-body framing ", static_cast<int>(f));
  }
}

bool IsTokenChar(unsigned char c) {
  return absl::ascii_isalnum(c) || (c < 0x80 && absl::StrContains("!#$%&'*+-.^_`|~", static_cast<char>(c)));
}

// The client's end: one response expected; the body is skipped for a HEAD request.
class ClientSide : public CodecDelegate {
 public:
  explicit ClientSide(bool request_is_head) : request_is_head_(request_is_head) {}
  HeadAction OnHead(const MessageHead& head) override {
    ++heads;
    status = head.status;
    return request_is_head_ ? HeadAction::kSkipBody : HeadAction::kContinue;
  }
  void OnBody(absl::string_view data) override { body.append(data.data(), data.size()); }
  void OnMessageComplete() override { ++completes; }

  int heads = 0;
  int completes = 0;
  int status = 0;
  std::string body;

 private:
  bool request_is_head_;
};

struct Options {
  bool request_is_head = false;
  bool client_http11 = true;
  bool client_keep_alive = true;
};

// The upstream end, as UpstreamConnection, Exchange and Http1ClientConnection use the codec: records the head,
// builds the downstream head when it arrives, re-frames the body.
class UpstreamSide : public CodecDelegate {
 public:
  explicit UpstreamSide(const Options& options) : options_(options) {}

  // RFC 9110 §6.4.1: no content in responses to HEAD, nor in 1xx, 204 and 304 responses.
  bool BodyGoesDown() const { return !options_.request_is_head && !NoBodyStatus(head_.status); }

  HeadAction OnHead(const MessageHead& head) override {
    FUZZ_CHECK(!head_seen_ && !failed_, "order", "a second head in one message");
    head_seen_ = true;
    head_ = head;
    FUZZ_CHECK(head.has_content_length == (head.Find("Content-Length") != nullptr), "cl-flag",
               absl::StrCat("has_content_length=", head.has_content_length, " status ", head.status));
    if (head.status == 101) {
      action_ = HeadAction::kError;  // upgrades are not proxied (UpstreamConnection::OnHead)
      return action_;
    }
    interim_ = head.status >= 100 && head.status < 200;
    if (interim_) {
      action_ = HeadAction::kSkipBody;
      return action_;
    }
    if (!Forwardable(head)) {
      action_ = HeadAction::kError;  // 502 to the client; nothing of it is forwarded
      return action_;
    }
    framing_ = ChooseResponseFraming(head, options_.request_is_head, options_.client_http11);
    keep_alive_ = options_.client_keep_alive && framing_ != ResponseFraming::kUntilClose;
    downstream_.clear();
    AppendDownstreamResponseHead(&downstream_, head, framing_, keep_alive_, options_.client_http11);
    head_bytes_ = downstream_.size();
    // As Exchange::OnUpstreamHead and Http1ClientConnection::SendResponseHead: no body after a 204/304 head or for HEAD, whatever
    // Content-Length or Transfer-Encoding say (RFC 9112 §6.3; llhttp knows it only for 1xx).
    action_ = BodyGoesDown() ? HeadAction::kContinue : HeadAction::kSkipBody;
    return action_;
  }

  void OnBody(absl::string_view data) override {
    FUZZ_CHECK(head_seen_ && !complete_, "order", "body outside a message");
    FUZZ_CHECK(action_ == HeadAction::kContinue, "order", "body after the delegate skipped it");
    body_.append(data.data(), data.size());
    if (interim_ || !BodyGoesDown() || data.empty()) return;
    if (framing_ == ResponseFraming::kChunked) {
      char buffer[24];
      const absl::string_view line = ChunkSizeLine(data.size(), buffer);
      downstream_.append(line.data(), line.size()).append(data.data(), data.size()).append("\r\n");
    } else if (framing_ == ResponseFraming::kContentLength || framing_ == ResponseFraming::kUntilClose) {
      downstream_.append(data.data(), data.size());
    }
  }

  void OnMessageComplete() override {
    FUZZ_CHECK(head_seen_ && !complete_, "order", "completion without a head");
    complete_ = true;
  }

  // After Execute returned kMessageDone (or Finish did): checks the message and resets.
  void EndMessage(bool ended_by_eof) {
    FUZZ_CHECK(complete_, "order", "kMessageDone without OnMessageComplete");
    if (head_seen_ && complete_ && !interim_ && head_.status != 101) CheckFinalResponse(ended_by_eof);
    head_seen_ = complete_ = interim_ = false;
    body_.clear();
  }

  void Fail() { failed_ = true; }

 private:

  void CheckFinalResponse(bool ended_by_eof) {
    const std::string context = absl::StrCat("status ", head_.status, " framing ", FramingName(framing_),
                                             " head=", options_.request_is_head, " http11=",
                                             options_.client_http11, " keep_alive=", keep_alive_,
                                             " downstream ", Show(downstream_.substr(0, head_bytes_)));
    if (framing_ == ResponseFraming::kContentLength) {
      FUZZ_CHECK(body_.size() == head_.content_length, "upstream-cl-body",
                 absl::StrCat(body_.size(), " body bytes for Content-Length ", head_.content_length, "; ", context));
    }
    if (NoBodyStatus(head_.status)) {
      FUZZ_CHECK(body_.empty(), "nobody-status-body", absl::StrCat(body_.size(), " body bytes; ", context));
    }
    if (framing_ == ResponseFraming::kChunked) downstream_.append(kLastChunk.data(), kLastChunk.size());
    if (!CheckHead(context)) return;
    CheckReparse(ended_by_eof, context);
  }

  // Textual checks of the downstream head. False when one failed (a known issue; an unknown one
  // traps), so that the re-parse does not report the same bug again.
  bool CheckHead(const std::string& context) {
    const absl::string_view head = absl::string_view(downstream_).substr(0, head_bytes_);
    if (!FUZZ_CHECK(absl::EndsWith(head, "\r\n\r\n"), "head-syntax", context)) return false;
    std::vector<absl::string_view> lines = absl::StrSplit(head.substr(0, head.size() - 4), "\r\n");
    int content_lengths = 0;
    int transfer_encodings = 0;
    bool connection_close = false;
    absl::string_view content_length_value;
    for (size_t i = 1; i < lines.size(); ++i) {
      const absl::string_view line = lines[i];
      const size_t colon = line.find(':');
      if (!FUZZ_CHECK(colon != absl::string_view::npos && colon > 0, "head-syntax",
                      absl::StrCat("line ", Show(line), "; ", context))) {
        return false;
      }
      const absl::string_view name = line.substr(0, colon);
      const absl::string_view value = line.substr(colon + 1);
      for (unsigned char c : name) {
        if (!FUZZ_CHECK(IsTokenChar(c), "head-syntax", absl::StrCat("name ", Show(name), "; ", context))) return false;
      }
      if (!FUZZ_CHECK(value.find_first_of(absl::string_view("\r\n\0", 3)) == absl::string_view::npos,
                      "head-syntax", absl::StrCat("value ", Show(value), "; ", context))) {
        return false;
      }
      if (absl::EqualsIgnoreCase(name, "Content-Length")) {
        ++content_lengths;
        content_length_value = absl::StripAsciiWhitespace(value);
      }
      if (absl::EqualsIgnoreCase(name, "Transfer-Encoding")) ++transfer_encodings;
      if (absl::EqualsIgnoreCase(name, "Connection") && absl::StrContains(absl::AsciiStrToLower(value), "close")) {
        connection_close = true;
      }
    }
    // After a (known) framing violation the re-parse would only report the same bug again.
    bool ok = FUZZ_CHECK(content_lengths <= 1 && transfer_encodings <= 1 && !(content_lengths && transfer_encodings),
                         "one-framing",
                         absl::StrCat(content_lengths, " Content-Length, ", transfer_encodings,
                                      " Transfer-Encoding; ", context));
    if (NoBodyStatus(head_.status)) {
      ok &= FUZZ_CHECK(content_lengths == 0 && transfer_encodings == 0, "nobody-status-framing", context);
    }
    // The proxy never invents a Content-Length: one going down is the upstream's.
    if (content_lengths == 1) {
      uint64_t value = 0;
      ok &= FUZZ_CHECK(head_.has_content_length && absl::SimpleAtoi(content_length_value, &value) &&
                           value == head_.content_length,
                       "cl-kept",
                       absl::StrCat("downstream Content-Length ", Show(content_length_value), " upstream ",
                                    head_.has_content_length ? absl::StrCat(head_.content_length) : "none", "; ",
                                    context));
    }
    switch (framing_) {
      case ResponseFraming::kContentLength:
        ok &= FUZZ_CHECK(content_lengths == 1, "cl-kept",
                         absl::StrCat("no Content-Length for upstream Content-Length ", head_.content_length, "; ",
                                      context));
        break;
      case ResponseFraming::kChunked:
        ok &= FUZZ_CHECK(transfer_encodings == 1 && content_lengths == 0, "chunked-framing", context);
        break;
      case ResponseFraming::kUntilClose:
        ok &= FUZZ_CHECK(transfer_encodings == 0 && content_lengths == 0 && connection_close, "close-framing",
                         context);
        break;
      default:
        break;
    }
    return ok;
  }

  void CheckReparse(bool ended_by_eof, const std::string& context) {
    ClientSide client(options_.request_is_head);
    DelegatingCodec parser(Http1Codec::Kind::kResponse, &client, kMaxHeadBytes);
    const DelegatingCodec::Result result = parser.Execute(downstream_.data(), downstream_.size());
    bool done = result.outcome == Http1Codec::Event::kMessageDone;
    bool needed_eof = false;
    if (result.outcome == Http1Codec::Event::kNeedMore && parser.in_message()) {
      needed_eof = true;
      done = parser.Finish() == Http1Codec::Event::kMessageDone;
    }
    if (!FUZZ_CHECK(done, "reparse",
                    absl::StrCat("client parser: ", parser.error_reason(), " after ", result.consumed, " of ",
                                 downstream_.size(), " bytes; ", context))) {
      return;
    }
    FUZZ_CHECK(client.heads == 1 && client.completes == 1, "reparse",
               absl::StrCat(client.heads, " heads, ", client.completes, " completions; ", context));
    FUZZ_CHECK(client.status == head_.status, "reparse", absl::StrCat("client saw status ", client.status, "; ", context));
    FUZZ_CHECK(needed_eof || result.consumed == downstream_.size(), "reparse",
               absl::StrCat("response ends after ", result.consumed, " of ", downstream_.size(),
                            " bytes: the rest would be read as another response; ", context));
    const std::string expected_body = BodyGoesDown() ? body_ : std::string();
    FUZZ_CHECK(client.body == expected_body, "reparse",
               absl::StrCat("client body ", Show(client.body, 80), " upstream body ", Show(expected_body, 80), "; ",
                            context));
    if (keep_alive_) {
      FUZZ_CHECK(!needed_eof, "reparse",
                 absl::StrCat("kept-alive response is delimited only by EOF (ended_by_eof=", ended_by_eof, "); ",
                              context));
    }
  }

  const Options& options_;
  bool head_seen_ = false;
  bool complete_ = false;
  bool interim_ = false;
  bool failed_ = false;
  HeadAction action_ = HeadAction::kContinue;
  MessageHead head_;
  ResponseFraming framing_ = ResponseFraming::kNoBody;
  bool keep_alive_ = false;
  std::string downstream_;
  size_t head_bytes_ = 0;
  std::string body_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  Options options;
  options.request_is_head = (data[0] & 1) != 0;
  options.client_http11 = (data[0] & 2) == 0;
  options.client_keep_alive = (data[0] & 4) == 0;
  const uint8_t* piece_sizes = data + 1;
  const char* stream = reinterpret_cast<const char*>(data + 5);
  const size_t stream_size = size - 5;

  UpstreamSide upstream(options);
  DelegatingCodec parser(Http1Codec::Kind::kResponse, &upstream, kMaxHeadBytes);
  if (!portico::fuzz::FeedInPieces(
          parser, piece_sizes, stream, stream_size, [&] { upstream.EndMessage(/*ended_by_eof=*/false); },
          [&] { upstream.Fail(); })) {
    return 0;
  }
  // EOF from the upstream.
  if (parser.in_message()) {
    const bool needs_eof = parser.NeedsEof();
    const Http1Codec::Event outcome = parser.Finish();
    if (outcome == Http1Codec::Event::kMessageDone) {
      FUZZ_CHECK(needs_eof, "order", "EOF ended a message that did not need it");
      upstream.EndMessage(/*ended_by_eof=*/true);
    }
  }
  return 0;
}
