// The operators' endpoints of a real abexp-server on a real redis-server
// (--http_listen): /metrics moves by exactly the traffic sent, its text
// passes `promtool check metrics`, HTTP requests are counted by route
// template, reloads are counted, and recording's health (gRPC and /readyz)
// follows whether it can acknowledge.
#include <httplib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::Eventually;
using ::abexp::testing::HealthCheck;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;
using ::testing::HasSubstr;

// One running experiment with a metric...
constexpr char kCheckoutOnly[] = R"yaml(
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
)yaml";
// ...and a second one.
const std::string& Config() {
  static const std::string* const config =
      new std::string(std::string(kCheckoutOnly) + R"yaml(
  - key: banner
    status: running
    variants:
      - {key: off, weight: 1}
      - {key: red, weight: 1}
      - {key: blue, weight: 1}
)yaml");
  return *config;
}

// One sample of the text format: name, labels, value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the Prometheus text format (the subset /metrics writes: no
// escaped quotes in label values, no timestamps).
std::vector<Sample> ParseSamples(const std::string& text) {
  std::vector<Sample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line.front() == '#') continue;
    const size_t space = line.rfind(' ');
    Sample sample;
    if (space == absl::string_view::npos ||
        !absl::SimpleAtod(line.substr(space + 1), &sample.value)) {
      ADD_FAILURE() << "not a sample line: " << line;
      continue;
    }
    absl::string_view series = line.substr(0, space);
    const size_t brace = series.find('{');
    sample.name = std::string(series.substr(0, brace));
    if (brace != absl::string_view::npos) {
      absl::string_view labels = series.substr(brace + 1);
      absl::ConsumeSuffix(&labels, "}");
      for (absl::string_view pair :
           absl::StrSplit(labels, "\",", absl::SkipEmpty())) {
        std::pair<std::string, std::string> kv =
            absl::StrSplit(pair, absl::MaxSplits("=\"", 1));
        absl::string_view value = kv.second;
        absl::ConsumeSuffix(&value, "\"");
        sample.labels[kv.first] = std::string(value);
      }
    }
    out.push_back(std::move(sample));
  }
  return out;
}

// The value of the sample `name` whose labels include `labels`, summed over
// every such sample (0 when there is none).
double Value(const std::vector<Sample>& samples, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  double sum = 0;
  for (const Sample& s : samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      match = match && it != s.labels.end() && it->second == v;
    }
    if (match) sum += s.value;
  }
  return sum;
}

class MetricsE2eTest : public RecordingServerTest {
 protected:
  MetricsE2eTest() : RecordingServerTest(Config(), "") {}

  // GET `path` of the HTTP listener: the status and body (status -1 when
  // it could not be asked).
  std::pair<int, std::string> Get(const std::string& path) {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    httplib::Result result = client.Get(path.c_str());
    if (!result) return {-1, httplib::to_string(result.error())};
    return {result->status, result->body};
  }

  std::string Scrape() {
    auto [status, body] = Get("/metrics");
    EXPECT_EQ(status, 200) << body;
    return body;
  }

  grpc::Status Assign(const v1::AssignRequest& request,
                      v1::AssignResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    return assign_->Assign(&context, request, response);
  }
};

// Runs `promtool check metrics` on `text`; its exit code and output.
std::pair<int, std::string> Promtool(const std::string& dir,
                                     const std::string& text) {
  const std::string path = dir + "/metrics.txt";
  std::ofstream(path) << text;
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(
      {"/bin/sh", "-c", "promtool check metrics < '" + path + "'"}, &out, &err);
  if (!code.ok()) return {-1, std::string(code.status().message())};
  return {*code, out + err};
}

TEST_F(MetricsE2eTest, CountersMoveByExactlyTheTrafficSent) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  const std::vector<Sample> before = ParseSamples(Scrape());

  // 40 Assign calls; what they served, by experiment and variant.
  std::map<std::pair<std::string, std::string>, int> served;
  for (int u = 0; u < 40; ++u) {
    v1::AssignRequest request;
    *request.mutable_unit() = User(absl::StrCat("assign-", u));
    v1::AssignResponse response;
    ASSERT_TRUE(Assign(request, &response).ok());
    for (const v1::Assignment& a : response.assignments()) {
      if (!a.variant_key().empty()) {
        ++served[{a.experiment_key(), a.variant_key()}];
      }
    }
  }
  // 3 that fail: no unit.
  for (int i = 0; i < 3; ++i) {
    v1::AssignResponse response;
    EXPECT_EQ(Assign(v1::AssignRequest(), &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Exposures: 10 new, the same 10 again (duplicates), 2 of an experiment
  // the config lacks.
  const absl::Time exposed_at = absl::Now() - absl::Hours(1);
  v1::RecordExposuresRequest exposures;
  for (int u = 0; u < 10; ++u) {
    v1::ExposureRecord* e = exposures.add_exposures();
    e->set_experiment_key("checkout");
    *e->mutable_unit() = User(absl::StrCat("buyer-", u));
    e->set_variant_key("control");
    *e->mutable_time() = ToProto(exposed_at);
  }
  v1::RecordExposuresResponse recorded;
  ASSERT_TRUE(RecordExposures(exposures, &recorded).ok());
  ASSERT_TRUE(RecordExposures(exposures, &recorded).ok());
  v1::RecordExposuresRequest unknown;
  for (int u = 0; u < 2; ++u) {
    v1::ExposureRecord* e = unknown.add_exposures();
    e->set_experiment_key("no_such_experiment");
    *e->mutable_unit() = User(absl::StrCat("buyer-", u));
    e->set_variant_key("control");
  }
  ASSERT_TRUE(RecordExposures(unknown, &recorded).ok());
  // Events: 4 orders of exposed buyers, recorded; the same 4 again
  // (same idempotency keys: duplicates).
  v1::RecordEventsRequest events;
  for (int u = 0; u < 4; ++u) {
    v1::EventRecord* e = events.add_events();
    *e->mutable_unit() = User(absl::StrCat("buyer-", u));
    e->set_name("order_completed");
    *e->mutable_time() = ToProto(exposed_at + absl::Minutes(10));
    e->set_idempotency_key(absl::StrCat("order-", u));
  }
  v1::RecordEventsResponse tracked;
  ASSERT_TRUE(RecordEvents(events, &tracked).ok());
  ASSERT_TRUE(RecordEvents(events, &tracked).ok());

  const std::string text = Scrape();
  const std::vector<Sample> after = ParseSamples(text);
  auto delta = [&](const std::string& name,
                   const std::map<std::string, std::string>& labels) {
    return Value(after, name, labels) - Value(before, name, labels);
  };
  const std::string assignment = "abexp.v1.AssignmentService";
  const std::string recording = "abexp.v1.RecordingService";
  EXPECT_EQ(
      delta("abexp_rpc_requests_total",
            {{"service", assignment}, {"method", "Assign"}, {"code", "OK"}}),
      40);
  EXPECT_EQ(delta("abexp_rpc_requests_total", {{"service", assignment},
                                               {"method", "Assign"},
                                               {"code", "INVALID_ARGUMENT"}}),
            3);
  EXPECT_EQ(delta("abexp_rpc_duration_seconds_count",
                  {{"service", assignment}, {"method", "Assign"}}),
            43);
  EXPECT_EQ(delta("abexp_rpc_requests_total", {{"service", recording},
                                               {"method", "RecordExposures"},
                                               {"code", "OK"}}),
            3);
  EXPECT_EQ(delta("abexp_rpc_requests_total", {{"service", recording},
                                               {"method", "RecordEvents"},
                                               {"code", "OK"}}),
            2);
  // Every call ended with some code: nothing else was counted.
  EXPECT_EQ(delta("abexp_rpc_requests_total", {}), 48);

  ASSERT_FALSE(served.empty());
  int assigned = 0;
  for (const auto& [key, n] : served) {
    EXPECT_EQ(delta("abexp_assignments_total",
                    {{"experiment", key.first}, {"variant", key.second}}),
              n)
        << key.first << "/" << key.second;
    assigned += n;
  }
  EXPECT_EQ(delta("abexp_assignments_total", {}), assigned);

  EXPECT_EQ(delta("abexp_records_total",
                  {{"kind", "exposure"}, {"outcome", "recorded"}}),
            10);
  EXPECT_EQ(delta("abexp_records_total",
                  {{"kind", "exposure"}, {"outcome", "duplicate"}}),
            10);
  EXPECT_EQ(delta("abexp_records_total", {{"kind", "exposure"},
                                          {"outcome", "ignored"},
                                          {"reason", "unknown_experiment"}}),
            2);
  EXPECT_EQ(delta("abexp_records_total",
                  {{"kind", "event"}, {"outcome", "recorded"}}),
            4);
  EXPECT_EQ(delta("abexp_records_total",
                  {{"kind", "event"}, {"outcome", "duplicate"}}),
            4);
  EXPECT_EQ(delta("abexp_records_total", {}), 30);

  // Recording reached Redis: commands and round trips, no errors.
  EXPECT_GT(delta("abexp_redis_commands_total", {{"pool", "recording"}}), 0);
  EXPECT_EQ(
      delta("abexp_redis_round_trip_seconds_count", {{"pool", "recording"}}),
      delta("abexp_redis_round_trips_total", {{"pool", "recording"}}));
  EXPECT_EQ(delta("abexp_redis_errors_total", {}), 0);
  EXPECT_EQ(Value(after, "abexp_spool_pending_records"), 0);
  EXPECT_EQ(Value(after, "abexp_recording_can_acknowledge"), 1);
  EXPECT_EQ(Value(after, "abexp_config_experiments"), 2);
  EXPECT_EQ(Value(after, "abexp_config_info", {{"version", config_->version}}),
            1);
  EXPECT_EQ(Value(after, "abexp_build_info"), 1);

  auto [code, output] = Promtool(dir_.path(), text);
  EXPECT_EQ(code, 0) << output << "\n" << text;
}

TEST_F(MetricsE2eTest, HttpRequestsAreCountedByRouteTemplateAndStatus) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  const std::string report = "/experiments/{key}/report";
  const std::vector<Sample> before = ParseSamples(Scrape());
  // Every route's latency series is there from the start.
  for (const std::string& route :
       {report, std::string("/metrics"), std::string("/healthz"),
        std::string("/readyz"), std::string("/ofrep/v1/configuration"),
        std::string("unmatched")}) {
    EXPECT_TRUE(std::any_of(before.begin(), before.end(), [&](const Sample& s) {
      return s.name == "abexp_http_request_duration_seconds_count" &&
             s.labels.count("route") == 1 && s.labels.at("route") == route;
    })) << route;
  }

  EXPECT_EQ(Get("/experiments/checkout/report").first, 200);
  EXPECT_EQ(Get("/experiments/banner/report").first, 200);
  EXPECT_EQ(Get("/experiments/nope/report").first, 404);
  EXPECT_EQ(Get("/experiments/checkout/report?metric=x").first, 400);
  EXPECT_EQ(Get("/experiments/checkout").first, 404);
  EXPECT_EQ(Get("/no/such/path").first, 404);
  EXPECT_EQ(Get("/healthz").first, 200);

  const std::string text = Scrape();
  const std::vector<Sample> after = ParseSamples(text);
  auto delta = [&](const std::string& name,
                   const std::map<std::string, std::string>& labels) {
    return Value(after, name, labels) - Value(before, name, labels);
  };
  const std::string requests = "abexp_http_requests_total";
  EXPECT_EQ(delta(requests, {{"route", report}, {"code", "200"}}), 2);
  EXPECT_EQ(delta(requests, {{"route", report}, {"code", "404"}}), 1);
  EXPECT_EQ(delta(requests, {{"route", report}, {"code", "400"}}), 1);
  EXPECT_EQ(
      delta("abexp_http_request_duration_seconds_count", {{"route", report}}),
      4);
  EXPECT_EQ(delta(requests, {{"route", "unmatched"}, {"code", "404"}}), 2);
  EXPECT_EQ(delta(requests, {{"route", "/healthz"}, {"code", "200"}}), 1);
  // The first scrape, counted once its answer was made.
  EXPECT_EQ(delta(requests, {{"route", "/metrics"}, {"code", "200"}}), 1);
  EXPECT_EQ(delta(requests, {}), 8);
  // Only templates are labels, never a concrete path.
  for (const Sample& s : after) {
    if (s.name != requests) continue;
    EXPECT_THAT(s.labels.at("route"),
                ::testing::AnyOf(report, "/metrics", "/healthz", "unmatched"));
  }

  auto [code, output] = Promtool(dir_.path(), text);
  EXPECT_EQ(code, 0) << output << "\n" << text;
}

TEST_F(MetricsE2eTest, ReloadsAreCountedByResult) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  const std::vector<Sample> before = ParseSamples(Scrape());
  EXPECT_EQ(Value(before, "abexp_config_running_experiments"), 2);
  EXPECT_GT(Value(before, "abexp_config_last_success_timestamp_seconds"), 0);

  // The same file, then an invalid one, then one that removes a running
  // experiment; each reload waited for in the log.
  auto reload = [&](const std::string& yaml, const std::string& logged) {
    if (!yaml.empty()) std::ofstream(config_path_) << yaml;
    ASSERT_TRUE(server_->Signal(SIGHUP).ok());
    ASSERT_TRUE(server_->WaitForStderr(logged, absl::Seconds(30)).ok())
        << server_->Stderr();
  };
  ASSERT_NO_FATAL_FAILURE(reload("", "(unchanged)"));
  ASSERT_NO_FATAL_FAILURE(
      reload("experiments: [{key: x}]\n", "config reload failed"));
  ASSERT_NO_FATAL_FAILURE(reload(kCheckoutOnly, " (was "));

  const std::vector<Sample> after = ParseSamples(Scrape());
  auto delta = [&](const std::string& name,
                   const std::map<std::string, std::string>& labels) {
    return Value(after, name, labels) - Value(before, name, labels);
  };
  EXPECT_EQ(delta("abexp_config_reloads_total", {{"result", "unchanged"}}), 1);
  EXPECT_EQ(delta("abexp_config_reloads_total", {{"result", "failed"}}), 1);
  EXPECT_EQ(delta("abexp_config_reloads_total", {{"result", "changed"}}), 1);
  EXPECT_EQ(delta("abexp_config_dropped_running_total", {}), 1);
  EXPECT_EQ(Value(after, "abexp_config_experiments"), 1);
  EXPECT_EQ(Value(after, "abexp_config_running_experiments"), 1);
  // One version is labelled, and not the first one any more.
  EXPECT_EQ(Value(after, "abexp_config_info"), 1);
  EXPECT_EQ(Value(after, "abexp_config_info", {{"version", config_->version}}),
            0);
  EXPECT_GE(Value(after, "abexp_config_last_success_timestamp_seconds"),
            Value(before, "abexp_config_last_success_timestamp_seconds"));
}

TEST_F(MetricsE2eTest, RecordingHealthFollowsWhetherItCanAcknowledge) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp({"--shutdown_grace=1s"}));
  const std::string service = "abexp.v1.RecordingService";
  EXPECT_EQ(Get("/healthz").first, 200);
  EXPECT_EQ(Get("/readyz").first, 200) << Get("/readyz").second;
  absl::StatusOr<int> health = HealthCheck(server_->address(), service);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, 1);
  const std::vector<Sample> before = ParseSamples(Scrape());

  // The spool deleted and Redis down: recording cannot acknowledge.
  std::filesystem::remove_all(dir_.path() + "/spool");
  ASSERT_TRUE(redis_->Kill().ok());
  v1::RecordExposuresRequest request;
  v1::ExposureRecord* e = request.add_exposures();
  e->set_experiment_key("checkout");
  *e->mutable_unit() = User("u1");
  e->set_variant_key("control");
  v1::RecordExposuresResponse response;
  EXPECT_EQ(RecordExposures(request, &response).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  EXPECT_TRUE(Eventually(
      [&] {
        absl::StatusOr<int> h = HealthCheck(server_->address(), service);
        return h.ok() && *h == 2;
      },
      absl::Seconds(30), absl::Milliseconds(50)))
      << "RecordingService never reported NOT_SERVING";
  auto [status, body] = Get("/readyz");
  EXPECT_EQ(status, 503);
  EXPECT_THAT(body, HasSubstr("recording cannot acknowledge"));
  // Assignments are still served, and the server as a whole is SERVING.
  health = HealthCheck(server_->address(), "");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, 1);
  v1::AssignRequest assign;
  *assign.mutable_unit() = User("u1");
  v1::AssignResponse assigned;
  EXPECT_TRUE(Assign(assign, &assigned).ok());

  const std::vector<Sample> down = ParseSamples(Scrape());
  EXPECT_EQ(Value(down, "abexp_recording_can_acknowledge"), 0);
  EXPECT_GT(Value(down, "abexp_redis_errors_total", {{"pool", "recording"}}),
            Value(before, "abexp_redis_errors_total", {{"pool", "recording"}}));
  EXPECT_EQ(Value(down, "abexp_rpc_requests_total",
                  {{"method", "RecordExposures"}, {"code", "UNAVAILABLE"}}),
            1);

  // Redis back: a call it takes makes recording healthy again.
  ASSERT_TRUE(redis_->Restart().ok());
  EXPECT_TRUE(Eventually(
      [&] {
        v1::RecordExposuresResponse r;
        return RecordExposures(request, &r).ok();
      },
      absl::Seconds(30), absl::Milliseconds(100)));
  EXPECT_TRUE(Eventually(
      [&] {
        absl::StatusOr<int> h = HealthCheck(server_->address(), service);
        return h.ok() && *h == 1;
      },
      absl::Seconds(30), absl::Milliseconds(50)));
  EXPECT_EQ(Get("/readyz").first, 200);
}

// Redis down: one call of 3 exposures goes to the spool, and the spool's
// figures say so until the replay has moved it into Redis.
TEST_F(MetricsE2eTest, SpoolFiguresFollowAnOutage) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  const std::vector<Sample> before = ParseSamples(Scrape());
  ASSERT_TRUE(redis_->Kill().ok());
  v1::RecordExposuresRequest request;
  for (int u = 0; u < 3; ++u) {
    v1::ExposureRecord* e = request.add_exposures();
    e->set_experiment_key("checkout");
    *e->mutable_unit() = User(absl::StrCat("spooled-", u));
    e->set_variant_key("treatment");
  }
  v1::RecordExposuresResponse response;
  ASSERT_TRUE(RecordExposures(request, &response).ok());
  ASSERT_EQ(response.counts().spooled(), 3);

  const std::vector<Sample> down = ParseSamples(Scrape());
  EXPECT_EQ(Value(down, "abexp_spool_spooling"), 1);
  EXPECT_EQ(Value(down, "abexp_spool_pending_records"), 1);
  EXPECT_GT(Value(down, "abexp_spool_bytes"), 0);
  EXPECT_EQ(Value(down, "abexp_spool_spooled_writes_total") -
                Value(before, "abexp_spool_spooled_writes_total"),
            1);
  EXPECT_EQ(Value(down, "abexp_spool_spooled_items_total") -
                Value(before, "abexp_spool_spooled_items_total"),
            3);
  EXPECT_EQ(Value(down, "abexp_records_total",
                  {{"kind", "exposure"}, {"outcome", "spooled"}}) -
                Value(before, "abexp_records_total",
                      {{"kind", "exposure"}, {"outcome", "spooled"}}),
            3);
  EXPECT_EQ(Value(down, "abexp_recording_can_acknowledge"), 1);
  // The lag grows while the outage lasts.
  EXPECT_TRUE(Eventually(
      [&] {
        return Value(ParseSamples(Scrape()), "abexp_spool_replay_lag_seconds") >
               0;
      },
      absl::Seconds(30), absl::Milliseconds(50)));

  ASSERT_TRUE(redis_->Restart().ok());
  std::vector<Sample> up;
  EXPECT_TRUE(Eventually(
      [&] {
        up = ParseSamples(Scrape());
        return Value(up, "abexp_spool_spooling") == 0;
      },
      absl::Seconds(60), absl::Milliseconds(100)));
  EXPECT_EQ(Value(up, "abexp_spool_pending_records"), 0);
  EXPECT_EQ(Value(up, "abexp_spool_replay_lag_seconds"), 0);
  EXPECT_EQ(Value(up, "abexp_spool_replayed_writes_total") -
                Value(before, "abexp_spool_replayed_writes_total"),
            1);
}

TEST_F(MetricsE2eTest, UnknownPathsAndMethodsSayWhatIsServed) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  auto [status, body] = Get("/metricz");
  EXPECT_EQ(status, 404);
  EXPECT_THAT(body, HasSubstr("/metrics"));
  httplib::Client client("127.0.0.1", http_port_);
  httplib::Result posted = client.Post("/metrics", "", "text/plain");
  ASSERT_TRUE(posted);
  EXPECT_EQ(posted->status, 405);
}

TEST(MetricsFlagTest, AnAddressInUseStopsTheStart) {
  abexp::testing::TempDir dir;
  const std::string config = dir.path() + "/experiments.yaml";
  std::ofstream(config) << Config();
  // Another HTTP server listens on the port first, with cpp-httplib's
  // default SO_REUSEPORT: a second one that set it too would share the port
  // and take half the scrapes.
  httplib::Server other;
  const int port = other.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(
      {ABEXP_SERVER_BIN, "--config=" + config, "--listen=127.0.0.1:0",
       "--redis=127.0.0.1:1", "--spool_dir=" + dir.path() + "/spool",
       absl::StrCat("--http_listen=127.0.0.1:", port)},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1) << err;
  EXPECT_THAT(err, HasSubstr("cannot listen for HTTP on 127.0.0.1:"));
  EXPECT_THAT(err, HasSubstr("--http_listen"));
}

}  // namespace
}  // namespace abexp
