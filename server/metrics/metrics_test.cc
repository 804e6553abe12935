#include "server/metrics/metrics.h"

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A config of `experiments` experiments with `variants` variants each, keys
// e<i> and v<j>.
std::shared_ptr<const IndexedConfig> MakeConfig(int experiments, int variants,
                                                const std::string& version) {
  Config config;
  config.version = version;
  for (int e = 0; e < experiments; ++e) {
    Experiment experiment;
    experiment.key = absl::StrCat("e", e);
    experiment.status = ExperimentStatus::kRunning;
    for (int v = 0; v < variants; ++v) {
      Variant variant;
      variant.key = absl::StrCat("v", v);
      variant.weight = 1;
      experiment.variants.push_back(variant);
    }
    config.experiments.push_back(experiment);
  }
  return IndexedConfig::Build(std::move(config));
}

// A result assigning experiment `e` of `config` to variant `v`.
AssignResult Assigned(const IndexedConfig& config, int e, int v) {
  AssignResult result;
  ExperimentAssignment a;
  a.experiment = &config.experiments[e];
  a.variant_index = v;
  result.assignments.push_back(a);
  return result;
}

// The value of the line `series` ("name{labels}") in `text`, or -1.
double SeriesValue(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST(AssignmentCountsTest, AddsEveryThreadAndKeepsCountsAcrossConfigs) {
  ServerMetrics metrics("test");
  auto first = MakeConfig(2, 3, "first");
  constexpr int kThreads = 4;
  constexpr int kCalls = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        metrics.assignments()->Count(*first, Assigned(*first, i % 2, t % 3));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::string text = metrics.Scrape();
  // Threads 0 and 3 chose v0, 1 chose v1, 2 chose v2; each half in e0.
  EXPECT_EQ(
      SeriesValue(text,
                  "abexp_assignments_total{experiment=\"e0\",variant=\"v0\"}"),
      kCalls);
  EXPECT_EQ(
      SeriesValue(text,
                  "abexp_assignments_total{experiment=\"e1\",variant=\"v2\"}"),
      kCalls / 2);

  // A new config (same keys, one more experiment) served after: the old
  // counts stay, and the new ones add to them. This thread let go of its
  // block for `first` when it counted for `second`.
  auto second = MakeConfig(3, 3, "second");
  metrics.assignments()->Count(*first, Assigned(*first, 0, 0));
  first.reset();
  metrics.assignments()->Count(*second, Assigned(*second, 0, 0));
  metrics.assignments()->Count(*second, Assigned(*second, 2, 1));
  text = metrics.Scrape();
  EXPECT_EQ(
      SeriesValue(text,
                  "abexp_assignments_total{experiment=\"e0\",variant=\"v0\"}"),
      kCalls + 2);
  EXPECT_EQ(
      SeriesValue(text,
                  "abexp_assignments_total{experiment=\"e2\",variant=\"v1\"}"),
      1);
  // A second scrape, after the blocks let go were folded, says the same.
  EXPECT_EQ(metrics.Scrape(), text);
}

TEST(AssignmentCountsTest, UnitsWithoutAVariantAreNotCounted) {
  ServerMetrics metrics("test");
  auto config = MakeConfig(1, 2, "c");
  metrics.assignments()->Count(*config, Assigned(*config, 0, -1));
  const std::string text = metrics.Scrape();
  EXPECT_EQ(
      SeriesValue(text,
                  "abexp_assignments_total{experiment=\"e0\",variant=\"v0\"}"),
      0);
  EXPECT_EQ(
      SeriesValue(text,
                  "abexp_assignments_total{experiment=\"e0\",variant=\"v1\"}"),
      0);
}

TEST(RpcMethodMetricsTest, CountsByCodeAndTimesEveryCall) {
  ServerMetrics metrics("test");
  RpcMethodMetrics* assign = metrics.Rpc("/abexp.v1.AssignmentService/Assign");
  EXPECT_EQ(metrics.Rpc("/abexp.v1.AssignmentService/Assign"), assign);
  assign->Observe(0, 0.0002);
  assign->Observe(0, 0.003);
  assign->Observe(3, 0.00001);
  assign->Observe(99, 1);  // not a code: UNKNOWN
  const std::string text = metrics.Scrape();
  const std::string labels =
      "method=\"Assign\",service=\"abexp.v1.AssignmentService\"";
  EXPECT_EQ(
      SeriesValue(text, "abexp_rpc_requests_total{code=\"OK\"," + labels + "}"),
      2);
  EXPECT_EQ(SeriesValue(text,
                        "abexp_rpc_requests_total{code=\"INVALID_"
                        "ARGUMENT\"," +
                            labels + "}"),
            1);
  EXPECT_EQ(SeriesValue(text, "abexp_rpc_requests_total{code=\"UNKNOWN\"," +
                                  labels + "}"),
            1);
  EXPECT_EQ(
      SeriesValue(text, "abexp_rpc_duration_seconds_count{" + labels + "}"), 4);
  // 0.00001 and 0.0002 are within 0.00025 s; 0.003 and 1 are not.
  EXPECT_EQ(SeriesValue(text, "abexp_rpc_duration_seconds_bucket{" + labels +
                                  ",le=\"0.00025\"}"),
            2);
  EXPECT_NEAR(
      SeriesValue(text, "abexp_rpc_duration_seconds_sum{" + labels + "}"),
      1.00321, 1e-9);
  // Codes never seen have no series.
  EXPECT_THAT(text, Not(HasSubstr("code=\"NOT_FOUND\"")));
}

TEST(RpcMethodMetricsTest, AStreamIsCountedButNotTimed) {
  ServerMetrics metrics("test");
  RpcMethodMetrics* watch = metrics.Rpc("/grpc.health.v1.Health/Watch");
  watch->Count(1);
  const std::string text = metrics.Scrape();
  const std::string labels =
      "method=\"Watch\",service=\"grpc.health.v1.Health\"";
  EXPECT_EQ(SeriesValue(text, "abexp_rpc_requests_total{code=\"CANCELLED\"," +
                                  labels + "}"),
            1);
  EXPECT_EQ(
      SeriesValue(text, "abexp_rpc_duration_seconds_count{" + labels + "}"), 0);
}

TEST(HttpRouteMetricsTest, CountsByRouteAndStatusAndTimesEveryAnswer) {
  ServerMetrics metrics("test");
  HttpRouteMetrics* report = metrics.HttpRoute("/experiments/{key}/report");
  EXPECT_EQ(metrics.HttpRoute("/experiments/{key}/report"), report);
  HttpRouteMetrics* unmatched = metrics.HttpRoute("unmatched");
  // The latency series are there before any request.
  std::string text = metrics.Scrape();
  const std::string route = "route=\"/experiments/{key}/report\"";
  EXPECT_EQ(SeriesValue(text, "abexp_http_request_duration_seconds_count{" +
                                  route + "}"),
            0);
  EXPECT_EQ(SeriesValue(text,
                        "abexp_http_request_duration_seconds_count{route="
                        "\"unmatched\"}"),
            0);

  report->Observe(200, 0.002);
  report->Observe(200, 0.3);
  report->Observe(404, 0.0001);
  report->Observe(42, 0.0001);  // not an HTTP status: "other"
  unmatched->Observe(404, 0.00002);
  text = metrics.Scrape();
  EXPECT_EQ(SeriesValue(
                text, "abexp_http_requests_total{code=\"200\"," + route + "}"),
            2);
  EXPECT_EQ(SeriesValue(
                text, "abexp_http_requests_total{code=\"404\"," + route + "}"),
            1);
  EXPECT_EQ(SeriesValue(text, "abexp_http_requests_total{code=\"other\"," +
                                  route + "}"),
            1);
  EXPECT_EQ(SeriesValue(text,
                        "abexp_http_requests_total{code=\"404\",route="
                        "\"unmatched\"}"),
            1);
  EXPECT_EQ(SeriesValue(text, "abexp_http_request_duration_seconds_count{" +
                                  route + "}"),
            4);
  // 0.0001 twice and 0.002 are within 0.0025 s; 0.3 is not.
  EXPECT_EQ(SeriesValue(text, "abexp_http_request_duration_seconds_bucket{" +
                                  route + ",le=\"0.0025\"}"),
            3);
  // Statuses never answered have no series.
  EXPECT_THAT(text, Not(HasSubstr("code=\"500\"")));
}

TEST(RecordCountersTest, CountsByKindOutcomeAndReason) {
  ServerMetrics metrics("test");
  RecordCounters* records = metrics.records();
  records->Add(RecordCounters::Kind::kEvent, 1, 0, 5);     // recorded
  records->Add(RecordCounters::Kind::kEvent, 3, 7, 2);     // not attributed
  records->Add(RecordCounters::Kind::kExposure, 5, 0, 3);  // spooled
  records->Add(RecordCounters::Kind::kExposure, 2, 4, 1);  // reason ignored
  const std::string text = metrics.Scrape();
  EXPECT_EQ(SeriesValue(text,
                        "abexp_records_total{kind=\"event\",outcome="
                        "\"recorded\",reason=\"\"}"),
            5);
  EXPECT_EQ(SeriesValue(text,
                        "abexp_records_total{kind=\"event\",outcome="
                        "\"ignored\",reason=\"not_attributed\"}"),
            2);
  EXPECT_EQ(SeriesValue(text,
                        "abexp_records_total{kind=\"exposure\",outcome="
                        "\"spooled\",reason=\"\"}"),
            3);
  // A reason only goes with an ignored record.
  EXPECT_EQ(SeriesValue(text,
                        "abexp_records_total{kind=\"exposure\",outcome="
                        "\"duplicate\",reason=\"\"}"),
            1);
}

TEST(ConfigMetricsTest, LabelsOnlyTheVersionServed) {
  ServerMetrics metrics("1.2.3");
  auto first = MakeConfig(2, 2, "aaaa");
  auto second = MakeConfig(1, 2, "bbbb");
  metrics.config()->Loaded(*first, absl::FromUnixSeconds(1000));
  metrics.config()->ReloadChanged(*second, absl::FromUnixSeconds(2000), 1);
  metrics.config()->ReloadFailed();
  const std::string text = metrics.Scrape();
  EXPECT_EQ(SeriesValue(text, "abexp_config_info{version=\"bbbb\"}"), 1);
  EXPECT_THAT(text, Not(HasSubstr("version=\"aaaa\"")));
  EXPECT_EQ(SeriesValue(text, "abexp_config_last_success_timestamp_seconds"),
            2000);
  EXPECT_EQ(SeriesValue(text, "abexp_config_reloads_total{result=\"changed\"}"),
            1);
  EXPECT_EQ(SeriesValue(text, "abexp_config_reloads_total{result=\"failed\"}"),
            1);
  EXPECT_EQ(SeriesValue(text, "abexp_config_dropped_running_total"), 1);
  EXPECT_EQ(SeriesValue(text, "abexp_config_experiments"), 1);
  EXPECT_EQ(SeriesValue(text, "abexp_build_info{version=\"1.2.3\"}"), 1);
}

TEST(ServerMetricsTest, SamplersAreReadOnEveryScrape) {
  ServerMetrics metrics("test");
  int calls = 0;
  metrics.AddSampler([&calls] {
    ++calls;
    return std::vector<prometheus::MetricFamily>{
        GaugeFamily("abexp_test_gauge", "A test gauge.", calls)};
  });
  EXPECT_EQ(SeriesValue(metrics.Scrape(), "abexp_test_gauge"), 1);
  EXPECT_EQ(SeriesValue(metrics.Scrape(), "abexp_test_gauge"), 2);
}

}  // namespace
}  // namespace abexp
