#include "server/http_listener.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "server/service/storage_executor.h"

namespace abexp {
namespace {

// Splits "HOST:PORT" or "[V6]:PORT" into host and port.
absl::Status SplitAddress(const std::string& address, std::string* host,
                          int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), port) || *port < 0 ||
      *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http_listen='", address,
        "' is not HOST:PORT; pass e.g. 127.0.0.1:9464 (port 0 picks a free "
        "one)"));
  }
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return absl::OkStatus();
}

// Whether `path` matches the route path `pattern`, whose "{name}" segments
// match any one non-empty segment; fills *params with them when it does.
bool MatchPath(const std::string& pattern, const std::string& path,
               std::map<std::string, std::string>* params) {
  if (pattern.find('{') == std::string::npos) return pattern == path;
  const std::vector<absl::string_view> want = absl::StrSplit(pattern, '/');
  const std::vector<absl::string_view> got = absl::StrSplit(path, '/');
  if (want.size() != got.size()) return false;
  std::map<std::string, std::string> found;
  for (size_t i = 0; i < want.size(); ++i) {
    if (absl::StartsWith(want[i], "{") && absl::EndsWith(want[i], "}")) {
      if (got[i].empty()) return false;
      found[std::string(want[i].substr(1, want[i].size() - 2))] =
          std::string(got[i]);
    } else if (want[i] != got[i]) {
      return false;
    }
  }
  *params = std::move(found);
  return true;
}

// A route as served: its handler, and what is told of its path's answers.
struct ServedRoute {
  HttpHandler handler;
  const HttpAnswerObserver* observer = nullptr;  // null: not observed
};
using ServedRoutes = std::map<std::pair<std::string, std::string>, ServedRoute>;

// What a request's method and path found.
struct RouteMatch {
  const HttpHandler* handler = nullptr;  // null: none for the method
  bool path_known = false;  // some route has the path, whatever its method
  // The matched route's observer; for a known path without the method, the
  // first route's with the path.
  const HttpAnswerObserver* observer = nullptr;
};

// The route for (method, path): the exact path first, then the first
// pattern (in path order) that matches; fills *params with its path
// parameters.
RouteMatch FindRoute(const ServedRoutes& routes, const std::string& method,
                     const std::string& path,
                     std::map<std::string, std::string>* params) {
  auto exact = routes.find({method, path});
  if (exact != routes.end()) {
    return {&exact->second.handler, true, exact->second.observer};
  }
  RouteMatch match;
  for (const auto& [route, served] : routes) {
    std::map<std::string, std::string> route_params;
    if (!MatchPath(route.second, path, &route_params)) continue;
    if (!match.path_known) match.observer = served.observer;
    match.path_known = true;
    if (match.handler == nullptr && route.first == method) {
      match.handler = &served.handler;
      match.observer = served.observer;
      *params = std::move(route_params);
    }
  }
  return match;
}

const char* MethodName(evhttp_cmd_type command) {
  switch (command) {
    case EVHTTP_REQ_GET:
      return "GET";
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_HEAD:
      return "HEAD";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_OPTIONS:
      return "OPTIONS";
    case EVHTTP_REQ_TRACE:
      return "TRACE";
    case EVHTTP_REQ_CONNECT:
      return "CONNECT";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
  }
  return "UNKNOWN";
}

// The reason phrase of the status line.
const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
  }
  return status < 400 ? "OK" : "Error";
}

// `text` percent-decoded, and "+" as a space when `plus_is_space` (in a
// query, not in a path).
std::string UriDecoded(const std::string& text, bool plus_is_space) {
  size_t size = 0;
  char* decoded = evhttp_uridecode(text.c_str(), plus_is_space, &size);
  if (decoded == nullptr) return text;
  std::string out(decoded, size);
  std::free(decoded);
  return out;
}

// The decoded path of `request`'s URI, without the query.
std::string DecodedPath(evhttp_request* request) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(request);
  const char* path = uri == nullptr ? nullptr : evhttp_uri_get_path(uri);
  if (path == nullptr || *path == '\0') return "/";
  return UriDecoded(path, false);
}

// The decoded parameters of `request`'s query (HttpRequest::query).
std::vector<std::pair<std::string, std::string>> QueryParams(
    evhttp_request* request) {
  std::vector<std::pair<std::string, std::string>> params;
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(request);
  const char* query = uri == nullptr ? nullptr : evhttp_uri_get_query(uri);
  if (query == nullptr) return params;
  for (absl::string_view param :
       absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> name_value =
        absl::StrSplit(param, absl::MaxSplits('=', 1));
    params.emplace_back(UriDecoded(std::string(name_value.first), true),
                        UriDecoded(std::string(name_value.second), true));
  }
  return params;
}

// What every loop serves: the routes, and the pool their handlers run on.
struct Served {
  ServedRoutes routes;
  std::string known_paths;  // for 404s: "/healthz, /metrics, ..."
  // HttpListenerOptions::observe's observers by route path, which
  // ServedRoute::observer points into; empty when not observed.
  std::map<std::string, HttpAnswerObserver> observers;
  const HttpAnswerObserver* unmatched = nullptr;  // into observers; may be null
  std::unique_ptr<StorageExecutor> handlers;
  std::atomic<int64_t>* refused = nullptr;  // may be null
};

// Makes libevent's bases lockable and wakeable from other threads (the
// handler threads hand answers back); once per process, before any base.
bool UseThreads() {
  static const bool ok = evthread_use_pthreads() == 0;
  return ok;
}

// One event loop: a thread, its event_base and evhttp, accepting from the
// shared listening socket.
class EventLoop {
 public:
  EventLoop(Served* served, const HttpListenerOptions& options)
      : served_(served), io_timeout_(options.io_timeout) {
    base_ = event_base_new();
    if (base_ == nullptr) return;
    http_ = evhttp_new(base_);
    wake_ = event_new(base_, -1, 0, &EventLoop::OnWake, this);
    if (http_ == nullptr || wake_ == nullptr) return;
    evhttp_set_gencb(http_, &EventLoop::OnRequest, this);
    evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                          EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                          EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                          EVHTTP_REQ_OPTIONS);
    evhttp_set_max_body_size(http_, options.max_body_bytes);
    // Past the limit, read the body to the end (discarding it) before the
    // 413, so the client is not reset while it still sends and sees it.
    evhttp_set_flags(http_, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_max_headers_size(http_, kMaxHeadersBytes);
    timeval timeout = absl::ToTimeval(options.io_timeout);
    evhttp_set_timeout_tv(http_, &timeout);
  }

  ~EventLoop() {
    if (thread_.joinable()) thread_.join();
    if (http_ != nullptr) evhttp_free(http_);
    if (wake_ != nullptr) event_free(wake_);
    if (base_ != nullptr) event_base_free(base_);
  }

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Accepts from `fd` (listening, not owned) and starts the loop's thread;
  // false when libevent could not be set up.
  bool Start(int fd) {
    if (http_ == nullptr || wake_ == nullptr) return false;
    // Not LEV_OPT_CLOSE_ON_FREE: every loop shares the socket, which is
    // non-blocking: the loops that lose the race for a connection must not
    // wait in accept().
    evconnlistener* listener =
        evconnlistener_new(base_, nullptr, nullptr, 0, 0, fd);
    if (listener == nullptr) return false;
    bound_ = evhttp_bind_listener(http_, listener);
    if (bound_ == nullptr) {
      evconnlistener_free(listener);
      return false;
    }
    thread_ = std::thread(
        [base = base_] { event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY); });
    return true;
  }

  // On the loop's thread, stops accepting and answers new requests 503;
  // returns once it has. REQUIRES: Start returned true.
  void StopAccepting() {
    absl::Notification stopped;
    struct Stop {
      EventLoop* loop;
      absl::Notification* stopped;
    } stop{this, &stopped};
    event_base_once(
        base_, -1, EV_TIMEOUT,
        [](evutil_socket_t, short, void* arg) {
          auto* stop = static_cast<Stop*>(arg);
          EventLoop* loop = stop->loop;
          loop->stopping_ = true;
          evhttp_del_accept_socket(loop->http_, loop->bound_);
          // Answers whose connection failed mid-write are never completed:
          // give up on them after io_timeout.
          timeval grace = absl::ToTimeval(loop->io_timeout_);
          event_base_loopexit(loop->base_, &grace);
          stop->stopped->Notify();
        },
        &stop, nullptr);
    stopped.WaitForNotification();
  }

  // Once every request read has been answered and written (or io_timeout
  // has passed), ends the loop and joins its thread.
  // REQUIRES: StopAccepting, and no handler left to complete.
  void Finish() {
    event_base_once(
        base_, -1, EV_TIMEOUT,
        [](evutil_socket_t, short, void* arg) {
          auto* loop = static_cast<EventLoop*>(arg);
          loop->finishing_ = true;
          loop->SendCompleted();
          loop->MaybeExit();
        },
        this, nullptr);
    if (thread_.joinable()) thread_.join();
  }

 private:
  // Answers to send, handed back by the handler threads.
  struct Completed {
    evhttp_request* request;
    HttpResponse response;
  };

  using Clock = std::chrono::steady_clock;

  static constexpr int kMaxHeadersBytes = 64 << 10;

  static void OnRequest(evhttp_request* request, void* arg) {
    static_cast<EventLoop*>(arg)->Dispatch(request);
  }

  static void OnWritten(evhttp_request*, void* arg) {
    auto* loop = static_cast<EventLoop*>(arg);
    --loop->unwritten_;
    loop->MaybeExit();
  }

  static void OnWake(evutil_socket_t, short, void* arg) {
    static_cast<EventLoop*>(arg)->SendCompleted();
  }

  void Dispatch(evhttp_request* request) {
    const Clock::time_point read = Clock::now();
    ++unwritten_;
    evhttp_request_set_on_complete_cb(request, &EventLoop::OnWritten, this);
    const std::string method = MethodName(evhttp_request_get_command(request));
    HttpRequest in{method, DecodedPath(request), "", {}, {}, {}};
    const RouteMatch match =
        FindRoute(served_->routes, method == "HEAD" ? "GET" : method, in.path,
                  &in.path_params);
    const HttpAnswerObserver* const observer =
        match.path_known ? match.observer : served_->unmatched;
    HttpResponse out;
    if (stopping_) {
      out.status = 503;
      out.body = "abexp-server is shutting down; retry on another server\n";
      Answer(request, out, observer, read);
      return;
    }
    if (match.handler == nullptr) {
      out.status = match.path_known ? 405 : 404;
      out.body = match.path_known
                     ? absl::StrCat(method, " is not served on ", in.path, "\n")
                     : absl::StrCat(in.path, " is not served here; try ",
                                    served_->known_paths, "\n");
      Answer(request, out, observer, read);
      return;
    }
    in.query = QueryParams(request);
    const evkeyvalq* headers = evhttp_request_get_input_headers(request);
    for (const evkeyval* h = headers->tqh_first; h != nullptr;
         h = h->next.tqe_next) {
      in.headers[absl::AsciiStrToLower(h->key)] = h->value;
    }
    evbuffer* body = evhttp_request_get_input_buffer(request);
    in.body.resize(evbuffer_get_length(body));
    evbuffer_copyout(body, in.body.data(), in.body.size());
    const bool queued =
        served_->handlers->TrySubmit([this, request, handler = match.handler,
                                      observer, read, in = std::move(in)] {
          HttpResponse response = (*handler)(in);
          Observe(observer, response.status, read);
          Complete(request, std::move(response));
        });
    if (!queued) {
      if (served_->refused != nullptr) served_->refused->fetch_add(1);
      out.status = 503;
      out.body =
          "abexp-server's HTTP listener has as many requests waiting for a "
          "handler thread as it holds; retry later, and raise "
          "--http_handler_threads if its handlers wait (on Redis, for "
          "exposures)\n";
      Answer(request, out, observer, read);
    }
  }

  // Tells `observer` (may be null) of an answer with `status` to a request
  // read at `read`.
  static void Observe(const HttpAnswerObserver* observer, int status,
                      Clock::time_point read) {
    if (observer != nullptr) {
      (*observer)(status, absl::FromChrono(Clock::now() - read));
    }
  }

  // On the loop: observes `response`, then sends it.
  void Answer(evhttp_request* request, const HttpResponse& response,
              const HttpAnswerObserver* observer, Clock::time_point read) {
    Observe(observer, response.status, read);
    Send(request, response);
  }

  // On a handler thread: hands the answer to the loop.
  void Complete(evhttp_request* request, HttpResponse response) {
    bool wake = false;
    {
      absl::MutexLock lock(&mu_);
      wake = completed_.empty();
      completed_.push_back({request, std::move(response)});
    }
    if (wake) event_active(wake_, EV_READ, 1);
  }

  void SendCompleted() {
    std::vector<Completed> completed;
    {
      absl::MutexLock lock(&mu_);
      completed.swap(completed_);
    }
    for (const Completed& c : completed) Send(c.request, c.response);
  }

  void Send(evhttp_request* request, const HttpResponse& response) {
    evkeyvalq* headers = evhttp_request_get_output_headers(request);
    evhttp_add_header(headers, "Content-Type", response.content_type.c_str());
    for (const auto& [name, value] : response.headers) {
      evhttp_add_header(headers, name.c_str(), value.c_str());
    }
    if (stopping_) evhttp_add_header(headers, "Connection", "close");
    evbuffer_add(evhttp_request_get_output_buffer(request),
                 response.body.data(), response.body.size());
    // A request whose client left is freed unwritten, without OnWritten.
    if (evhttp_request_get_connection(request) == nullptr) --unwritten_;
    evhttp_send_reply(request, response.status, ReasonPhrase(response.status),
                      nullptr);
    MaybeExit();
  }

  void MaybeExit() {
    if (finishing_ && unwritten_ == 0) event_base_loopbreak(base_);
  }

  Served* const served_;
  const absl::Duration io_timeout_;
  event_base* base_ = nullptr;
  evhttp* http_ = nullptr;
  event* wake_ = nullptr;  // activated by Complete
  evhttp_bound_socket* bound_ = nullptr;
  std::thread thread_;
  // The loop thread's own.
  bool stopping_ = false;   // answer new requests 503
  bool finishing_ = false;  // exit once unwritten_ is 0
  int unwritten_ = 0;       // requests read and not yet written

  absl::Mutex mu_;
  std::vector<Completed> completed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

class HttpListener::Impl {
 public:
  // REQUIRES: fd is listening; takes it.
  Impl(int fd, HttpRoutes routes, const HttpListenerOptions& options)
      : fd_(fd) {
    std::set<std::string> paths;
    for (const auto& [route, handler] : routes) paths.insert(route.second);
    served_.known_paths = absl::StrJoin(paths, ", ");
    if (options.observe) {
      for (const std::string& path : paths) {
        served_.observers[path] = options.observe(path);
      }
      HttpAnswerObserver& unmatched = served_.observers[kUnmatchedHttpRoute] =
          options.observe(kUnmatchedHttpRoute);
      if (unmatched) served_.unmatched = &unmatched;
    }
    for (auto& [route, handler] : routes) {
      ServedRoute& served = served_.routes[route];
      served.handler = std::move(handler);
      auto observer = served_.observers.find(route.second);
      if (observer != served_.observers.end() && observer->second) {
        served.observer = &observer->second;
      }
    }
    served_.refused = options.refused;
    StorageExecutorOptions pool;
    pool.threads = options.handler_threads;
    pool.max_calls = options.max_queued;
    served_.handlers = std::make_unique<StorageExecutor>(pool);
    for (int i = 0; i < options.threads; ++i) {
      loops_.push_back(std::make_unique<EventLoop>(&served_, options));
    }
  }

  // Starts every loop; false when libevent could not be set up.
  bool Start() {
    for (auto& loop : loops_) {
      if (!loop->Start(fd_)) return false;
      ++started_;
    }
    return true;
  }

  ~Impl() {
    for (int i = 0; i < started_; ++i) loops_[i]->StopAccepting();
    served_.handlers.reset();  // runs what was queued, then joins
    for (int i = 0; i < started_; ++i) loops_[i]->Finish();
    loops_.clear();
    close(fd_);
  }

 private:
  const int fd_;
  Served served_;
  std::vector<std::unique_ptr<EventLoop>> loops_;
  int started_ = 0;
};

namespace {

// A listening socket on host:port (SO_REUSEADDR, never SO_REUSEPORT: a
// second server on the port must fail, not share it), or why not.
absl::StatusOr<int> Listen(const std::string& address, const std::string& host,
                           int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int e = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
      e != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen for HTTP on ", address, ": host '", host,
        "' does not resolve (", gai_strerror(e),
        "); pass --http_listen=HOST:PORT with an address of this machine"));
  }
  int error = 0;
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                a->ai_protocol);
    if (fd < 0) {
      error = errno;
      continue;
    }
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    // Inherited by accepted connections on Linux: an answer never waits
    // for the client's delayed ACK.
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
      error = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) {
    const char* why = error == EADDRINUSE ? "the port is in use"
                      : error == EADDRNOTAVAIL
                          ? "the host is not an address of this machine"
                          : std::strerror(error);
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", address, ": ", why,
                     "; pass --http_listen=HOST:PORT with a free port of an "
                     "address of this machine (port 0 picks one)"));
  }
  return fd;
}

// The port `fd` is bound to.
int BoundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t size = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &size) != 0) {
    return -1;
  }
  if (bound.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpListener>> HttpListener::Start(
    const std::string& address, HttpRoutes routes,
    HttpListenerOptions options) {
  std::string host;
  int port = 0;
  if (absl::Status s = SplitAddress(address, &host, &port); !s.ok()) return s;
  if (options.threads < 1 || options.handler_threads < 1 ||
      options.max_queued < options.handler_threads ||
      options.max_body_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HTTP listener options out of range: threads ", options.threads,
        " and handler_threads ", options.handler_threads,
        " must be at least 1, max_queued ", options.max_queued,
        " at least handler_threads, max_body_bytes ", options.max_body_bytes,
        " at least 0"));
  }
  if (!UseThreads()) {
    return absl::InternalError(
        "libevent has no thread support (evthread_use_pthreads failed); "
        "install libevent's pthreads library (libevent-pthreads)");
  }
  absl::StatusOr<int> fd = Listen(address, host, port);
  if (!fd.ok()) return fd.status();
  const int bound = BoundPort(*fd);
  auto impl = std::make_unique<Impl>(*fd, std::move(routes), options);
  if (!impl->Start()) {
    return absl::InternalError(
        "libevent could not set up the HTTP listener's event loops (out of "
        "memory or file descriptors?); raise the open files limit (ulimit "
        "-n) and start again");
  }
  const bool v6 = host.find(':') != std::string::npos;
  std::string bound_address = v6 ? absl::StrCat("[", host, "]:", bound)
                                 : absl::StrCat(host, ":", bound);
  return std::unique_ptr<HttpListener>(
      new HttpListener(std::move(impl), std::move(bound_address)));
}

HttpListener::HttpListener(std::unique_ptr<Impl> impl, std::string address)
    : impl_(std::move(impl)), address_(std::move(address)) {}

HttpListener::~HttpListener() = default;

}  // namespace abexp
