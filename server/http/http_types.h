// What an HTTP route of abexp-server sees and answers, without the library
// that carries it (server/http_listener.h serves them with libevent).
// Routes are written against these types only, so the adapters that serve
// an API over HTTP (server/ofrep/) need no HTTP library.
//
// Thread-safe: plain values.
#ifndef ABEXP_SERVER_HTTP_HTTP_TYPES_H_
#define ABEXP_SERVER_HTTP_HTTP_TYPES_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"

namespace abexp {

struct HttpRequest {
  std::string method;  // "GET", "POST"
  std::string path;    // "/metrics", decoded
  std::string body;
  // Header name in lower case -> value (the last one when repeated).
  std::map<std::string, std::string> headers;
  // The route's path parameters: for the route
  // "/ofrep/v1/evaluate/flags/{key}" and the path
  // "/ofrep/v1/evaluate/flags/new-checkout", {"key", "new-checkout"}.
  std::map<std::string, std::string> path_params;
  // The URI's query parameters in order, names and values percent-decoded
  // ("+" as a space): "?a=1&b=x%20y&c" is {{"a", "1"}, {"b", "x y"},
  // {"c", ""}}. A repeated name appears as often as it was given.
  std::vector<std::pair<std::string, std::string>> query;

  // The header `name`, looked up case-insensitively; nullopt when absent.
  std::optional<absl::string_view> Header(absl::string_view name) const {
    auto it = headers.find(absl::AsciiStrToLower(name));
    if (it == headers.end()) return std::nullopt;
    return absl::string_view(it->second);
  }
  // The path parameter `name`; "" when the route has none of that name.
  const std::string& PathParam(const std::string& name) const {
    static const std::string* const kNone = new std::string();
    auto it = path_params.find(name);
    return it == path_params.end() ? *kNone : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra headers, e.g. {"ETag", "\"...\""}, {"WWW-Authenticate", ...}.
  // Content-Type and Content-Length are set from the fields above.
  std::vector<std::pair<std::string, std::string>> headers;
};

// What a route answers. REQUIRES: thread-safe. It may wait (on Redis):
// the listener runs it on a thread pool, never on an event loop.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// Routes by (method, path), e.g. {"GET", "/metrics"}. A path segment
// written "{name}" matches any one non-empty segment and is passed in
// HttpRequest::path_params; a path without one matches only itself, and
// is tried first.
using HttpRoutes = std::map<std::pair<std::string, std::string>, HttpHandler>;

}  // namespace abexp

#endif  // ABEXP_SERVER_HTTP_HTTP_TYPES_H_
