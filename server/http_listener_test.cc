// HttpListener over loopback, with cpp-httplib's client: routes, headers,
// errors, the body limit, that a waiting handler holds neither the event
// loop nor the other routes, and what the destructor waits for.
#include "server/http_listener.h"

#include <httplib.h>

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

using ::testing::HasSubstr;

int PortOf(const std::string& address) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port))
      << address;
  return port;
}

HttpResponse Text(std::string body) {
  HttpResponse response;
  response.body = std::move(body);
  return response;
}

// What HttpListenerOptions::observe was given: the routes it was asked
// for, and each answer's status by route.
class Observed {
 public:
  std::function<HttpAnswerObserver(const std::string&)> Observer() {
    return [this](const std::string& route) -> HttpAnswerObserver {
      absl::MutexLock lock(&mu_);
      routes_.insert(route);
      return [this, route](int status, absl::Duration elapsed) {
        absl::MutexLock lock(&mu_);
        statuses_[route].push_back(status);
        EXPECT_GE(elapsed, absl::ZeroDuration()) << route;
      };
    };
  }
  std::set<std::string> routes() {
    absl::MutexLock lock(&mu_);
    return routes_;
  }
  std::map<std::string, std::vector<int>> statuses() {
    absl::MutexLock lock(&mu_);
    return statuses_;
  }

 private:
  absl::Mutex mu_;
  std::set<std::string> routes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<int>> statuses_ ABSL_GUARDED_BY(mu_);
};

HttpRoutes HealthzRoute() {
  HttpRoutes routes;
  routes[{"GET", "/healthz"}] = [](const HttpRequest&) { return Text("ok"); };
  return routes;
}

TEST(HttpListener, PassesPathParamsLowerCaseHeadersAndBodyAndSendsHeaders) {
  HttpRoutes routes;
  routes[{"POST", "/flags/{key}"}] = [](const HttpRequest& request) {
    HttpResponse response;
    response.content_type = "application/json";
    response.body =
        absl::StrCat(request.method, " ", request.PathParam("key"), " ",
                     request.headers.at("x-caller"), " ", request.body);
    response.headers.push_back({"ETag", "\"v1\""});
    return response;
  };
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("127.0.0.1:0", std::move(routes));
  ASSERT_TRUE(listener.ok()) << listener.status();
  httplib::Client client("127.0.0.1", PortOf((*listener)->address()));
  httplib::Result result =
      client.Post("/flags/new%2Dcheckout", {{"X-Caller", "shop"}},
                  "{\"context\":{}}", "application/json");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, "POST new-checkout shop {\"context\":{}}");
  EXPECT_EQ(result->get_header_value("ETag"), "\"v1\"");
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
}

TEST(HttpListener, PassesTheQueryDecodedInOrder) {
  HttpRoutes routes;
  routes[{"GET", "/report"}] = [](const HttpRequest& request) {
    std::string listed;
    for (const auto& [name, value] : request.query) {
      absl::StrAppend(&listed, "[", name, "=", value, "]");
    }
    return Text(absl::StrCat(request.path, " ", listed));
  };
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("127.0.0.1:0", std::move(routes));
  ASSERT_TRUE(listener.ok()) << listener.status();
  httplib::Client client("127.0.0.1", PortOf((*listener)->address()));
  client.set_url_encode(false);  // send the query as written here
  // Percent escapes in names and values, "+" as a space, a name without
  // "=" (an empty value), a repeated name, and an empty parameter skipped.
  httplib::Result result = client.Get(
      "/report?dimension=rfm%20tier&adjust%5Fsegments=true&&"
      "note=a+b%2Bc&flag&dimension=x%3Dy");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body,
            "/report [dimension=rfm tier][adjust_segments=true]"
            "[note=a b+c][flag=][dimension=x=y]");
  result = client.Get("/report");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->body, "/report ");
}

TEST(HttpListener, UnknownPathsAre404NamingTheRoutesAndOtherMethods405) {
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("127.0.0.1:0", HealthzRoute());
  ASSERT_TRUE(listener.ok()) << listener.status();
  httplib::Client client("127.0.0.1", PortOf((*listener)->address()));
  httplib::Result missing = client.Get("/healthy");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_THAT(missing->body, HasSubstr("/healthz"));
  httplib::Result posted = client.Post("/healthz", "", "text/plain");
  ASSERT_TRUE(posted);
  EXPECT_EQ(posted->status, 405);
  EXPECT_THAT(posted->body, HasSubstr("POST is not served on /healthz"));
  httplib::Result head = client.Head("/healthz");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->body, "");
}

TEST(HttpListener, ObservesEachAnswerUnderItsRoutesTemplateAndStatus) {
  HttpRoutes routes = HealthzRoute();
  routes[{"GET", "/flags/{key}"}] = [](const HttpRequest& request) {
    HttpResponse response = Text(request.PathParam("key"));
    if (request.PathParam("key") != "new-checkout") response.status = 404;
    return response;
  };
  Observed observed;
  HttpListenerOptions options;
  options.observe = observed.Observer();
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("127.0.0.1:0", std::move(routes), options);
  ASSERT_TRUE(listener.ok()) << listener.status();
  // Asked once per route path and for unmatched, before any request.
  EXPECT_EQ(observed.routes(),
            (std::set<std::string>{"/flags/{key}", "/healthz", "unmatched"}));
  EXPECT_TRUE(observed.statuses().empty());

  httplib::Client client("127.0.0.1", PortOf((*listener)->address()));
  for (const char* path : {"/flags/new-checkout", "/flags/old-banner",
                           "/flags/new-checkout", "/nowhere", "/flags"}) {
    ASSERT_TRUE(client.Get(path)) << path;
  }
  ASSERT_TRUE(client.Post("/flags/new-checkout", "", "text/plain"));
  ASSERT_TRUE(client.Head("/healthz"));
  // Each answer was observed before it was written: no waiting here.
  EXPECT_EQ(observed.statuses(), (std::map<std::string, std::vector<int>>{
                                     {"/flags/{key}", {200, 404, 200, 405}},
                                     {"/healthz", {200}},
                                     {"unmatched", {404, 404}}}));
}

TEST(HttpListener, ABodyOverTheLimitIs413AndOneAtItIsServed) {
  HttpRoutes routes;
  routes[{"POST", "/echo"}] = [](const HttpRequest& request) {
    return Text(std::to_string(request.body.size()));
  };
  HttpListenerOptions options;
  options.max_body_bytes = 1000;
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("127.0.0.1:0", std::move(routes), options);
  ASSERT_TRUE(listener.ok()) << listener.status();
  httplib::Client client("127.0.0.1", PortOf((*listener)->address()));
  httplib::Result at_limit =
      client.Post("/echo", std::string(1000, 'a'), "text/plain");
  ASSERT_TRUE(at_limit);
  EXPECT_EQ(at_limit->status, 200);
  EXPECT_EQ(at_limit->body, "1000");
  httplib::Result over =
      client.Post("/echo", std::string(1001, 'a'), "text/plain");
  ASSERT_TRUE(over) << httplib::to_string(over.error());
  EXPECT_EQ(over->status, 413);
}

TEST(HttpListener, AHandlerThatWaitsHoldsNeitherTheLoopNorOtherRoutes) {
  absl::Notification entered, release;
  HttpRoutes routes = HealthzRoute();
  routes[{"GET", "/slow"}] = [&](const HttpRequest&) {
    entered.Notify();
    release.WaitForNotification();
    return Text("done");
  };
  HttpListenerOptions options;
  options.threads = 1;  // one loop: it must not be the one waiting
  options.handler_threads = 2;
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("127.0.0.1:0", std::move(routes), options);
  ASSERT_TRUE(listener.ok()) << listener.status();
  const int port = PortOf((*listener)->address());
  int slow_status = 0;
  std::thread slow([&] {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(60);
    if (httplib::Result r = client.Get("/slow")) slow_status = r->status;
  });
  entered.WaitForNotification();
  httplib::Client client("127.0.0.1", port);
  httplib::Result healthz = client.Get("/healthz");
  release.Notify();
  slow.join();
  ASSERT_TRUE(healthz) << httplib::to_string(healthz.error());
  EXPECT_EQ(healthz->status, 200);
  EXPECT_EQ(healthz->body, "ok");
  EXPECT_EQ(slow_status, 200);
}

TEST(HttpListener, RequestsPastTheQueueAre503) {
  absl::Notification entered, release;
  HttpRoutes routes;
  routes[{"GET", "/slow"}] = [&](const HttpRequest&) {
    entered.Notify();
    release.WaitForNotification();
    return Text("done");
  };
  HttpListenerOptions options;
  options.handler_threads = 1;
  options.max_queued = 1;
  std::atomic<int64_t> refused{0};
  options.refused = &refused;
  Observed observed;
  options.observe = observed.Observer();
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("127.0.0.1:0", std::move(routes), options);
  ASSERT_TRUE(listener.ok()) << listener.status();
  const int port = PortOf((*listener)->address());
  std::thread slow([&] {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(60);
    client.Get("/slow");
  });
  entered.WaitForNotification();
  httplib::Client client("127.0.0.1", port);
  httplib::Result answer = client.Get("/slow");
  release.Notify();
  slow.join();
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 503);
  EXPECT_THAT(answer->body, HasSubstr("--http_handler_threads"));
  EXPECT_EQ(refused.load(), 1);
  // The refused one first, under its route.
  EXPECT_EQ(observed.statuses(),
            (std::map<std::string, std::vector<int>>{{"/slow", {503, 200}}}));
}

TEST(HttpListener, TheDestructorWaitsForARunningHandlerAndSendsItsAnswer) {
  absl::Notification entered, release;
  std::atomic<bool> returned{false};
  HttpRoutes routes;
  routes[{"GET", "/slow"}] = [&](const HttpRequest&) {
    entered.Notify();
    release.WaitForNotification();
    returned.store(true);
    return Text("done");
  };
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("127.0.0.1:0", std::move(routes));
  ASSERT_TRUE(listener.ok()) << listener.status();
  const int port = PortOf((*listener)->address());
  int status = 0;
  std::string body, connection;
  std::thread slow([&] {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(60);
    if (httplib::Result r = client.Get("/slow")) {
      status = r->status;
      body = r->body;
      connection = r->get_header_value("Connection");
    }
  });
  entered.WaitForNotification();
  std::thread destroy([&] {
    listener->reset();
    // Reset returns only after the handler did.
    EXPECT_TRUE(returned.load());
  });
  release.Notify();
  destroy.join();
  slow.join();
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body, "done");
  EXPECT_EQ(connection, "close");
  // Nothing listens any more.
  httplib::Client client("127.0.0.1", port);
  EXPECT_FALSE(client.Get("/slow"));
}

TEST(HttpListener, ASecondListenerOnAPortInUseIsUnavailable) {
  absl::StatusOr<std::unique_ptr<HttpListener>> first =
      HttpListener::Start("127.0.0.1:0", HealthzRoute());
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<HttpListener>> second =
      HttpListener::Start((*first)->address(), HealthzRoute());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("the port is in use"));
  EXPECT_THAT(second.status().message(), HasSubstr("--http_listen"));
}

TEST(HttpListener, MalformedAddressesAreInvalidArguments) {
  for (const char* address : {"127.0.0.1", ":80", "127.0.0.1:http",
                              "127.0.0.1:70000", "127.0.0.1:-1"}) {
    absl::StatusOr<std::unique_ptr<HttpListener>> listener =
        HttpListener::Start(address, HealthzRoute());
    ASSERT_FALSE(listener.ok()) << address;
    EXPECT_EQ(listener.status().code(), absl::StatusCode::kInvalidArgument)
        << address;
    EXPECT_THAT(listener.status().message(), HasSubstr("HOST:PORT"));
  }
}

TEST(HttpListener, ListensOnIpv6Loopback) {
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("[::1]:0", HealthzRoute());
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_THAT((*listener)->address(), ::testing::StartsWith("[::1]:"));
  httplib::Client client("::1", PortOf((*listener)->address()));
  httplib::Result result = client.Get("/healthz");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->body, "ok");
}

TEST(HttpListener, ServesManyRequestsOnOneKeepAliveConnectionAcrossLoops) {
  HttpListenerOptions options;
  options.threads = 4;
  absl::StatusOr<std::unique_ptr<HttpListener>> listener =
      HttpListener::Start("127.0.0.1:0", HealthzRoute(), options);
  ASSERT_TRUE(listener.ok()) << listener.status();
  httplib::Client client("127.0.0.1", PortOf((*listener)->address()));
  client.set_keep_alive(true);
  for (int i = 0; i < 200; ++i) {
    httplib::Result result = client.Get("/healthz");
    ASSERT_TRUE(result) << i << ": " << httplib::to_string(result.error());
    ASSERT_EQ(result->status, 200);
    EXPECT_NE(result->get_header_value("Connection"), "close");
  }
}

}  // namespace
}  // namespace abexp
