// End-to-end tests of recording: a real abexp-server process, a real
// redis-server and real gRPC on loopback. Expected aggregates are computed
// here from the inputs, and read back from Redis with RedisEventStore.
#include <signal.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/core/event_store.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::Eventually;
using ::abexp::testing::MetricOf;
using ::abexp::testing::MetricValue;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kConfig[] = R"yaml(
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: revenue
    type: sum
    event: order_completed
    aggregate: value
  - key: aov
    type: ratio
    numerator: {event: order_completed, aggregate: value}
    denominator: {event: order_completed, aggregate: count}

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, revenue, aov]
    primary_metric: order_conversion
)yaml";

// Per-variant figures computed from the inputs.
struct Expected {
  int64_t exposed = 0;
  int64_t converted = 0;
  double sum = 0, sum_sq = 0;  // revenue per unit
  double num = 0, den = 0, num_sq = 0, den_sq = 0, num_den = 0;  // aov
};

class RecordingE2eTest : public RecordingServerTest {
 protected:
  RecordingE2eTest() : RecordingServerTest(kConfig, "e2e") {
    call_timeout_ = absl::Seconds(20);
    // Tests SIGKILL Redis after writes they count on: with everysec Redis
    // itself may lose the last second of them (a replayed exposure went
    // missing so, once, under load).
    redis_options_.appendfsync = "always";
  }

  grpc::Status Assign(const std::string& user, bool record,
                      v1::AssignResponse* response) {
    v1::AssignRequest request;
    *request.mutable_unit() = User(user);
    request.set_record_exposure(record);
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    return assign_->Assign(&context, request, response);
  }
};

TEST_F(RecordingE2eTest,
       AssignWithRecordExposureThenEventsGiveTheImpliedAggregates) {
  StartServer();
  EXPECT_THAT(server_->listening_line(),
              HasSubstr("redis=" + redis_->address()));
  const absl::Time start = absl::Now();
  std::map<std::string, Expected> expected;  // by variant key
  v1::RecordEventsRequest events;
  for (int i = 0; i < 60; ++i) {
    const std::string user = absl::StrCat("user-", i);
    v1::AssignResponse assigned;
    ASSERT_TRUE(Assign(user, /*record=*/true, &assigned).ok());
    EXPECT_EQ(assigned.exposure_error(), "");
    ASSERT_EQ(assigned.assignments_size(), 1);
    Expected& e = expected[assigned.assignments(0).variant_key()];
    ++e.exposed;
    // Every third user orders; every sixth twice. Values are exact binary
    // fractions so sums compare exactly.
    const int orders = i % 6 == 0 ? 2 : (i % 3 == 0 ? 1 : 0);
    double x = 0;
    for (int k = 0; k < orders; ++k) {
      const double value = 10 + (i % 7) * 0.25 + k;
      v1::EventRecord* ev = events.add_events();
      *ev->mutable_unit() = User(user);
      ev->set_name("order_completed");
      ev->set_value(value);
      *ev->mutable_time() = ToProto(start + absl::Seconds(1 + k));
      x += value;
    }
    if (orders > 0) {
      ++e.converted;
      e.sum += x;
      e.sum_sq += x * x;
      e.num += x;
      e.den += orders;
      e.num_sq += x * x;
      e.den_sq += orders * orders;
      e.num_den += x * orders;
    }
  }
  // Assigned but never exposed: its order must not count.
  v1::AssignResponse only_assigned;
  ASSERT_TRUE(Assign("window-shopper", /*record=*/false, &only_assigned).ok());
  v1::EventRecord* stray = events.add_events();
  *stray->mutable_unit() = User("window-shopper");
  stray->set_name("order_completed");
  stray->set_value(1000);
  // And an event no metric uses.
  v1::EventRecord* unused = events.add_events();
  *unused->mutable_unit() = User("user-0");
  unused->set_name("page_scrolled");

  v1::RecordEventsResponse response;
  grpc::Status status = RecordEvents(events, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), events.events_size());
  const int n = events.events_size();
  EXPECT_EQ(response.results(n - 2).ignore_reason(),
            v1::IGNORE_REASON_NOT_ATTRIBUTED);
  EXPECT_EQ(response.results(n - 1).ignore_reason(),
            v1::IGNORE_REASON_NO_METRIC);
  EXPECT_EQ(response.counts().recorded(), n - 2);
  EXPECT_EQ(response.config_version(), config_->version);

  // Sending the same batch again changes nothing.
  v1::RecordEventsResponse again;
  ASSERT_TRUE(RecordEvents(events, &again).ok());
  EXPECT_EQ(again.counts().recorded(), 0);
  EXPECT_EQ(again.counts().duplicate(), n - 2);
  EXPECT_EQ(again.counts().ignored(), 2);

  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(a.multi_exposed, 0);
  EXPECT_EQ(a.config_versions[config_->version], 60);
  const std::vector<std::string> keys = {"control", "treatment"};
  for (size_t v = 0; v < keys.size(); ++v) {
    SCOPED_TRACE(keys[v]);
    const Expected& e = expected[keys[v]];
    VariantAggregate& got = a.variants[v];
    EXPECT_EQ(got.exposed, e.exposed);
    EXPECT_EQ(got.metrics["order_conversion"].units, e.converted);
    EXPECT_EQ(static_cast<double>(got.metrics["order_conversion"].sum),
              e.converted);
    EXPECT_EQ(static_cast<double>(got.metrics["revenue"].sum), e.sum);
    EXPECT_EQ(static_cast<double>(got.metrics["revenue"].sum_sq), e.sum_sq);
    const MetricAggregate& aov = got.metrics["aov"];
    EXPECT_EQ(static_cast<double>(aov.sum_num), e.num);
    EXPECT_EQ(static_cast<double>(aov.sum_den), e.den);
    EXPECT_EQ(static_cast<double>(aov.sum_num_sq), e.num_sq);
    EXPECT_EQ(static_cast<double>(aov.sum_den_sq), e.den_sq);
    EXPECT_EQ(static_cast<double>(aov.sum_num_den), e.num_den);
  }
}

TEST_F(RecordingE2eTest, TenThousandEventsInOneCall) {
  StartServer();
  const absl::Time start = absl::Now() - absl::Hours(1);
  v1::RecordExposuresRequest exposures;
  for (int u = 0; u < 100; ++u) {
    v1::ExposureRecord* x = exposures.add_exposures();
    x->set_experiment_key("checkout");
    *x->mutable_unit() = User(absl::StrCat("bulk-", u));
    x->set_variant_key(u % 2 == 0 ? "control" : "treatment");
    *x->mutable_time() = ToProto(start);
  }
  v1::RecordExposuresResponse exposed;
  ASSERT_TRUE(RecordExposures(exposures, &exposed).ok());
  EXPECT_EQ(exposed.counts().recorded(), 100);

  v1::RecordEventsRequest events;
  for (int k = 0; k < 100; ++k) {
    for (int u = 0; u < 100; ++u) {
      v1::EventRecord* ev = events.add_events();
      *ev->mutable_unit() = User(absl::StrCat("bulk-", u));
      ev->set_name("order_completed");
      ev->set_value(1);
      *ev->mutable_time() = ToProto(start + absl::Milliseconds(10 * k + 1));
    }
  }
  ASSERT_EQ(events.events_size(), 10000);
  v1::RecordEventsResponse response;
  grpc::Status status = RecordEvents(events, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.counts().recorded(), 10000);

  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  for (const VariantAggregate& v : a.variants) {
    EXPECT_EQ(v.exposed, 50);
    // 50 units with 100 orders of value 1 each.
    EXPECT_EQ(static_cast<double>(v.metrics.at("revenue").sum), 5000);
    EXPECT_EQ(static_cast<double>(v.metrics.at("revenue").sum_sq),
              50 * 100 * 100);
    EXPECT_EQ(v.metrics.at("order_conversion").units, 50);
  }
}

TEST_F(RecordingE2eTest, MalformedInputIsInvalidArgumentNamingTheField) {
  StartServer();
  v1::RecordEventsRequest events;
  for (int i = 0; i < 5; ++i) {
    v1::EventRecord* ev = events.add_events();
    *ev->mutable_unit() = User("u-1");
    ev->set_name("order_completed");
    ev->set_value(1);
  }
  events.mutable_events(3)->set_value(std::nan(""));
  v1::RecordEventsResponse response;
  grpc::Status status = RecordEvents(events, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("events[3].value is NaN"));

  events.mutable_events(3)->set_value(2);
  *events.mutable_events(0)->mutable_time() =
      ToProto(absl::Now() + absl::Hours(48));
  status = RecordEvents(events, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("events[0].time"));
  EXPECT_THAT(status.error_message(), HasSubstr("more than 24h"));

  v1::RecordExposuresRequest exposures;
  v1::ExposureRecord* x = exposures.add_exposures();
  x->set_experiment_key("checkout");
  *x->mutable_unit() = User("u-1");
  x->set_variant_key("treatmnet");
  v1::RecordExposuresResponse exposed;
  status = RecordExposures(exposures, &exposed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("exposures[0].variant_key"));
}

TEST_F(RecordingE2eTest, UnitsAreCheckedAsAssignChecksThem) {
  StartServer();
  ExposeUsers("checkout", "control", "u-", 1, absl::Now() - absl::Minutes(1));
  v1::Unit many = User("u-0");
  for (int i = 0; i < 101; ++i) {
    (*many.mutable_attributes())[absl::StrCat("a", i)].set_bool_value(true);
  }
  v1::Unit long_value = User("u-0");
  (*long_value.mutable_attributes())["note"].set_string_value(
      std::string(100 << 10, 'x'));
  for (const v1::Unit& unit : {many, long_value}) {
    v1::RecordExposuresRequest exposures;
    v1::ExposureRecord* x = exposures.add_exposures();
    x->set_experiment_key("checkout");
    *x->mutable_unit() = unit;
    x->set_variant_key("treatment");
    v1::RecordExposuresResponse exposed;
    grpc::Status status = RecordExposures(exposures, &exposed);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                StartsWith("exposures[0].unit.attributes"));
    EXPECT_LT(status.error_message().size(), 1024u);

    v1::RecordEventsRequest events;
    v1::EventRecord* ev = events.add_events();
    *ev->mutable_unit() = unit;
    ev->set_name("order_completed");
    ev->set_value(5);
    v1::RecordEventsResponse recorded;
    status = RecordEvents(events, &recorded);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                StartsWith("events[0].unit.attributes"));
  }
  const ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(a.variants[0].exposed, 1);
  EXPECT_EQ(a.variants[1].exposed, 0) << "the refused exposure was stored";
  EXPECT_EQ(MetricOf(a.variants[0], "revenue").sum, 0)
      << "a refused event was stored";
}

TEST_F(RecordingE2eTest, EventValuesBeyondTheBoundAreRefusedWhole) {
  StartServer();
  ExposeUsers("checkout", "control", "u-", 1, absl::Now() - absl::Minutes(1));
  for (double value : {1e308, -1e16}) {
    v1::RecordEventsRequest events;
    for (int i = 0; i < 3; ++i) {
      v1::EventRecord* ev = events.add_events();
      *ev->mutable_unit() = User("u-0");
      ev->set_name("order_completed");
      ev->set_value(i == 1 ? value : 2);
    }
    v1::RecordEventsResponse response;
    grpc::Status status = RecordEvents(events, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << value;
    EXPECT_THAT(status.error_message(),
                StartsWith(absl::StrCat("events[1].value is ", value)));
    EXPECT_THAT(status.error_message(), HasSubstr("within ±1e+15"));
  }
  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(MetricOf(a.variants[0], "revenue").sum, 0)
      << "an event of a refused call was stored";

  // The bound itself is a value like any other.
  v1::RecordEventsRequest at_bound;
  v1::EventRecord* ev = at_bound.add_events();
  *ev->mutable_unit() = User("u-0");
  ev->set_name("order_completed");
  ev->set_value(kMaxEventValue);
  v1::RecordEventsResponse response;
  grpc::Status status = RecordEvents(at_bound, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.counts().recorded(), 1);
  a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(MetricOf(a.variants[0], "revenue").sum, 1e15);
}

TEST_F(RecordingE2eTest,
       RedisDownAssignmentAnswersRecordingIsSpooledUntilItIsBack) {
  // Redis is down before the server starts: it must start anyway.
  ASSERT_TRUE(redis_->Kill().ok());
  StartServer();
  EXPECT_TRUE(server_->WaitForStderr("Redis", absl::Seconds(5)).ok());

  v1::AssignResponse assigned;
  ASSERT_TRUE(Assign("u-1", /*record=*/true, &assigned).ok());
  EXPECT_EQ(assigned.assignments_size(), 1);
  EXPECT_EQ(assigned.exposure_error(), "") << "the exposure waits in the spool";

  // The same exposure reported again (same derived idempotency key).
  v1::RecordExposuresRequest exposures;
  v1::ExposureRecord* x = exposures.add_exposures();
  x->set_experiment_key("checkout");
  *x->mutable_unit() = User("u-1");
  x->set_variant_key(assigned.assignments(0).variant_key());
  v1::RecordExposuresResponse exposed;
  ASSERT_TRUE(RecordExposures(exposures, &exposed).ok());
  EXPECT_EQ(exposed.counts().spooled(), 1);

  // Back: the spool drains into Redis without restarting the server.
  ASSERT_TRUE(redis_->Restart().ok());
  auto counted_within = [&](int64_t want, absl::Duration timeout) {
    int64_t got = 0;
    Eventually(
        [&] {
          got = ReadCheckout().config_versions[config_->version];
          return got == want;
        },
        timeout, absl::Milliseconds(100));
    return got;
  };
  EXPECT_EQ(counted_within(1, absl::Seconds(60)), 1) << server_->Stderr();

  // Down again after it was connected: spooled again, and the pool
  // reconnects by itself.
  ASSERT_TRUE(redis_->Kill().ok());
  ASSERT_TRUE(Assign("u-2", /*record=*/false, &assigned).ok());
  x->set_idempotency_key("second-report");
  ASSERT_TRUE(RecordExposures(exposures, &exposed).ok());
  EXPECT_EQ(exposed.counts().spooled(), 1);
  ASSERT_TRUE(redis_->Restart().ok());
  EXPECT_EQ(counted_within(2, absl::Seconds(60)), 2) << server_->Stderr();
  // u-1 once, however often reported; u-2 was only assigned.
  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(a.variants[0].exposed + a.variants[1].exposed, 1);
}

TEST_F(RecordingE2eTest, SigtermFinishesARecordingCallInFlight) {
  // The HTTP listener's /metrics shows when the call is at Redis.
  StartServer({"--http_listen=127.0.0.1:0"});
  const int http_port = server_->http_port();
  ASSERT_NE(http_port, 0) << server_->listening_line();
  v1::RecordExposuresRequest exposures;
  for (int u = 0; u < 1000; ++u) {
    v1::ExposureRecord* x = exposures.add_exposures();
    x->set_experiment_key("checkout");
    *x->mutable_unit() = User(absl::StrCat("drain-", u));
    x->set_variant_key("control");
  }
  // A stopped Redis holds the call inside the server while SIGTERM arrives.
  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  grpc::Status status;
  v1::RecordExposuresResponse response;
  std::thread call([&] { status = RecordExposures(exposures, &response); });
  // SIGTERM only once the call holds a recording connection, its write sent
  // to the stopped Redis; Redis resumes only once the server has begun to
  // shut down, so the call must be finished during the drain.
  const bool at_redis = Eventually(
      [&] {
        return MetricValue(http_port, "abexp_redis_connections_in_use",
                           {"pool=\"recording\""}) >= 1;
      },
      absl::Seconds(20), absl::Milliseconds(5));
  ASSERT_TRUE(server_->Signal(SIGTERM).ok());
  const absl::Status draining =
      server_->WaitForStderr("received SIGTERM", absl::Seconds(20));
  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  call.join();
  ASSERT_TRUE(at_redis) << "the call never took a recording connection";
  ASSERT_TRUE(draining.ok()) << draining << "\n" << server_->Stderr();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.counts().recorded(), 1000);
  absl::StatusOr<int> code = server_->WaitForExit(absl::Seconds(15));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << server_->Stderr();
  EXPECT_EQ(ReadCheckout().variants[0].exposed, 1000);
}

TEST_F(RecordingE2eTest, CliExposeAndTrackRecordAgainstTheServer) {
  StartServer();
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(
      {ABEXP_CLI_BIN, "expose", "--server", server_->address(), "--experiment",
       "checkout", "--variant", "treatment", "--id", "user_id=cli-user"},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << err;
  EXPECT_THAT(out, StartsWith("recorded"));

  code = RunProcess({ABEXP_CLI_BIN, "track", "--server", server_->address(),
                     "--id", "user_id=cli-user", "--event", "order_completed",
                     "--value", "59.90", "--format", "json"},
                    &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << err;
  EXPECT_THAT(out, HasSubstr("\"RECORD_OUTCOME_RECORDED\""));

  code = RunProcess({ABEXP_CLI_BIN, "track", "--server", server_->address(),
                     "--id", "user_id=cli-user", "--event", "order_completed",
                     "--time", "2020-13-01T00:00:00Z"},
                    &out, &err);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  EXPECT_THAT(err, HasSubstr("--time"));

  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(a.variants[1].exposed, 1);
  EXPECT_EQ(static_cast<double>(a.variants[1].metrics["revenue"].sum), 59.90);
}

// A sum metric with a CUPED covariate: the covariate comes from the
// exposure's attributes, which `abexp expose --attr` sends.
constexpr char kCovariateConfig[] = R"yaml(
attributes:
  orders_last_90d: number
metrics:
  - key: revenue
    type: sum
    event: order_completed
    aggregate: value
    covariate: orders_last_90d

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [revenue]
    primary_metric: revenue
)yaml";

class CliCovariateTest : public RecordingServerTest {
 protected:
  CliCovariateTest() : RecordingServerTest(kCovariateConfig, "cov") {}
};

TEST_F(CliCovariateTest, ExposeCarriesTheCovariateFromAttr) {
  StartServer();
  std::string out, err;
  absl::StatusOr<int> code =
      RunProcess({ABEXP_CLI_BIN, "expose", "--server", server_->address(),
                  "--experiment", "checkout", "--variant", "treatment", "--id",
                  "user_id=cli-user", "--attr", "orders_last_90d=3"},
                 &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  ASSERT_EQ(*code, 0) << err;
  code = RunProcess(
      {ABEXP_CLI_BIN, "track", "--server", server_->address(), "--id",
       "user_id=cli-user", "--event", "order_completed", "--value", "20"},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  ASSERT_EQ(*code, 0) << err;
  // A malformed attribute is refused before anything is sent.
  code = RunProcess({ABEXP_CLI_BIN, "expose", "--server", server_->address(),
                     "--experiment", "checkout", "--variant", "control", "--id",
                     "user_id=other", "--attr", "orders_last_90d"},
                    &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 2);
  EXPECT_THAT(err, HasSubstr("NAME=VALUE"));

  absl::StatusOr<ExperimentAggregates> a = ReadAggregates("checkout");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->variants.size(), 2u);
  EXPECT_EQ(a->variants[0].exposed, 0);
  const MetricAggregate revenue = MetricOf(a->variants[1], "revenue");
  // x = 3 (the attribute), y = 20 (the tracked value).
  EXPECT_EQ(revenue.cuped_units, 1);
  EXPECT_EQ(static_cast<double>(revenue.cuped_sum_x), 3);
  EXPECT_EQ(static_cast<double>(revenue.cuped_sum_xy), 60);
}

}  // namespace
}  // namespace abexp
