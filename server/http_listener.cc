#include "server/http_listener.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

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

// The route for (method, path): the exact path first, then the first
// pattern (in path order) that matches. Sets *path_known when some route
// has the path, whatever its method.
const HttpHandler* FindRoute(const HttpRoutes& routes,
                             const std::string& method, const std::string& path,
                             bool* path_known,
                             std::map<std::string, std::string>* params) {
  auto exact = routes.find({method, path});
  *path_known = false;
  if (exact != routes.end()) {
    *path_known = true;
    return &exact->second;
  }
  const HttpHandler* found = nullptr;
  for (const auto& [route, handler] : routes) {
    std::map<std::string, std::string> route_params;
    if (!MatchPath(route.second, path, &route_params)) continue;
    *path_known = true;
    if (found == nullptr && route.first == method) {
      found = &handler;
      *params = std::move(route_params);
    }
  }
  return found;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpListener>> HttpListener::Start(
    const std::string& address, HttpRoutes routes,
    HttpListenerOptions options) {
  std::string host;
  int port = 0;
  if (absl::Status s = SplitAddress(address, &host, &port); !s.ok()) return s;

  auto server = std::make_unique<httplib::Server>();
  const size_t threads = static_cast<size_t>(std::max(1, options.threads));
  server->new_task_queue = [threads] {
    return new httplib::ThreadPool(threads);
  };
  server->set_keep_alive_timeout(5);
  // cpp-httplib closes a keep-alive connection after 5 requests by default;
  // an OpenFeature provider sends one request per evaluation.
  server->set_keep_alive_max_count(10000);
  // Headers and body go out in separate writes: without TCP_NODELAY the
  // body waits for the client's delayed ACK (40ms per request).
  server->set_tcp_nodelay(true);
  server->set_read_timeout(5);
  server->set_write_timeout(5);
  server->set_payload_max_length(1 << 20);
  // cpp-httplib's default sets SO_REUSEPORT, with which a second server
  // given the same port binds it too and takes half the scrapes: only
  // SO_REUSEADDR (a restart may bind while old connections linger).
  server->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  std::set<std::string> paths;
  for (const auto& [route, handler] : routes) paths.insert(route.second);
  auto shared_routes = std::make_shared<const HttpRoutes>(std::move(routes));
  const std::string known = absl::StrJoin(paths, ", ");
  auto serve = [shared_routes, known](const httplib::Request& req,
                                      httplib::Response& res) {
    HttpRequest request{req.method, req.path, req.body, {}, {}};
    bool path_known = false;
    const HttpHandler* handler = FindRoute(*shared_routes, req.method, req.path,
                                           &path_known, &request.path_params);
    HttpResponse out;
    if (handler != nullptr) {
      for (const auto& [name, value] : req.headers) {
        request.headers[absl::AsciiStrToLower(name)] = value;
      }
      out = (*handler)(request);
    } else {
      out.status = path_known ? 405 : 404;
      out.body =
          path_known
              ? absl::StrCat(req.method, " is not served on ", req.path, "\n")
              : absl::StrCat(req.path, " is not served here; try ", known,
                             "\n");
    }
    res.status = out.status;
    for (const auto& [name, value] : out.headers) res.set_header(name, value);
    res.set_content(out.body, out.content_type.c_str());
  };
  for (const char* method : {"GET", "POST"}) {
    const std::string any_path = ".*";
    if (std::string(method) == "GET") {
      server->Get(any_path, serve);
    } else {
      server->Post(any_path, serve);
    }
  }
  // Other methods on any path: 405 or 404, as above.
  server->Put(".*", serve);
  server->Delete(".*", serve);
  server->Patch(".*", serve);

  const int bound = port == 0 ? server->bind_to_any_port(host)
                              : (server->bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen for HTTP on ", address,
        ": the port is in use or the host is not an address of this "
        "machine; pass --http_listen=HOST:PORT with a free port (port 0 "
        "picks one)"));
  }
  const bool v6 = host.find(':') != std::string::npos;
  std::string bound_address = v6 ? absl::StrCat("[", host, "]:", bound)
                                 : absl::StrCat(host, ":", bound);
  return std::unique_ptr<HttpListener>(
      new HttpListener(std::move(server), std::move(bound_address)));
}

HttpListener::HttpListener(std::unique_ptr<httplib::Server> server,
                           std::string address)
    : server_(std::move(server)), address_(std::move(address)) {
  auto returned = std::make_shared<std::atomic<bool>>(false);
  thread_ = std::thread([server = server_.get(), returned] {
    server->listen_after_bind();
    returned->store(true);
  });
  // stop() only ends a loop that has started: wait until it has (or
  // failed at once).
  while (!server_->is_running() && !returned->load()) {
    std::this_thread::yield();
  }
}

HttpListener::~HttpListener() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace abexp
