// HttpListener: abexp-server's HTTP endpoint (--http_listen), on threads of
// its own, beside the gRPC server: the operators' GET /metrics, /healthz,
// /readyz, and the OpenFeature remote evaluation protocol (server/ofrep/).
// Built on cpp-httplib; routes see only server/http/http_types.h.
//
// It answers the routes it was given (exact paths, and paths with "{name}"
// segments), and 404 (naming them) for any other path, 405 for another
// method on a known path. Request headers are passed to the handler with
// lower-case names; the handler's response headers are sent as given.
// Handlers run on the listener's threads, never on gRPC's.
//
// Thread-safe: handlers may run concurrently with each other.
#ifndef ABEXP_SERVER_HTTP_LISTENER_H_
#define ABEXP_SERVER_HTTP_LISTENER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/http/http_types.h"

namespace httplib {
class Server;
}

namespace abexp {

// How many requests the listener answers at once.
struct HttpListenerOptions {
  // Threads answering requests. cpp-httplib keeps a thread on a keep-alive
  // connection until it closes or idles out (5s), so this is also how many
  // clients (scrapers, OpenFeature providers) can hold a connection open at
  // once. Default: 16.
  int threads = 16;
};

class HttpListener {
 public:
  // Listens on `address` ("HOST:PORT", "[V6]:PORT"; port 0 picks a free
  // one) and serves `routes` until destroyed. Errors: INVALID_ARGUMENT for
  // a malformed address; UNAVAILABLE when it cannot be bound (in use, not
  // an address of this machine), saying which.
  static absl::StatusOr<std::unique_ptr<HttpListener>> Start(
      const std::string& address, HttpRoutes routes,
      HttpListenerOptions options = {});

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
