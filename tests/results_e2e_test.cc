// End-to-end tests of ResultsService.GetResults: a real abexp-server, a real
// redis-server and real gRPC on loopback. Exposures and events with chosen
// counts are recorded through RecordingService, and the figures are checked
// against values computed independently of this code base:
//  - comparisons: the cases of stats/testdata/compare.golden (SciPy) whose
//    counts these tests record;
//  - the sample size, SRM chi-square and Holm adjustment: computed by hand
//    with Python's statistics.NormalDist / math.erfc (see each constant).
#include <signal.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/results.grpc.pb.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/redis_process.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RedisProcess;
using ::abexp::testing::RunProcess;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;
using ::testing::HasSubstr;

constexpr char kConfig[] = R"yaml(
attributes: {platform: string, tier: string}
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: signup
    type: binomial
    event: signed_up
  - key: errors
    type: binomial
    event: error_shown
    guardrail: true
    higher_is_better: false
  - key: revenue
    type: sum
    event: purchase
    aggregate: value

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, signup]
    primary_metric: order_conversion
  - key: guarded
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, errors]
    primary_metric: order_conversion
  - key: shop
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [revenue]
    primary_metric: revenue
  - key: plain
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
  - key: segmented
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
    dimensions: [platform, tier]
)yaml";

// Relative closeness for figures the server computes in double precision.
void ExpectClose(const std::string& what, bool has, double got, double want) {
  ASSERT_TRUE(has) << what << " is unset, want " << want;
  EXPECT_NEAR(got, want, 1e-9 * std::max(1.0, std::fabs(want))) << what;
}

class ResultsE2eTest : public RecordingServerTest {
 protected:
  ResultsE2eTest() : RecordingServerTest(kConfig, "results") {}

  void StartAll(const std::vector<std::string>& server_args = {}) {
    ASSERT_NO_FATAL_FAILURE(StartServer(server_args));
    results_ = v1::ResultsService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  // Exposes users `prefix`0 .. `prefix`(n-1) to `variant` of `experiment`.
  void Expose(const std::string& experiment, const std::string& variant,
              const std::string& prefix, int n) {
    ExposeUsers(experiment, variant, prefix, n, start_);
  }

  // Sends event `name` for users `prefix`0 .. `prefix`(n-1).
  void Send(const std::string& name, const std::string& prefix, int n) {
    SendEvents(name, prefix, n, start_ + absl::Seconds(1));
  }

  // Sends event `name` with value values[i] for user `prefix`i.
  void SendValues(const std::string& name, const std::string& prefix,
                  const std::vector<double>& values) {
    v1::RecordEventsRequest request;
    for (size_t i = 0; i < values.size(); ++i) {
      v1::EventRecord* e = request.add_events();
      *e->mutable_unit() = User(absl::StrCat(prefix, i));
      e->set_name(name);
      e->set_value(values[i]);
      *e->mutable_time() = ToProto(start_ + absl::Seconds(1));
    }
    v1::RecordEventsResponse response;
    grpc::Status status = RecordEvents(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  grpc::Status GetResults(const v1::GetResultsRequest& request,
                          v1::GetResultsResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    return results_->GetResults(&context, request, response);
  }

  grpc::Status GetResults(const std::string& experiment,
                          v1::GetResultsResponse* response) {
    v1::GetResultsRequest request;
    request.set_experiment_key(experiment);
    return GetResults(request, response);
  }

  const absl::Time start_ = absl::Now();
  std::unique_ptr<v1::ResultsService::Stub> results_;
};

const v1::MetricResult* FindMetric(const v1::VariantResult& variant,
                                   const std::string& key) {
  for (const v1::MetricResult& m : variant.metrics()) {
    if (m.metric_key() == key) return &m;
  }
  return nullptr;
}

TEST_F(ResultsE2eTest, FiguresMatchTheGoldenComparisonsAndHolm) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // 1000 units per arm. order_conversion: 100 vs 120 converted
  // (compare.golden proportions_small); signup: 0 vs 5 (proportions_zero_
  // baseline).
  ASSERT_NO_FATAL_FAILURE(Expose("checkout", "control", "c", 1000));
  ASSERT_NO_FATAL_FAILURE(Expose("checkout", "treatment", "t", 1000));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "c", 100));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "t", 120));
  ASSERT_NO_FATAL_FAILURE(Send("signed_up", "t", 5));

  v1::GetResultsResponse r;
  grpc::Status status = GetResults("checkout", &r);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(r.experiment_key(), "checkout");
  EXPECT_EQ(r.phase(), 1);
  EXPECT_EQ(r.config_version(), config_->version);
  ASSERT_EQ(r.config_versions_size(), 1);
  EXPECT_EQ(r.config_versions(0).version(), config_->version);
  EXPECT_EQ(r.config_versions(0).exposures(), 2000);
  EXPECT_EQ(r.multi_exposed_units(), 0);
  EXPECT_FALSE(r.srm().mismatch());
  ExpectClose("srm.chi2", r.srm().has_chi2(), r.srm().chi2(), 0.0);
  EXPECT_EQ(r.adjust_method(), "holm");
  EXPECT_DOUBLE_EQ(r.alpha(), 0.05);

  ASSERT_EQ(r.variants_size(), 2);
  const v1::VariantResult& control = r.variants(0);
  const v1::VariantResult& treatment = r.variants(1);
  EXPECT_EQ(control.key(), "control");
  EXPECT_TRUE(control.is_control());
  EXPECT_EQ(control.exposed_units(), 1000);
  EXPECT_EQ(treatment.key(), "treatment");
  EXPECT_FALSE(treatment.is_control());
  EXPECT_EQ(treatment.exposed_units(), 1000);

  const v1::MetricResult* c_orders = FindMetric(control, "order_conversion");
  ASSERT_NE(c_orders, nullptr);
  ExpectClose("control estimate", c_orders->has_estimate(),
              c_orders->estimate(), 0.1);
  EXPECT_FALSE(c_orders->absolute().has_p_value());

  const v1::MetricResult* orders = FindMetric(treatment, "order_conversion");
  ASSERT_NE(orders, nullptr);
  EXPECT_TRUE(orders->primary());
  EXPECT_FALSE(orders->guardrail());
  EXPECT_EQ(orders->type(), "binomial");
  ExpectClose("estimate", orders->has_estimate(), orders->estimate(), 0.12);
  const v1::Effect& abs = orders->absolute();
  ExpectClose("abs.estimate", abs.has_estimate(), abs.estimate(), 0.02);
  ExpectClose("abs.ci_low", abs.has_ci_low(), abs.ci_low(),
              -0.00741148199801994);
  ExpectClose("abs.ci_high", abs.has_ci_high(), abs.ci_high(),
              0.04741148199801994);
  ExpectClose("abs.p_value", abs.has_p_value(), abs.p_value(),
              0.15270801019387775);
  EXPECT_FALSE(abs.has_df());
  const v1::Effect& rel = orders->relative();
  ExpectClose("rel.estimate", rel.has_estimate(), rel.estimate(), 0.2);
  ExpectClose("rel.ci_low", rel.has_ci_low(), rel.ci_low(),
              -0.10058461614448246);
  ExpectClose("rel.p_value", rel.has_p_value(), rel.p_value(),
              0.19219903638649327);
  ExpectClose("seq.ci_low", orders->sequential().has_ci_low(),
              orders->sequential().ci_low(), -0.02368825907651928);
  ExpectClose("seq.ci_high", orders->sequential().has_ci_high(),
              orders->sequential().ci_high(), 0.06368825907651927);
  ExpectClose("seq.p_value", orders->sequential().has_p_value(),
              orders->sequential().p_value(), 0.9388856039651478);
  // The treatment converts more, so it is more likely better than not.
  ASSERT_TRUE(orders->bayes().has_chance_to_beat_control());
  EXPECT_GT(orders->bayes().chance_to_beat_control(), 0.5);
  EXPECT_LT(orders->bayes().chance_to_beat_control(), 1.0);

  const v1::MetricResult* signup = FindMetric(treatment, "signup");
  ASSERT_NE(signup, nullptr);
  ExpectClose("signup abs.p_value", signup->absolute().has_p_value(),
              signup->absolute().p_value(), 0.024982113243368558);
  // A lift over a zero baseline is undefined: unset, with a warning.
  EXPECT_FALSE(signup->relative().has_estimate());
  EXPECT_FALSE(signup->relative().has_p_value());
  EXPECT_FALSE(signup->warnings().empty());

  // Holm over the family {0.15270801019387775, 0.024982113243368558}:
  // the smaller one times 2, the larger one max(itself, that).
  ExpectClose("signup adjusted", signup->absolute().has_adjusted_p_value(),
              signup->absolute().adjusted_p_value(), 2 * 0.024982113243368558);
  ExpectClose("orders adjusted", abs.has_adjusted_p_value(),
              abs.adjusted_p_value(), 0.15270801019387775);

  // Not significant, and 1000 units per arm are far from the 57,763 that 80%
  // power for a 5% relative lift on a 10% baseline needs (Fleiss; Python
  // NormalDist gives 57762.65). At 1000 units/day/arm so far:
  // ceil((57763 - 1000) / 1000) = 57 more days. (A run that crosses UTC
  // midnight counts two days of traffic: 114.)
  EXPECT_EQ(r.decision().kind(), v1::DECISION_KIND_KEEP_RUNNING);
  ASSERT_TRUE(r.decision().has_more_days());
  EXPECT_TRUE(r.decision().more_days() == 57 || r.decision().more_days() == 114)
      << r.decision().more_days();
  EXPECT_EQ(r.decision().text(),
            absl::StrCat("keep running (about ", r.decision().more_days(),
                         " more days to reach 80% power)"));
}

TEST_F(ResultsE2eTest, SumMetricIsAMeanOverExposedUnits) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // compare.golden means_two_and_three_units: control values [1.5, 4.0],
  // treatment [2.0, 6.5, 3.25], one purchase per unit.
  ASSERT_NO_FATAL_FAILURE(Expose("shop", "control", "c", 2));
  ASSERT_NO_FATAL_FAILURE(Expose("shop", "treatment", "t", 3));
  ASSERT_NO_FATAL_FAILURE(SendValues("purchase", "c", {1.5, 4.0}));
  ASSERT_NO_FATAL_FAILURE(SendValues("purchase", "t", {2.0, 6.5, 3.25}));
  v1::GetResultsResponse r;
  grpc::Status status = GetResults("shop", &r);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(r.variants_size(), 2);
  const v1::MetricResult* m = FindMetric(r.variants(1), "revenue");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->type(), "sum");
  ExpectClose("estimate", m->has_estimate(), m->estimate(), 3.9166666666666665);
  const v1::Effect& abs = m->absolute();
  ExpectClose("abs.estimate", abs.has_estimate(), abs.estimate(),
              1.1666666666666667);
  ExpectClose("abs.df", abs.has_df(), abs.df(), 2.7832781840540366);
  ExpectClose("abs.ci_low", abs.has_ci_low(), abs.ci_low(), -4.933442028084886);
  ExpectClose("abs.ci_high", abs.has_ci_high(), abs.ci_high(),
              7.266775361418219);
  ExpectClose("abs.p_value", abs.has_p_value(), abs.p_value(),
              0.5729880229040591);
  ExpectClose("rel.p_value", m->relative().has_p_value(),
              m->relative().p_value(), 0.6006805422351003);
  // Only comparison in its family: Holm leaves it as it is.
  ExpectClose("abs.adjusted", abs.has_adjusted_p_value(),
              abs.adjusted_p_value(), 0.5729880229040591);
  EXPECT_TRUE(m->bayes().has_chance_to_beat_control());
  // Power for a sum primary metric, at the control's mean 2.75 and per-unit
  // SD |4 - 1.5| / sqrt(2), a 5% relative MDE, alpha 0.05, power 0.8:
  // n = 2 ((z_0.975 + z_0.8) SD / (2.75 * 0.05))^2 = 2594.67, so 2595 per
  // variant (scipy.stats.norm quantiles). Traffic today: 2 and 3 units a
  // day, so max(ceil(2593 / 2), ceil(2592 / 3)) = 1297 more days. (A run
  // that crosses UTC midnight counts two days: max(2593, 1728) = 2593.)
  EXPECT_EQ(r.decision().kind(), v1::DECISION_KIND_KEEP_RUNNING);
  ASSERT_TRUE(r.decision().has_more_days());
  EXPECT_TRUE(r.decision().more_days() == 1297 ||
              r.decision().more_days() == 2593)
      << r.decision().more_days();
  EXPECT_EQ(r.decision().text(),
            absl::StrCat("keep running (about ", r.decision().more_days(),
                         " more days to reach 80% power)"));
}

TEST_F(ResultsE2eTest, SumMetricWithoutSpreadKeepsRunningWithoutDays) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // Every control unit spent exactly 5: no per-unit SD to size the test
  // with, so no day count (and no error).
  ASSERT_NO_FATAL_FAILURE(Expose("shop", "control", "c", 3));
  ASSERT_NO_FATAL_FAILURE(Expose("shop", "treatment", "t", 3));
  ASSERT_NO_FATAL_FAILURE(SendValues("purchase", "c", {5, 5, 5}));
  ASSERT_NO_FATAL_FAILURE(SendValues("purchase", "t", {5, 6, 7}));
  v1::GetResultsResponse r;
  grpc::Status status = GetResults("shop", &r);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(r.decision().kind(), v1::DECISION_KIND_KEEP_RUNNING);
  EXPECT_FALSE(r.decision().has_more_days());
  EXPECT_EQ(r.decision().text(), "keep running");
}

// Runs redis-cli against the fixture's Redis and returns its stdout.
std::string RedisCli(const RedisProcess& redis,
                     const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"redis-cli", "-p",
                                   absl::StrCat(redis.port())};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out, err;
  absl::StatusOr<int> rc = RunProcess(argv, &out, &err);
  EXPECT_TRUE(rc.ok() && *rc == 0) << "redis-cli failed: " << err;
  return out;
}

// Commands Redis ran since the last CONFIG RESETSTAT, leaving out the ones
// redis-cli itself sends (INFO, CONFIG) and connection housekeeping.
int64_t DataCommands(const RedisProcess& redis) {
  int64_t total = 0;
  for (absl::string_view line :
       absl::StrSplit(RedisCli(redis, {"INFO", "commandstats"}), '\n')) {
    // cmdstat_evalsha:calls=3,usec=...
    if (!absl::ConsumePrefix(&line, "cmdstat_")) continue;
    const std::string name(line.substr(0, line.find(':')));
    if (name == "info" || name == "config" || name == "ping" ||
        name == "client" || name == "hello" || name == "select" ||
        name == "auth" || name == "command") {
      continue;
    }
    absl::string_view calls = line.substr(line.find("calls=") + 6);
    calls = calls.substr(0, calls.find(','));
    int64_t n = 0;
    EXPECT_TRUE(absl::SimpleAtoi(calls, &n)) << line;
    total += n;
  }
  return total;
}

TEST_F(ResultsE2eTest, ReadCostDoesNotGrowWithUnits) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // checkout with 1,000 units, guarded with 20,000; both in one cohort day.
  ASSERT_NO_FATAL_FAILURE(Expose("checkout", "control", "c", 500));
  ASSERT_NO_FATAL_FAILURE(Expose("checkout", "treatment", "t", 500));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "control", "c", 10000));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "treatment", "t", 10000));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "c", 100));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "t", 120));

  auto cost = [&](const std::string& experiment, int64_t want_units) {
    RedisCli(*redis_, {"CONFIG", "RESETSTAT"});
    v1::GetResultsResponse r;
    grpc::Status status = GetResults(experiment, &r);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(r.variants_size(), 2);
    if (r.variants_size() == 2) {
      EXPECT_EQ(r.variants(0).exposed_units() + r.variants(1).exposed_units(),
                want_units);
    }
    return DataCommands(*redis_);
  };
  const int64_t small = cost("checkout", 1000);
  const int64_t large = cost("guarded", 20000);
  EXPECT_GT(small, 0);
  EXPECT_EQ(small, large);
}

// Each dimension's segments are hashes of their own, one per value and
// shard (docs/storage.md), so GetResults reads them only for the dimension
// it is asked for: an experiment's results cost the same with or without
// dimensions until one is asked, and then only that one's hashes.
TEST_F(ResultsE2eTest, ReadCostDoesNotGrowWithDimensionsUnlessOneIsAsked) {
  constexpr int kShards = 4;
  ASSERT_NO_FATAL_FAILURE(
      StartAll({absl::StrCat("--redis_shards_per_experiment=", kShards)}));
  // The same 120 units in `plain` and in `segmented` (dimensions platform
  // and tier): 10 per variant, platform and tier, so every shard has some.
  const std::vector<std::string> platforms = {"ios", "android", "web"};
  const std::vector<std::string> tiers = {"gold", "silver"};
  for (const std::string experiment : {"plain", "segmented"}) {
    v1::RecordExposuresRequest request;
    for (const std::string variant : {"control", "treatment"}) {
      for (const std::string& platform : platforms) {
        for (const std::string& tier : tiers) {
          for (int i = 0; i < 10; ++i) {
            v1::ExposureRecord* e = request.add_exposures();
            e->set_experiment_key(experiment);
            e->set_variant_key(variant);
            *e->mutable_unit() =
                User(absl::StrCat(variant, "-", platform, "-", tier, "-", i));
            auto& attributes = *e->mutable_unit()->mutable_attributes();
            attributes["platform"].set_string_value(platform);
            attributes["tier"].set_string_value(tier);
            *e->mutable_time() = ToProto(start_);
          }
        }
      }
    }
    v1::RecordExposuresResponse response;
    grpc::Status status = RecordExposures(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // The Redis commands of one GetResults, and the segment values it gave.
  auto cost = [&](const std::string& experiment, const std::string& dimension,
                  std::vector<std::string>* values) {
    RedisCli(*redis_, {"CONFIG", "RESETSTAT"});
    v1::GetResultsRequest request;
    request.set_experiment_key(experiment);
    request.set_dimension(dimension);
    v1::GetResultsResponse r;
    grpc::Status status = GetResults(request, &r);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(r.variants_size(), 2);
    if (r.variants_size() == 2) {
      EXPECT_EQ(r.variants(0).exposed_units() + r.variants(1).exposed_units(),
                120);
    }
    values->clear();
    for (const v1::SegmentResult& segment : r.segments()) {
      values->push_back(segment.value());
    }
    return DataCommands(*redis_);
  };
  std::vector<std::string> values;
  // Once each first, so that both read with the phases' metadata cached.
  cost("plain", "", &values);
  cost("segmented", "", &values);

  const int64_t plain = cost("plain", "", &values);
  EXPECT_GT(plain, 0);
  const int64_t unasked = cost("segmented", "", &values);
  EXPECT_THAT(values, ::testing::IsEmpty());
  EXPECT_EQ(unasked, plain);

  // Asked: the registry, then per shard the dimension's slots: its values,
  // (none) and (other).
  const int64_t by_platform = cost("segmented", "platform", &values);
  EXPECT_THAT(values, ::testing::UnorderedElementsAre("ios", "android", "web"));
  EXPECT_EQ(by_platform - plain, 1 + kShards * (3 + 2));
  const int64_t by_tier = cost("segmented", "tier", &values);
  EXPECT_THAT(values, ::testing::UnorderedElementsAre("gold", "silver"));
  EXPECT_EQ(by_tier - plain, 1 + kShards * (2 + 2));
}

TEST_F(ResultsE2eTest, MetricFilterKeepsOnlyTheAskedMetrics) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  ASSERT_NO_FATAL_FAILURE(Expose("checkout", "control", "c", 10));
  ASSERT_NO_FATAL_FAILURE(Expose("checkout", "treatment", "t", 10));
  v1::GetResultsRequest request;
  request.set_experiment_key("checkout");
  request.add_metric_keys("signup");
  v1::GetResultsResponse r;
  grpc::Status status = GetResults(request, &r);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(r.variants_size(), 2);
  ASSERT_EQ(r.variants(1).metrics_size(), 1);
  EXPECT_EQ(r.variants(1).metrics(0).metric_key(), "signup");
}

TEST_F(ResultsE2eTest, DailyGivesTheCohortDaysUpToEachDay) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // Yesterday: 20 units per variant, 4 and 10 of them convert. Today: 30 and
  // 10 more units, 6 and 2 converting.
  const absl::Time yesterday = start_ - absl::Hours(24);
  ExposeUsers("checkout", "control", "c-old-", 20, yesterday);
  ExposeUsers("checkout", "treatment", "t-old-", 20, yesterday);
  SendEvents("order_completed", "c-old-", 4, yesterday + absl::Seconds(1));
  SendEvents("order_completed", "t-old-", 10, yesterday + absl::Seconds(1));
  ExposeUsers("checkout", "control", "c-new-", 30, start_);
  ExposeUsers("checkout", "treatment", "t-new-", 10, start_);
  SendEvents("order_completed", "c-new-", 6, start_ + absl::Seconds(1));
  SendEvents("order_completed", "t-new-", 2, start_ + absl::Seconds(1));

  v1::GetResultsRequest request;
  request.set_experiment_key("checkout");
  request.add_metric_keys("order_conversion");
  v1::GetResultsResponse plain;
  grpc::Status status = GetResults(request, &plain);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(plain.daily_size(), 0) << "only when asked";

  request.set_include_daily(true);
  v1::GetResultsResponse r;
  status = GetResults(request, &r);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(r.daily_size(), 2);
  const v1::DayResult& first = r.daily(0);
  const v1::DayResult& last = r.daily(1);
  EXPECT_EQ(first.day(),
            absl::FormatTime("%Y-%m-%d", yesterday, absl::UTCTimeZone()));
  EXPECT_EQ(last.day(),
            absl::FormatTime("%Y-%m-%d", start_, absl::UTCTimeZone()));
  EXPECT_THAT(first.exposed_on_day(), ::testing::ElementsAre(20, 20));
  EXPECT_THAT(last.exposed_on_day(), ::testing::ElementsAre(30, 10));
  // Yesterday's cohort alone: 4/20 against 10/20.
  ASSERT_EQ(first.variants_size(), 2);
  EXPECT_EQ(first.variants(1).exposed_units(), 20);
  ASSERT_EQ(first.variants(1).metrics_size(), 1) << "the metric filter holds";
  ExpectClose("yesterday treatment", true,
              first.variants(1).metrics(0).estimate(), 0.5);
  ExpectClose("yesterday control", true,
              first.variants(0).metrics(0).estimate(), 0.2);
  ExpectClose("yesterday lift", true,
              first.variants(1).metrics(0).absolute().estimate(), 0.3);
  // Through today: everything, as in the totals (12/30 against 10/50).
  google::protobuf::util::MessageDifferencer differencer;
  std::string differences;
  differencer.ReportDifferencesToString(&differences);
  ASSERT_EQ(last.variants_size(), r.variants_size());
  for (int v = 0; v < r.variants_size(); ++v) {
    EXPECT_TRUE(differencer.Compare(last.variants(v), r.variants(v)))
        << differences;
  }
  ExpectClose("today treatment", true, r.variants(1).metrics(0).estimate(),
              0.4);
}

TEST_F(ResultsE2eTest, SampleRatioMismatchComesFirstAndMultiExposedCount) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // 1000 vs 800 at 50/50: X^2 = 2 * 100^2 / 900 = 22.2222,
  // p = erfc(sqrt(X^2 / 2)) = 2.4284674729758403e-06 (df 1).
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "control", "c", 1000));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "treatment", "t", 800));
  // A strongly worse guardrail too: SRM must still come first.
  ASSERT_NO_FATAL_FAILURE(Send("error_shown", "t", 400));
  // 7 units exposed to both variants: kept out of every figure.
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "control", "both", 7));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "treatment", "both", 7));

  v1::GetResultsResponse r;
  grpc::Status status = GetResults("guarded", &r);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(r.multi_exposed_units(), 7);
  ASSERT_EQ(r.variants_size(), 2);
  EXPECT_EQ(r.variants(0).exposed_units(), 1000);
  EXPECT_EQ(r.variants(1).exposed_units(), 800);
  ExpectClose("chi2", r.srm().has_chi2(), r.srm().chi2(), 200.0 / 9);
  ExpectClose("srm p", r.srm().has_p_value(), r.srm().p_value(),
              2.4284674729758403e-06);
  EXPECT_TRUE(r.srm().mismatch());
  EXPECT_EQ(r.decision().kind(), v1::DECISION_KIND_DO_NOT_TRUST);
  EXPECT_EQ(r.decision().text(), "do not trust: sample ratio mismatch");
  // The guardrail verdict is reported all the same.
  ASSERT_EQ(r.guardrails_size(), 1);
  EXPECT_TRUE(r.guardrails(0).worse());
}

TEST_F(ResultsE2eTest, WorseGuardrailBeatsABetterPrimary) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "control", "c", 1000));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "treatment", "t", 1000));
  // Primary: 100 vs 200 (p far below 0.05). Errors (lower is better):
  // 50 vs 100, significantly worse.
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "c", 100));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "t", 200));
  ASSERT_NO_FATAL_FAILURE(Send("error_shown", "c", 50));
  ASSERT_NO_FATAL_FAILURE(Send("error_shown", "t", 100));
  v1::GetResultsResponse r;
  grpc::Status status = GetResults("guarded", &r);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(r.decision().kind(), v1::DECISION_KIND_GUARDRAIL_WORSE);
  EXPECT_EQ(r.decision().metric(), "errors");
  EXPECT_EQ(r.decision().variant(), "treatment");
  EXPECT_EQ(r.decision().text(), "guardrail errors worse");
}

TEST_F(ResultsE2eTest, SignificantlyBetterPrimaryShips) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "control", "c", 1000));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "treatment", "t", 1000));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "c", 100));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "t", 200));
  // Fewer errors in the treatment: the guardrail is fine.
  ASSERT_NO_FATAL_FAILURE(Send("error_shown", "c", 100));
  ASSERT_NO_FATAL_FAILURE(Send("error_shown", "t", 50));
  v1::GetResultsResponse r;
  grpc::Status status = GetResults("guarded", &r);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(r.guardrails_size(), 1);
  EXPECT_FALSE(r.guardrails(0).worse());
  EXPECT_EQ(r.decision().kind(), v1::DECISION_KIND_SHIP);
  EXPECT_EQ(r.decision().variant(), "treatment");
  EXPECT_EQ(r.decision().text(), "ship treatment");
}

TEST_F(ResultsE2eTest, BadRequestsAreRejectedWithTheReason) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  v1::GetResultsResponse r;
  grpc::Status status = GetResults("", &r);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("experiment_key is required"));

  status = GetResults(std::string(1 << 20, 'k'), &r);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_LT(status.error_message().size(), 1024u);

  status = GetResults("no_such_experiment", &r);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no_such_experiment"));
  EXPECT_THAT(status.error_message(), HasSubstr("checkout, guarded, shop"));

  v1::GetResultsRequest bad_alpha;
  bad_alpha.set_experiment_key("checkout");
  bad_alpha.set_alpha(1.5);
  status = GetResults(bad_alpha, &r);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("alpha"));

  // A denormal alpha, which the statistics cannot halve, is refused for the
  // whole call rather than failing every comparison in it.
  bad_alpha.set_alpha(5e-324);
  status = GetResults(bad_alpha, &r);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("at least 2.2e-308"));

  v1::GetResultsRequest bad_metric;
  bad_metric.set_experiment_key("checkout");
  bad_metric.add_metric_keys("errors");  // a metric, but not checkout's
  status = GetResults(bad_metric, &r);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("order_conversion, signup"));

  v1::GetResultsRequest bad_method;
  bad_method.set_experiment_key("checkout");
  bad_method.set_adjust_method("bonferroni");
  status = GetResults(bad_method, &r);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("holm"));
}

TEST_F(ResultsE2eTest, RedisDownIsUnavailableAndSaysSo) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  ASSERT_TRUE(redis_->Kill().ok());
  v1::GetResultsResponse r;
  grpc::Status status = GetResults("checkout", &r);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("Redis is unavailable"));
}

TEST_F(ResultsE2eTest, RedisFrozenIsUnavailableSayingRedisDidNotAnswer) {
  // The read gives up after 1s, well within the call's 30s deadline.
  ASSERT_NO_FATAL_FAILURE(StartAll({"--redis_command_timeout=1s"}));
  ASSERT_NO_FATAL_FAILURE(Expose("checkout", "control", "c", 3));
  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  v1::GetResultsResponse r;
  grpc::Status status = GetResults("checkout", &r);
  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("Redis is unavailable"));
  EXPECT_THAT(status.error_message(), HasSubstr("did not answer"));
  // Redis back, the same call answers.
  status = GetResults("checkout", &r);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace abexp
