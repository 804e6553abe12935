#include "server/core/indexed_config.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "server/core/assigner.h"
#include "server/core/bucketing.h"
#include "server/core/config.h"
#include "server/core/config_parser.h"

namespace abexp {
namespace {

using Index = std::vector<int>;

Experiment RunningExperiment(const std::string& key) {
  Experiment e;
  e.key = key;
  e.salt = key;
  e.status = ExperimentStatus::kRunning;
  for (const char* variant_key : {"control", "treatment"}) {
    Variant v;
    v.key = variant_key;
    v.weight = 50 * kWeightScale;
    e.variants.push_back(v);
  }
  // Half the buckets each, at full traffic.
  e.variants[0].full_range = e.variants[0].active_range = {0, kNumBuckets / 2};
  e.variants[1].full_range =
      e.variants[1].active_range = {kNumBuckets / 2, kNumBuckets};
  return e;
}

Unit User(const std::string& id) {
  Unit u;
  u.ids["user_id"] = id;
  return u;
}

TEST(IndexedConfig, BuildTakesTheConfigOverWithoutCopyingIt) {
  Config config;
  config.experiments.push_back(RunningExperiment("checkout"));
  const Experiment* experiments = config.experiments.data();
  std::shared_ptr<const IndexedConfig> indexed =
      IndexedConfig::Build(std::move(config));
  EXPECT_EQ(indexed->experiments.data(), experiments);
}

TEST(IndexedConfig, LooksUpByHashWhatConfigFindsByScanning) {
  ParseResult r = ParseConfig(R"yaml(
metrics:
  - {key: orders, type: binomial, event: order_completed}
features:
  - {key: color, type: string, default: red}
experiments:
  - key: checkout
    status: running
    variants:
      - {key: a, weight: 1, features: {color: blue}}
  - key: pricing
    status: running
    variants:
      - {key: a, weight: 1}
)yaml",
                              "lookups.yaml");
  ASSERT_TRUE(r.ok()) << r.FormatDiagnostics();
  const IndexedConfig& indexed = *r.config;
  const Config& scanned = indexed;
  EXPECT_EQ(indexed.FindExperiment("pricing"), &indexed.experiments[1]);
  EXPECT_EQ(scanned.FindExperiment("pricing"), &indexed.experiments[1]);
  EXPECT_EQ(indexed.FindFeature("color"), &indexed.features[0]);
  EXPECT_EQ(scanned.FindFeature("color"), &indexed.features[0]);
  EXPECT_EQ(indexed.FindMetric("orders"), &indexed.metrics[0]);
  EXPECT_EQ(scanned.FindMetric("orders"), &indexed.metrics[0]);
  for (const char* missing : {"", "nope", "Pricing"}) {
    EXPECT_EQ(indexed.FindExperiment(missing), nullptr) << missing;
    EXPECT_EQ(scanned.FindExperiment(missing), nullptr) << missing;
    EXPECT_EQ(indexed.FindFeature(missing), nullptr) << missing;
    EXPECT_EQ(indexed.FindMetric(missing), nullptr) << missing;
  }
}

// The recorder sends an event to these experiments and no others.
TEST(IndexedConfig, SendsEachEventToTheNonDraftExperimentsMeasuringIt) {
  ParseResult r = ParseConfig(R"yaml(
metrics:
  - {key: orders, type: binomial, event: order_completed}
  - key: order_value
    type: ratio
    numerator: {event: order_completed, aggregate: value}
    denominator: {event: order_completed, aggregate: count}
  - {key: opens, type: sum, event: app_open}
experiments:
  - key: first
    status: running
    variants: [{key: a, weight: 1}]
    metrics: [orders, order_value]
    primary_metric: orders
  - key: drafted
    status: draft
    variants: [{key: a, weight: 1}]
    metrics: [orders]
    primary_metric: orders
  - key: paused
    status: paused
    variants: [{key: a, weight: 1}]
    metrics: [opens, orders]
    primary_metric: opens
  - key: unmeasured
    status: running
    variants: [{key: a, weight: 1}]
)yaml",
                              "events.yaml");
  ASSERT_TRUE(r.ok()) << r.FormatDiagnostics();
  const auto& by_event = r.config->experiments_by_event;
  EXPECT_EQ(by_event.size(), 2u);
  ASSERT_TRUE(by_event.contains("order_completed"));
  // "first" once, though two of its metrics (three sources) use the event.
  EXPECT_EQ(by_event.at("order_completed"), (Index{0, 2}));
  ASSERT_TRUE(by_event.contains("app_open"));
  EXPECT_EQ(by_event.at("app_open"), (Index{2}));
}

// ParseConfig refuses such a config; one assembled in code is indexed as
// it is, and its experiment in a missing layer is nobody's but by QA
// override.
TEST(IndexedConfig, AnExperimentInAMissingLayerAssignsOnlyItsQaOverrides) {
  Config config;
  config.version = "0000000000000000";
  Experiment e = RunningExperiment("ghostly");
  e.layer = "ghost";
  e.qa_overrides["qa-1"] = "treatment";
  config.experiments.push_back(std::move(e));
  std::shared_ptr<const IndexedConfig> indexed =
      IndexedConfig::Build(std::move(config));

  for (const std::string id : {"u-1", "u-2", "u-3", "u-4"}) {
    absl::StatusOr<AssignResult> r = Assign(*indexed, User(id), {});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->assignments.empty()) << id;
  }
  absl::StatusOr<AssignResult> qa = Assign(*indexed, User("qa-1"), {});
  ASSERT_TRUE(qa.ok()) << qa.status();
  ASSERT_EQ(qa->assignments.size(), 1u);
  EXPECT_EQ(qa->assignments[0].variant_index, 1);
  EXPECT_EQ(qa->assignments[0].reason, AssignmentReason::kQaOverride);
}

}  // namespace
}  // namespace abexp
