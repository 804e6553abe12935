// HttpListener: abexp-server's HTTP endpoint for operators (GET /metrics,
// /healthz, /readyz), on threads of its own, beside the gRPC server. Built
// on cpp-httplib; the OpenFeature HTTP API is to be served from it too.
//
// It answers the routes it was given and 404 (naming them) for any other
// path, 405 for another method on a known path. Handlers run on the
// listener's threads (a few: scrapes and probes are rare), never on gRPC's.
//
// Thread-safe: handlers may run concurrently with each other.
#ifndef ABEXP_SERVER_HTTP_LISTENER_H_
#define ABEXP_SERVER_HTTP_LISTENER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace abexp {

struct HttpRequest {
  std::string method;  // "GET", "POST"
  std::string path;    // "/metrics"
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// What a route answers. REQUIRES: thread-safe.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// Routes by (method, path), e.g. {"GET", "/metrics"}.
using HttpRoutes = std::map<std::pair<std::string, std::string>, HttpHandler>;

class HttpListener {
 public:
  // Listens on `address` ("HOST:PORT", "[V6]:PORT"; port 0 picks a free
  // one) and serves `routes` until destroyed. Errors: INVALID_ARGUMENT for
  // a malformed address; UNAVAILABLE when it cannot be bound (in use, not
  // an address of this machine), saying which.
  static absl::StatusOr<std::unique_ptr<HttpListener>> Start(
      const std::string& address, HttpRoutes routes);

  // Stops listening and waits for the handlers running to return.
  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  // "HOST:PORT" with the port bound.
  const std::string& address() const { return address_; }

 private:
  HttpListener(std::unique_ptr<httplib::Server> server, std::string address);

  std::unique_ptr<httplib::Server> server_;
  std::string address_;
  std::thread thread_;  // runs the accept loop
};

}  // namespace abexp

#endif  // ABEXP_SERVER_HTTP_LISTENER_H_
