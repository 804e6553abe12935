// HttpListener: abexp-server's HTTP endpoint (--http_listen), on threads of
// its own, beside the gRPC server: the operators' GET /metrics, /healthz,
// /readyz, and the OpenFeature remote evaluation protocol (server/ofrep/).
// Built on libevent's evhttp; routes see only server/http/http_types.h.
//
// It answers the routes it was given (exact paths, and paths with "{name}"
// segments), and 404 (naming them) for any other path, 405 for another
// method on a known path (HEAD is served as GET, without the body).
// Request headers are passed to the handler with lower-case names; the
// handler's response headers are sent as given. HTTP/1.1 keep-alive; a
// body over max_body_bytes is answered 413 and the connection closed.
//
// What runs where: `threads` event loops each accept from the one listening
// socket and do all the I/O of their connections (reading and parsing a
// request, finding its route, writing the answer); no handler runs on them.
// Every handler runs on a pool of `handler_threads` (a StorageExecutor),
// because any route may wait: an OFREP evaluation with abexpRecordExposure
// records through Redis or the spool, a sticky experiment reads Redis, GET
// /metrics walks the registry. Its answer goes back to the loop that read
// the request, so a handler that waits holds one pool thread and never a
// loop: the other connections, and the other routes, are still served.
// Past max_queued requests queued or running on the pool, a request is
// answered 503 at once. Handlers never run on gRPC's threads.
//
// What it answered can be observed (HttpListenerOptions::observe): each
// request by its route's path template, never the concrete path, so what
// an observer keeps stays bounded by the routes served.
//
// Thread-safe: handlers may run concurrently with each other.
#ifndef ABEXP_SERVER_HTTP_LISTENER_H_
#define ABEXP_SERVER_HTTP_LISTENER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/http/http_types.h"

namespace abexp {

// Told of each request answered on one route: the HTTP status sent and the
// time from the request being read to its answer being handed back to the
// event loop (for a handler's answer: when the handler returned). Called
// concurrently, on handler threads and event loops, before the answer is
// written: it must not wait.
using HttpAnswerObserver =
    std::function<void(int status, absl::Duration elapsed)>;

struct HttpListenerOptions {
  // Event loops reading requests and writing answers. They do no handler's
  // work, so one loop keeps up with several handler threads; a second lets
  // the I/O of many connections use a second core. Default: 2.
  int threads = 2;
  // Threads running the routes' handlers: how many requests are answered
  // at once, and so how many may wait on Redis at once (exposures recorded
  // over OFREP) before the others queue. Default: 16.
  int handler_threads = 16;
  // Requests queued for, or running on, the handler threads at once; the
  // next is answered 503. Bounds the memory a flood can make the listener
  // hold. At least handler_threads. Default: 1024.
  int max_queued = 1024;
  // The largest request body taken; a larger one is read and discarded,
  // answered 413 (Payload Too Large), and the connection closed. Default:
  // 1 MiB (an OFREP evaluation context is a few hundred bytes).
  int64_t max_body_bytes = int64_t{1} << 20;
  // How long a connection may idle between requests (keep-alive), or take
  // to send a request or read an answer, before it is closed. Also how long
  // the destructor waits for answers to be written. Default: 5s.
  absl::Duration io_timeout = absl::Seconds(5);
  // Counts the requests answered 503 because max_queued were waiting for
  // a handler thread. Null: not counted. REQUIRES: outlives the listener.
  std::atomic<int64_t>* refused = nullptr;
  // Called by Start, before any request, once for each route path it serves
  // (the path as given, "/experiments/{key}/report", whatever the method)
  // and once for "unmatched"; what it returns is told of every request
  // answered on that path: by its handler, 405 for another method, 503 when
  // the handler threads are full or the listener is shutting down. Paths no
  // route has (404) go to "unmatched". Requests libevent refuses before
  // they reach a route (malformed: 400, a body over max_body_bytes: 413,
  // an unsupported method: 501) are not observed. Null (or a null
  // observer returned): not observed. REQUIRES: what the observers it
  // returns refer to outlives the listener.
  std::function<HttpAnswerObserver(const std::string& route)> observe;
};

// The route observed for paths no route serves.
inline constexpr char kUnmatchedHttpRoute[] = "unmatched";

class HttpListener {
 public:
  // Listens on `address` ("HOST:PORT", "[V6]:PORT"; port 0 picks a free
  // one) and serves `routes` until destroyed. Errors: INVALID_ARGUMENT for
  // a malformed address or options; UNAVAILABLE when it cannot be bound (in
  // use, not an address of this machine), saying which.
  static absl::StatusOr<std::unique_ptr<HttpListener>> Start(
      const std::string& address, HttpRoutes routes,
      HttpListenerOptions options = {});

  // Stops listening, waits for the handlers running or queued to return,
  // writes their answers (within io_timeout), then closes every
  // connection. A request read meanwhile is answered 503 with
  // "Connection: close".
  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  // "HOST:PORT" with the port bound.
  const std::string& address() const { return address_; }

 private:
  class Impl;
  HttpListener(std::unique_ptr<Impl> impl, std::string address);

  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_HTTP_LISTENER_H_
