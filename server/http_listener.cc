#include "server/http_listener.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace abexp {
namespace {

// Threads answering requests: a scrape or a probe now and then.
constexpr size_t kThreads = 4;

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

}  // namespace

absl::StatusOr<std::unique_ptr<HttpListener>> HttpListener::Start(
    const std::string& address, HttpRoutes routes) {
  std::string host;
  int port = 0;
  if (absl::Status s = SplitAddress(address, &host, &port); !s.ok()) return s;

  auto server = std::make_unique<httplib::Server>();
  server->new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  server->set_keep_alive_timeout(5);
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
    auto it = shared_routes->find({req.method, req.path});
    HttpResponse out;
    if (it != shared_routes->end()) {
      out = it->second(HttpRequest{req.method, req.path, req.body});
    } else {
      bool path_known = false;
      for (const auto& [route, handler] : *shared_routes) {
        path_known = path_known || route.second == req.path;
      }
      out.status = path_known ? 405 : 404;
      out.body =
          path_known
              ? absl::StrCat(req.method, " is not served on ", req.path, "\n")
              : absl::StrCat(req.path, " is not served here; try ", known,
                             "\n");
    }
    res.status = out.status;
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
